"""fashionai_keypoints: the FashionAI 2018 keypoint track, 24 garment keypoints in 5 categories.

Reads one or more release folders (``train1/``, ``train2/``, ``test/``, ...) from the manual
folder: the labelled rows (``Annotations/annotations.csv`` or ``Annotations/train.csv``; a
header, then ``image_id,image_category`` and 24 ``x_y_v`` cells) become the ``train`` and ``val``
splits, the test list (``Tests/test.csv`` or ``test.csv``; ``image_id,image_category``) the
``test`` split without keypoints. Keypoint names, their order and the keypoints each category
defines come from ``fashion_keras.heads.FASHIONAI_KEYPOINTS``; every row check goes through
``common``.

A cell is ``x_y_v``: pixel x and y, then the visibility v (1 visible, 0 occluded, -1 absent,
written ``-1_-1_-1``). A malformed cell, a visibility outside {-1, 0, 1}, a point given for a
keypoint the category does not define, an unknown category, a duplicate row, a bad path or the
wrong number of columns is a bad row (an error naming ``file:line``, or a counted
``bad_row:<reason>`` skip under ``<config>_skip_bad_rows``); a header whose keypoint names are not
the taxonomy's, in its order, always stops the build. A point outside its image (known once the
image is read) skips the row, counted as ``keypoint_outside_image``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets.public_api as tfds
from etils import epath

from fashion_keras.heads import FASHIONAI_KEYPOINTS
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
    check_header,
    normalize_image_path,
    read_csv_rows,
    resolve_image_path,
)

#: Labelled files of a release, in the order they are read (releases name it either way).
LABEL_FILES = ("Annotations/annotations.csv", "Annotations/train.csv")
#: Test lists of a release (``image_id,image_category``, no keypoints).
TEST_FILES = ("Tests/test.csv", "test.csv")
HEAD = FASHIONAI_KEYPOINTS.name
KEYPOINTS = FASHIONAI_KEYPOINTS.keypoints
CATEGORIES = FASHIONAI_KEYPOINTS.category_names
NUM_KEYPOINTS = len(KEYPOINTS)
ID_COLUMNS = ("image_id", "image_category")
LABEL_HEADER = (*ID_COLUMNS, *KEYPOINTS)
SPLIT_ORDER = ("train", "val", "test")  # duplicates stay in the first, see common/images.py
ABSENT = -1
VAL_PERCENT = 10  # the default share of labelled rows held out as val
#: Skip reason of a row with a point outside its image.
KEYPOINT_OUTSIDE_IMAGE = "keypoint_outside_image"
CELL_EXPECTED = (
    "x_y_v: pixel x and y, then the visibility v (1 visible, 0 occluded, -1 absent), "
    "e.g. '120_88_1'; an absent keypoint is '-1_-1_-1'"
)
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_CELL_RE = re.compile(rf"^({_NUMBER})_({_NUMBER})_([-+]?\d+)$")


@dataclasses.dataclass(eq=False)
class KeypointsConfig(ValidatingConfig):
    """Options of the FashionAI keypoints builder.

    Attributes:
      val_percent: share of the labelled rows (by a hash of the image's path inside its
        release, so the same file in two releases lands in the same split) held out as ``val``.
    """

    val_percent: int = VAL_PERCENT

    def __post_init__(self) -> None:
        if not 0 <= self.val_percent < 100:
            raise ValueError(f"val_percent = {self.val_percent!r}: expected an integer in [0, 100)")


def val_bucket(relative_path: str) -> int:
    """A stable bucket in [0, 100) for the image's path inside its release folder."""
    return hash_bucket(normalize_image_path(relative_path))


def find_releases(root: epath.Path) -> list[str]:
    """Release folders under ``root`` (``"."`` when ``root`` itself is one), sorted."""
    return find_release_folders(root, (*LABEL_FILES, *TEST_FILES))


@dataclasses.dataclass(frozen=True)
class _Row:
    """One valid row of a labelled file or a test list."""

    release: str
    path: str  # the image_id, relative to the release folder, as in the file
    image: epath.Path
    category: str
    points: np.ndarray  # float32 [24, 2], pixels, ABSENT for absent points
    visibility: np.ndarray  # int32 [24], -1 / 0 / 1
    labelled: bool
    where: str
    order: int = 0  # position in its split's files as read (releases sorted, rows in order)

    @property
    def name(self) -> str:
        return self.path if self.release == "." else f"{self.release}/{self.path}"

    @property
    def key(self) -> str:
        return self.name


class Builder(ValidatingBuilder):
    """FashionAI 2018 keypoints (24 keypoints, 5 categories), from a manual download."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release: 24 keypoints, visibility, defined masks, test.",
        "1.1.0": "keypoints/fashionai_keypoints: one [24, 3] (x, y, v) tensor per keypoint head, "
        "as every builder with keypoints writes them (replaces keypoints [24, 2] + visibility); "
        "keypoint_categories/fashionai_keypoints: the garment category of the head's taxonomy; "
        "order: the row's position in its split's files (TFDS shuffles the records; a "
        "submission lists the test rows in the test list's order).",
    }
    BUILDER_CONFIGS = [
        KeypointsConfig(
            name="default",
            description="Keypoints in pixels; 10% of the labelled rows held out as val.",
        ),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
    Download the FashionAI Global Challenge 2018 keypoint data (Alibaba Tianchi,
    https://tianchi.aliyun.com/competition/entrance/231648) and unpack every release you have
    into its own folder under manual_dir (the folder names are yours):

    manual_dir/
      train1/
        Annotations/annotations.csv  keypoints: a header, then
                                     `image_id,image_category,<24 x_y_v cells>`
        Images/<category>/<id>.jpg   the images (image_id is relative to train1/)
      train2/
        Annotations/train.csv        the same format (either file name)
        Images/...
      test/
        Tests/test.csv               test list: a header, then `image_id,image_category`
        Images/...

    A single release may also sit directly in manual_dir. At least one labelled file
    ({" or ".join(LABEL_FILES)}) is REQUIRED; the test list ({" or ".join(TEST_FILES)}) is
    optional (it makes the `test` split). Categories: {", ".join(CATEGORIES)}.
    Header: {",".join(ID_COLUMNS)}, then the 24 keypoints in this order:
    {", ".join(KEYPOINTS)}.
    Each cell is x_y_v (pixels; v: 1 visible, 0 occluded, -1 absent, written -1_-1_-1).

    Splits: train and val (val_percent of the labelled rows by a hash of the image path), test.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return self._dataset_info(
            {
                "image": tfds.features.Image(encoding_format="jpeg"),
                "image/filename": tfds.features.Text(),
                "image_id": tfds.features.Text(),
                "release": tfds.features.Text(),
                "image/height": tfds.features.Scalar(dtype=np.int32),
                "image/width": tfds.features.Scalar(dtype=np.int32),
                "labels": tfds.features.FeaturesDict(
                    {"category": tfds.features.ClassLabel(names=CATEGORIES)}
                ),
                "keypoints": tfds.features.FeaturesDict(
                    {HEAD: tfds.features.Tensor(shape=(NUM_KEYPOINTS, 3), dtype=np.float32)}
                ),
                "keypoint_categories": tfds.features.FeaturesDict(
                    {HEAD: tfds.features.ClassLabel(names=CATEGORIES)}
                ),
                "defined": tfds.features.Tensor(shape=(NUM_KEYPOINTS,), dtype=np.bool_),
                "labelled": tfds.features.Scalar(dtype=np.bool_),
                "order": tfds.features.Scalar(dtype=np.int64),
            },
            homepage="https://tianchi.aliyun.com/competition/entrance/231648",
            metadata={"keypoint_heads": {HEAD: list(KEYPOINTS)}},
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = self._manual_root(dl_manager)
        releases = find_releases(root) if root.is_dir() else []
        if not any((root / r / f).is_file() for r in releases for f in LABEL_FILES):
            raise self._missing_files(
                root,
                [f"<release>/{' or '.join(LABEL_FILES)} (in at least one release folder)"],
            )
        report = self._new_report()
        rows: dict[str, list[_Row]] = {s: [] for s in SPLIT_ORDER}
        for release in releases:
            seen: dict[str, str] = {}  # image_id -> where, across the release's files
            for name in (*LABEL_FILES, *TEST_FILES):
                path = root / release / name
                if path.is_file():
                    labelled = name in LABEL_FILES
                    for split, row in self._read_file(root, release, path, labelled, seen, report):
                        rows[split].append(dataclasses.replace(row, order=len(rows[split])))
        return self._read_split_examples(
            rows, report, hint="check that each release folder holds the Images/ its csv files list"
        )

    def _read_file(
        self,
        root: epath.Path,
        release: str,
        path: epath.Path,
        labelled: bool,
        seen: dict[str, str],
        report: BuildReport,
    ) -> Iterator[tuple[str, _Row]]:
        """Parses a labelled file or a test list; bad rows raise or are reported."""
        config: KeypointsConfig = self.builder_config
        policy = config.policy
        header, csv_rows = read_csv_rows(path, header=True)
        _check_header(path, header or (), labelled)
        report.add_file(path, len(csv_rows))
        for row in csv_rows:
            split = "test"
            if labelled:
                split = "train"
                if row.fields and val_bucket(row.fields[0]) < config.val_percent:
                    split = "val"
            try:
                parsed = _parse_row(root, release, row, labelled)
                same = normalize_image_path(parsed.path)  # ./a.jpg is a.jpg
                first = seen.setdefault(same, row.where)
                if first != row.where:
                    raise row.error(
                        "image_id",
                        parsed.path,
                        "each image once per release",
                        note=f"also {first}",
                        reason="duplicate_row",
                    )
            except AnnotationError as e:
                policy.bad_row(e, report.split(split))
                continue
            yield split, parsed

    def _heads(self) -> Mapping[str, Sequence[str]]:
        return {"category": CATEGORIES}

    def _example(
        self, split: str, row: _Row, image: PreparedImage, report: SkipReport
    ) -> dict[str, Any] | None:
        width, height = image.info.width, image.info.height
        for k in np.flatnonzero(row.visibility != ABSENT):
            x, y = (float(v) for v in row.points[k])
            if not (0.0 <= x <= width and 0.0 <= y <= height):
                report.skip(
                    KEYPOINT_OUTSIDE_IMAGE,
                    row.where,
                    f"{KEYPOINTS[k]} at x={x:g}, y={y:g} vs image {width}x{height}",
                )
                return None
        return {
            "image": image.data,
            "image/filename": row.name,
            "image_id": row.path,
            "release": row.release,
            "image/height": height,
            "image/width": width,
            "labels": {"category": CATEGORIES.index(row.category)},
            "keypoints": {HEAD: np.column_stack([row.points, row.visibility]).astype(np.float32)},
            "keypoint_categories": {HEAD: CATEGORIES.index(row.category)},
            "defined": np.asarray(FASHIONAI_KEYPOINTS.defined_mask(row.category), np.bool_),
            "labelled": row.labelled,
            "order": row.order,
        }


def _check_header(path: epath.Path, header: Sequence[str], labelled: bool) -> None:
    """Raises unless ``header`` names the columns in order (a file-level error, never skipped)."""
    expected = LABEL_HEADER if labelled else ID_COLUMNS
    what = (
        f"{','.join(ID_COLUMNS)} then the {NUM_KEYPOINTS} keypoints in the order of "
        "fashion_keras.heads.FASHIONAI_KEYPOINTS"
        if labelled
        else f"{','.join(ID_COLUMNS)} (a test list carries no keypoints)"
    )
    check_header(
        path,
        header,
        expected,
        what,
        note="reorder or rename the header to match the release format",
    )


def _parse_row(root: epath.Path, release: str, row: Row, labelled: bool) -> _Row:
    """Validates one csv row: column count, known category, safe path, the keypoint cells."""
    n = len(LABEL_HEADER) if labelled else len(ID_COLUMNS)
    if len(row.fields) != n:
        what = "image_id,image_category,<24 x_y_v cells>" if labelled else ",".join(ID_COLUMNS)
        raise row.error(
            "number of columns",
            len(row.fields),
            f"{n} comma-separated columns ({what})",
            note=f"row: {row.text!r}",
            reason="wrong_column_count",
        )
    rel, category = row.fields[0], row.fields[1]
    if category not in CATEGORIES:
        raise row.error(
            "image_category", category, f"one of {list(CATEGORIES)}", reason="unknown_category"
        )
    image = resolve_image_path(root / release, rel, row, "image_id")
    points = np.full((NUM_KEYPOINTS, 2), ABSENT, np.float32)
    visibility = np.full((NUM_KEYPOINTS,), ABSENT, np.int32)
    if labelled:
        defined = FASHIONAI_KEYPOINTS.defined_mask(category)
        for k, name in enumerate(KEYPOINTS):
            x, y, v = _parse_cell(row, len(ID_COLUMNS) + k, name)
            if v != ABSENT and not defined[k]:
                raise row.error(
                    _field(name, len(ID_COLUMNS) + k),
                    row.fields[len(ID_COLUMNS) + k],
                    f"'-1_-1_-1': category {category!r} does not define {name!r}",
                    note=f"it defines {list(FASHIONAI_KEYPOINTS.category(category).keypoints)}",
                    reason="undefined_keypoint",
                )
            if v != ABSENT:
                points[k] = (x, y)
            visibility[k] = v
    return _Row(release, rel, image, category, points, visibility, labelled, row.where)


def _field(name: str, index: int) -> str:
    return f"{name} (column {index + 1})"


def _parse_cell(row: Row, index: int, name: str) -> tuple[float, float, int]:
    """The ``x_y_v`` cell ``index`` of ``row`` as ``(x, y, v)``."""
    token = row.fields[index]
    field = _field(name, index)
    match = _CELL_RE.match(token)
    if match is None:
        raise row.error(field, token, CELL_EXPECTED, reason="bad_keypoint_cell")
    x, y, v = float(match[1]), float(match[2]), int(match[3])
    if v not in (-1, 0, 1):
        raise row.error(
            field,
            token,
            "a visibility v (the last part of x_y_v) of 1 (visible), 0 (occluded) or -1 (absent)",
            note=f"v = {v}",
            reason="bad_visibility",
        )
    if v == ABSENT and (x, y) != (ABSENT, ABSENT):
        raise row.error(
            field,
            token,
            "'-1_-1_-1' for an absent keypoint (v = -1), or v = 1 / 0 for a point",
            reason="bad_keypoint_cell",
        )
    return x, y, v
