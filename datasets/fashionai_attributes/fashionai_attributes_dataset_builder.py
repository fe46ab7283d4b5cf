"""fashionai_attributes: the FashionAI 2018 attribute tasks, eight heads, one labelled per row.

Reads one or more release folders (``base/``, ``web/``, ``rank/``, ...) from the manual folder:
``Annotations/label.csv`` rows (``image_path,task,label_string``) become the ``train`` and ``val``
splits, ``Tests/question.csv`` rows (``image_path,task,?``) the unlabelled ``test`` split.

Each example labels one task (head) of eight. Per head it carries the hard label (index of the
``y``; -1 when the row labels another task), a soft target (``y`` plus ``m_weight`` on each
``m`` "maybe" class, renormalised; all zeros when unlabelled), the ``m`` mask and a ``labelled``
flag. The builder config sets the ``m`` policy: ``m_ignore`` (one-hot targets) or ``m_half``
(``m`` classes weighted 0.5 before renormalising). Class lists come from
``fashion_keras.heads.FASHIONAI8``; every row check goes through ``common``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets.public_api as tfds
from etils import epath

from fashion_keras.heads import FASHIONAI8
from fashion_keras_datasets.common.builder import (
    ValidatingBuilder,
    ValidatingConfig,
    find_release_folders,
)
from fashion_keras_datasets.common.errors import AnnotationError
from fashion_keras_datasets.common.images import PreparedImage, hash_bucket
from fashion_keras_datasets.common.report import BuildReport, SkipReport
from fashion_keras_datasets.common.rows import (
    Row,
    normalize_image_path,
    parse_label_string,
    read_csv_rows,
    resolve_image_path,
)

LABEL_FILE = "Annotations/label.csv"
QUESTION_FILE = "Tests/question.csv"
TASKS = tuple(h.name for h in FASHIONAI8)
HEADS = {h.name: h for h in FASHIONAI8}
SPLIT_ORDER = ("train", "val", "test")  # duplicates stay in the first, see common/images.py
UNLABELLED = -1
FULL_IMAGE = (0.0, 0.0, 1.0, 1.0)


@dataclasses.dataclass(eq=False)
class FashionAIConfig(ValidatingConfig):
    """Options of the FashionAI builder.

    Attributes:
      m_weight: target weight of each ``m`` ("maybe") class relative to the ``y`` class, before
        renormalising to sum 1; 0 ignores ``m`` (one-hot targets). Must be in [0, 1) so the
        ``y`` class stays the target's argmax (and accuracy counts it).
      val_percent: share of the labelled rows (by a hash of the image's path inside its
        release, so the same file in two releases lands in the same split) held out as ``val``.
    """

    m_weight: float = 0.0
    val_percent: int = 10

    def __post_init__(self) -> None:
        if not 0.0 <= self.m_weight < 1.0:
            raise ValueError(f"m_weight = {self.m_weight!r}: expected a number in [0, 1)")
        if not 0 <= self.val_percent < 100:
            raise ValueError(f"val_percent = {self.val_percent!r}: expected an integer in [0, 100)")


def soft_target(num_classes: int, y: int, m: tuple[int, ...], m_weight: float) -> np.ndarray:
    """``y`` gets 1, each ``m`` class ``m_weight``, then the vector is normalised to sum 1."""
    target = np.zeros(num_classes, np.float32)
    target[list(m)] = m_weight
    target[y] = 1.0
    return target / target.sum()


def val_bucket(relative_path: str) -> int:
    """A stable bucket in [0, 100) for the image's path inside its release folder."""
    return hash_bucket(relative_path)


def find_releases(root: epath.Path) -> list[str]:
    """Release folders under ``root`` (``"."`` when ``root`` itself is one), sorted."""
    return find_release_folders(root, (LABEL_FILE, QUESTION_FILE))


@dataclasses.dataclass(frozen=True)
class _Row:
    """One valid row of label.csv or question.csv."""

    release: str
    path: str  # relative to the release folder, as in the file
    image: epath.Path
    task: str
    y: int  # UNLABELLED for question rows
    m: tuple[int, ...]
    where: str

    @property
    def name(self) -> str:
        return self.path if self.release == "." else f"{self.release}/{self.path}"

    @property
    def key(self) -> str:
        return f"{self.name}#{self.task}"


class Builder(ValidatingBuilder):
    """FashionAI 2018 attributes (eight tasks), from a manual download."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: eight heads, soft targets, m masks, test split."}
    BUILDER_CONFIGS = [
        FashionAIConfig(
            name="m_ignore",
            description="Targets are one-hot on the y class; m ('maybe') classes get 0.",
            m_weight=0.0,
        ),
        FashionAIConfig(
            name="m_half",
            description="Soft targets: y 1, each m class 0.5, renormalised to sum 1.",
            m_weight=0.5,
        ),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
    Download the FashionAI Global Challenge 2018 attribute data (Alibaba Tianchi,
    https://tianchi.aliyun.com/competition/entrance/231649) and unpack every release you have
    into its own folder under manual_dir (the folder names are yours; participants used base/
    for round-1 training, web/ for the warm-up data and rank/, z_rank/ for the test sets):

    manual_dir/
      base/
        Annotations/label.csv    labels: no header, `image_path,task,label_string`
        Images/<task>/<hash>.jpg the images (image_path is relative to base/)
      web/
        Annotations/label.csv
        Images/...
      rank/
        Tests/question.csv       test rows: `image_path,task,?` (no labels)
        Images/...

    A single release may also sit directly in manual_dir. At least one
    {LABEL_FILE} is REQUIRED; {QUESTION_FILE} is optional (it makes the `test` split).
    Tasks (heads) and label_string length: {", ".join(f"{t} ({len(HEADS[t].classes)})" for t in TASKS)}.
    label_string has one character per class: y (the class, exactly one), m (maybe), n (not).

    Splits: train and val (val_percent of the labelled rows by a hash of the image path), test.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        def per_head(feature):
            return tfds.features.FeaturesDict({t: feature(HEADS[t]) for t in TASKS})

        return self._dataset_info(
            {
                "image": tfds.features.Image(encoding_format="jpeg"),
                "image/filename": tfds.features.Text(),
                "release": tfds.features.Text(),
                "task": tfds.features.ClassLabel(names=TASKS),
                "bbox": tfds.features.BBoxFeature(),
                "labels": per_head(lambda h: tfds.features.ClassLabel(names=h.classes)),
                "soft_labels": per_head(
                    lambda h: tfds.features.Tensor(shape=(h.num_classes,), dtype=np.float32)
                ),
                "m_mask": per_head(
                    lambda h: tfds.features.Tensor(shape=(h.num_classes,), dtype=np.bool_)
                ),
                "labelled": per_head(lambda h: tfds.features.Scalar(dtype=np.bool_)),
            },
            homepage="https://tianchi.aliyun.com/competition/entrance/231649",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = self._manual_root(dl_manager)
        releases = find_releases(root) if root.is_dir() else []
        if not any((root / r / LABEL_FILE).is_file() for r in releases):
            raise self._missing_files(
                root, [f"<release>/{LABEL_FILE} (in at least one release folder)"]
            )
        report = self._new_report()
        rows: dict[str, list[_Row]] = {s: [] for s in SPLIT_ORDER}
        for release in releases:
            for name, labelled in ((LABEL_FILE, True), (QUESTION_FILE, False)):
                path = root / release / name
                if path.is_file():
                    for split, row in self._read_file(root, release, path, labelled, report):
                        rows[split].append(row)
        return self._read_split_examples(
            rows, report, hint="check that each release folder holds the Images/ its csv files list"
        )

    def _read_file(
        self,
        root: epath.Path,
        release: str,
        path: epath.Path,
        labelled: bool,
        report: BuildReport,
    ) -> Iterator[tuple[str, _Row]]:
        """Parses label.csv (``labelled``) or question.csv; bad rows raise or are reported."""
        config: FashionAIConfig = self.builder_config
        policy = config.policy
        _, csv_rows = read_csv_rows(path, header=False)
        report.add_file(path, len(csv_rows))
        seen: dict[str, int] = {}
        for row in csv_rows:
            split = "test"
            if labelled:
                split = "train"
                if (
                    row.fields
                    and val_bucket(normalize_image_path(row.fields[0])) < config.val_percent
                ):
                    split = "val"
            try:
                parsed = _parse_row(root, release, row, labelled)
                same = normalize_image_path(parsed.path)  # ./a.jpg is a.jpg
                first = seen.setdefault(f"{same}#{parsed.task}", row.line)
                if first != row.line:
                    raise row.error(
                        "image_path, task",
                        f"{parsed.path},{parsed.task}",
                        "each image and task once per file",
                        note=f"also line {first}",
                        reason="duplicate_row",
                    )
            except AnnotationError as e:
                policy.bad_row(e, report.split(split))
                continue
            yield split, parsed

    def _heads(self) -> Mapping[str, Sequence[str]]:
        return {t: HEADS[t].classes for t in TASKS}

    def _example(
        self, split: str, row: _Row, image: PreparedImage, report: SkipReport
    ) -> dict[str, Any]:
        config: FashionAIConfig = self.builder_config
        labels, soft, m_mask, flags = {}, {}, {}, {}
        for task in TASKS:
            n = HEADS[task].num_classes
            mine = task == row.task and row.y != UNLABELLED
            labels[task] = row.y if mine else UNLABELLED
            soft[task] = (
                soft_target(n, row.y, row.m, config.m_weight) if mine else np.zeros(n, np.float32)
            )
            mask = np.zeros(n, np.bool_)
            if mine:
                mask[list(row.m)] = True
            m_mask[task] = mask
            flags[task] = mine
        return {
            "image": image.data,
            "image/filename": row.name,
            "release": row.release,
            "task": row.task,
            "bbox": tfds.features.BBox(*FULL_IMAGE),
            "labels": labels,
            "soft_labels": soft,
            "m_mask": m_mask,
            "labelled": flags,
        }


def _parse_row(root: epath.Path, release: str, row: Row, labelled: bool) -> _Row:
    """Validates one csv row (3 columns, known task, label string or ``?``, safe path)."""
    what = "image_path,task,label_string" if labelled else "image_path,task,?"
    if len(row.fields) != 3:
        raise row.error(
            "number of columns",
            len(row.fields),
            f"3 comma-separated columns ({what})",
            note=f"row: {row.text!r}",
            reason="wrong_column_count",
        )
    rel, task, label = row.fields
    if task not in HEADS:
        raise row.error("task", task, f"one of {list(TASKS)}", reason="unknown_task")
    image = resolve_image_path(root / release, rel, row, "image_path")
    if labelled:
        y, m = parse_label_string(row, 2, HEADS[task].classes, "label_string")
    else:
        if label != "?":
            raise row.error(
                "answer", label, "'?' (question.csv rows carry no label)", reason="not_a_question"
            )
        y, m = UNLABELLED, ()
    return _Row(release, rel, image, task, y, m, row.where)
