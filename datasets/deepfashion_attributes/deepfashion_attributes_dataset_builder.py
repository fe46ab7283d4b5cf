"""deepfashion_attributes: DeepFashion fine-grained attributes (``Anno_fine/``), six heads.

Reads the manual download ``<manual_dir>/Anno_fine/`` + ``<manual_dir>/img/`` and yields one
example per row of ``<split>.txt`` with the image bytes unchanged, the garment bbox, the six
DeepFashion-6 attribute labels, the category and, from the optional
``<split>_landmarks.txt``, the landmarks (``keypoints/deepfashion_landmarks``, all -1 without the
file; see :mod:`fashion_keras_datasets.deepfashion_category.landmarks`). Class lists come from
``fashion_keras.heads``. All row checks go through ``fashion_keras_datasets.common``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import tensorflow_datasets.public_api as tfds
from absl import logging
from etils import epath

from fashion_keras.heads import DEEPFASHION6, DEEPFASHION_CATEGORIES, DEEPFASHION_CATEGORY_TYPES
from fashion_keras_datasets.common.builder import RowPolicy, ValidatingBuilder, ValidatingConfig
from fashion_keras_datasets.common.errors import AnnotationError, describe_dir
from fashion_keras_datasets.common.images import PreparedImage
from fashion_keras_datasets.common.report import BuildReport, SkipReport
from fashion_keras_datasets.common.rows import (
    Row,
    check_row_counts,
    expect_num_fields,
    normalize_image_path,
    parse_bbox,
    parse_int,
    parse_one_hot_groups,
    read_counted_rows,
    read_rows,
    resolve_image_path,
)
from fashion_keras_datasets.deepfashion_category import landmarks as lm

ANNO_DIR = "Anno_fine"
IMG_DIR = "img"
# TFDS split names are the file stems in Anno_fine/ (train.txt, val.txt, test.txt).
SPLITS = ("train", "val", "test")
REQUIRED_SPLITS = ("train", "val")
# Files of one split, by role; rows line up by row number. Landmarks are optional in every split.
ROLES = {"paths": "", "attr": "_attr", "cate": "_cate", "bbox": "_bbox", "landmarks": "_landmarks"}
REQUIRED_ROLES = ("paths", "attr", "cate", "bbox")
ATTR_GROUPS = tuple((h.name, h.classes) for h in DEEPFASHION6)
NUM_ATTR_COLUMNS = sum(len(c) for _, c in ATTR_GROUPS)
UNLABELLED = -1
FULL_IMAGE = (0.0, 0.0, 1.0, 1.0)


def _attr_listing() -> str:
    lines = []
    for t, head in enumerate(DEEPFASHION6, start=1):
        lines.append(f"      type {t} {head.name}: {', '.join(head.classes)}")
    return "\n".join(lines)


def split_file(split: str, role: str) -> str:
    """The path of a split's file relative to the manual folder, e.g. ``Anno_fine/val_attr.txt``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return f"{ANNO_DIR}/{split}{ROLES[role]}.txt"


@dataclasses.dataclass(frozen=True)
class _Row:
    """One valid row of a split: line ``i`` of every annotation file of the split."""

    name: str  # the image path as in <split>.txt, also the example key
    image: epath.Path
    where: str
    labels: dict[str, int] | None  # class index per head; None without <split>_attr.txt
    category: int  # 0-based; UNLABELLED without <split>_cate.txt
    bbox: tuple[float, float, float, float] | None  # pixels; None without <split>_bbox.txt
    bbox_row: Row | None
    landmarks: lm.Landmarks | None  # None: not read (no <split>_landmarks.txt)

    @property
    def key(self) -> str:
        return self.name


class Builder(ValidatingBuilder):
    """DeepFashion fine-grained attributes (DeepFashion-6), from a manual download."""

    VERSION = tfds.core.Version("1.2.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release: six attribute heads, category and bbox.",
        "1.1.0": "Shared validation: image size limits, 16-bit/alpha/CMYK conversion, images "
        "duplicated across splits kept out of val/test, build report with per-head counts, "
        "`default_skip_bad_rows` config.",
        "1.2.0": "`keypoints/deepfashion_landmarks` (8 x (x, y, v)) from the optional "
        "`Anno_fine/<split>_landmarks.txt`, its clothes type in "
        "`keypoint_categories/deepfashion_landmarks`; `info.metadata['keypoint_heads']`.",
    }
    BUILDER_CONFIGS = [
        ValidatingConfig(
            name="default", description="Malformed rows stop the build (see the report)."
        )
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
    Download the DeepFashion "Category and Attribute Prediction Benchmark"
    (http://mmlab.ie.cuhk.edu.hk/projects/DeepFashion/AttributePrediction.html; the images are
    password-protected, ask the authors), unzip img.zip and place the fine-grained attribute
    annotations so that manual_dir looks like this:

    manual_dir/
      img/<Item_Folder>/img_XXXXXXXX.jpg   REQUIRED  the images (paths as listed in <split>.txt)
      Anno_fine/
        train.txt          REQUIRED  one relative image path per line (img/.../img_*.jpg)
        train_attr.txt     REQUIRED  {NUM_ATTR_COLUMNS} space-separated 0/1 per line, one 1 per type
        train_cate.txt     REQUIRED  one 1-based category id per line (1..{len(DEEPFASHION_CATEGORIES)})
        train_bbox.txt     REQUIRED  x1 y1 x2 y2 per line, pixels (top-left, bottom-right)
        val.txt, val_attr.txt, val_cate.txt, val_bbox.txt       REQUIRED  same formats
        test.txt           optional  if present, a `test` split is built
        test_attr.txt      optional  absent: attribute labels are -1 (unlabelled)
        test_cate.txt      optional  absent: category is -1 (unlabelled)
        test_bbox.txt      optional  absent: the whole image is used as the box
        list_attr_cloth.txt    optional  if present, checked: {NUM_ATTR_COLUMNS} rows
                               `name type` whose types group the columns as below
        train_landmarks.txt, val_landmarks.txt, test_landmarks.txt   optional  16 numbers
                           per line: the x y of the landmarks of the row's clothes type
                           (from its category: upper 6, lower 4, full 8) then zero padding;
                           `0 0` is an absent point. Absent: landmarks -1. Read only with the
                           split's <split>_cate.txt
        list_category_cloth.txt    optional  not read

    Splits are named like the files: train, val and (if test.txt exists) test.
    The rows of a split's files line up by row number (no count or header lines). The
    {NUM_ATTR_COLUMNS} attribute columns, in order:
{_attr_listing()}

    Offline demo: `python -m fashion_keras_datasets.synthetic.demo OUT_DIR` writes synthetic data
    in this layout.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return self._dataset_info(
            {
                "image": tfds.features.Image(encoding_format="jpeg"),
                "image/filename": tfds.features.Text(),
                "bbox": tfds.features.BBoxFeature(),
                "labels": tfds.features.FeaturesDict(
                    {
                        head.name: tfds.features.ClassLabel(names=head.classes)
                        for head in DEEPFASHION6
                    }
                ),
                "category": tfds.features.ClassLabel(names=DEEPFASHION_CATEGORIES),
                **lm.features(),
            },
            homepage="http://mmlab.ie.cuhk.edu.hk/projects/DeepFashion/AttributePrediction.html",
            metadata=lm.metadata(),
        )

    @property
    def skip_reports(self) -> dict[str, dict[str, Any]]:
        """``{split: SkipReport.as_dict()}`` of the last build (the report's ``splits``)."""
        return dict(self.report.get("splits", {}))

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = self._manual_root(dl_manager)
        self._require(
            root,
            [split_file(s, role) for s in REQUIRED_SPLITS for role in REQUIRED_ROLES],
            [IMG_DIR],
        )
        _check_attr_list(root / ANNO_DIR / "list_attr_cloth.txt")
        names = list(REQUIRED_SPLITS)
        if (root / split_file("test", "paths")).is_file():
            names.append("test")
        # Every split's annotation files are checked before any image is read, so a structural
        # error in val.txt does not surface only after the whole train split was written.
        config: ValidatingConfig = self.builder_config
        report = self._new_report()
        rows = {s: _read_split(root, s, config.policy, report) for s in names}
        hint = f"check that the images are under {describe_dir(root / IMG_DIR)}"
        return self._split_examples(rows, names, report, hint)

    def _heads(self) -> Mapping[str, Sequence[str]]:
        return {h.name: h.classes for h in DEEPFASHION6}

    def _example(
        self, split: str, row: _Row, image: PreparedImage, report: SkipReport
    ) -> dict[str, Any] | None:
        if row.bbox_row is not None:
            box = report.admit_box(row.bbox, image.info, row.bbox_row.where, row.bbox_row.text)
            if box is None:
                return None
        else:
            box = FULL_IMAGE
            report.adjust(
                "bbox_file_absent", row.where, f"no {split_file(split, 'bbox')}: whole image"
            )
        keypoints = lm.example_value(
            row.landmarks,
            image.info,
            self.builder_config.policy,
            report,
            where=row.where,
            missing=f"no {split_file(split, 'landmarks')} read: landmarks -1",
        )
        if keypoints is None:
            return None
        return {
            "image": image.data,
            "image/filename": row.name,
            "bbox": tfds.features.BBox(*box),
            "labels": {
                head.name: (UNLABELLED if row.labels is None else row.labels[head.name])
                for head in DEEPFASHION6
            },
            "category": row.category,
            **keypoints,
        }


def _read_split(
    root: epath.Path, split: str, policy: RowPolicy, build_report: BuildReport
) -> list[_Row]:
    """Reads and validates all annotation files of ``split``: its valid rows.

    A malformed row raises, or (``skip_bad_rows``) leaves out its row number in every file of
    the split (the files line up by row). Files whose row counts differ always raise. The
    landmarks of a split are read only with its ``<split>_cate.txt`` (the category tells the
    clothes type that places them); without it the build report notes the file as not read.
    """
    files = {role: root / split_file(split, role) for role in ROLES}
    paths = read_rows(files["paths"], keep_blank=True)
    build_report.add_file(files["paths"], len(paths))
    report = build_report.split(split)
    rows: dict[str, list[Row] | None] = {"paths": paths}
    for role in ("attr", "cate", "bbox", "landmarks"):
        path = files[role]
        if (split not in REQUIRED_SPLITS or role == "landmarks") and not path.is_file():
            rows[role] = None
            continue
        if role == "landmarks" and rows["cate"] is None:
            build_report.note(
                f"{path}: not read: without {files['cate'].name} the clothes type of its rows "
                "is unknown (landmarks -1)"
            )
            rows[role] = None
            continue
        rows[role] = read_rows(path, keep_blank=True)
    check_row_counts(
        {str(files[r]): len(rows[r]) for r in ROLES if rows[r] is not None},
        reference=str(files["paths"]),
    )
    valid = []
    seen: dict[str, int] = {}
    for i in range(len(paths)):
        line = {role: None if rows[role] is None else rows[role][i] for role in ROLES}
        try:
            valid.append(_parse_line(root, line, seen))
        except AnnotationError as e:
            policy.bad_row(e, report)
    return valid


def _parse_line(root: epath.Path, line: dict[str, Row | None], seen: dict[str, int]) -> _Row:
    """Validates one row of every file of a split (``line``: the row of each role)."""
    for role, what in (
        ("paths", "one relative image path"),
        ("cate", "a 1-based category id"),
        ("bbox", "x1 y1 x2 y2"),
    ):
        if line[role] is not None:
            expect_num_fields(line[role], 4 if role == "bbox" else 1, what)
    row = line["paths"]
    image = resolve_image_path(root, row.fields[0], row)
    same = normalize_image_path(row.fields[0])  # ./a.jpg and a//b.jpg are a.jpg and a/b.jpg
    if same in seen:
        raise row.error(
            "image path",
            row.fields[0],
            "each image once per split",
            note=f"also line {seen[same]}",
            reason="duplicate_row",
        )
    labels = category = bbox = None
    if line["attr"] is not None:
        labels = parse_one_hot_groups(line["attr"], ATTR_GROUPS)
    if line["cate"] is not None:
        category = (
            parse_int(
                line["cate"],
                0,
                "category id",
                lo=1,
                hi=len(DEEPFASHION_CATEGORIES),
                reason="category_out_of_range",
            )
            - 1
        )
    if line["bbox"] is not None:
        bbox = parse_bbox(line["bbox"])
    landmarks = None
    if line["landmarks"] is not None and category is not None:
        clothes_type = DEEPFASHION_CATEGORY_TYPES[category]
        landmarks = lm.parse_fine_row(line["landmarks"], clothes_type)
    seen[same] = row.line  # only valid rows: a bad row is no later row's original
    return _Row(
        name=row.fields[0],
        image=image,
        where=row.where,
        labels=labels,
        category=UNLABELLED if category is None else category,
        bbox=bbox,
        bbox_row=line["bbox"],
        landmarks=landmarks,
    )


def _check_attr_list(path: epath.Path) -> None:
    """Checks an optional ``list_attr_cloth.txt`` against the head taxonomy."""
    if not path.is_file():
        return
    _, rows = read_counted_rows(path, min_fields=2)
    expected = [(c, t) for t, (_, classes) in enumerate(ATTR_GROUPS, start=1) for c in classes]
    if len(rows) != len(expected):
        raise AnnotationError(
            path, 1, "count line", len(rows), f"{len(expected)} attributes (DeepFashion-6)"
        )
    for row, (name, t) in zip(rows, expected, strict=True):
        got_type = parse_int(row, -1, "attribute_type", lo=1, hi=len(ATTR_GROUPS))
        if got_type != t:
            raise row.error(
                "attribute_type",
                row.fields[-1],
                f"{t} ({ATTR_GROUPS[t - 1][0]}) for column {row.line - 2} ({name!r})",
            )
        got_name = "_".join(row.fields[:-1]).lower().replace("-", "_")
        if got_name != name:  # names are unconfirmed for the real release: warn, don't fail
            logging.warning(
                "%s: attribute_name = %r: expected %r (column %d in fashion_keras.heads order); "
                "the column types match, continuing",
                row.where,
                " ".join(row.fields[:-1]),
                name,
                row.line - 2,
            )
