"""deepfashion_attributes: DeepFashion fine-grained attributes (``Anno_fine/``), six heads.

Reads the manual download ``<manual_dir>/Anno_fine/`` + ``<manual_dir>/img/`` and yields one
example per row of ``<split>.txt`` with the image bytes unchanged, the garment bbox, the six
DeepFashion-6 attribute labels and the category. Class lists come from ``fashion_keras.heads``.
All row checks go through ``fashion_keras_datasets.validation``.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from typing import Any

import tensorflow_datasets.public_api as tfds
from absl import logging
from etils import epath

from fashion_keras.heads import DEEPFASHION6, DEEPFASHION_CATEGORIES
from fashion_keras_datasets import validation

ANNO_DIR = "Anno_fine"
IMG_DIR = "img"
# TFDS split names are the file stems in Anno_fine/ (train.txt, val.txt, test.txt).
SPLITS = ("train", "val", "test")
REQUIRED_SPLITS = ("train", "val")
# Files of one split, by role; rows line up by row number.
ROLES = {"paths": "", "attr": "_attr", "cate": "_cate", "bbox": "_bbox"}
ATTR_GROUPS = tuple((h.name, h.classes) for h in DEEPFASHION6)
NUM_ATTR_COLUMNS = sum(len(c) for _, c in ATTR_GROUPS)
UNLABELLED = -1


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


class Builder(validation.SkipBadRowsConfigs, tfds.core.GeneratorBasedBuilder):
    """DeepFashion fine-grained attributes (DeepFashion-6), from a manual download."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release: six attribute heads, category and bbox.",
        "1.1.0": "Shared validation: image size limits, 16-bit/alpha/CMYK conversion, images "
        "duplicated across splits kept out of val/test, build report with per-head counts, "
        "`default_skip_bad_rows` config.",
    }
    BUILDER_CONFIGS = [
        validation.ValidatingConfig(
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
        list_category_cloth.txt, <split>_landmarks.txt   optional  not read

    Splits are named like the files: train, val and (if test.txt exists) test.
    The rows of a split's files line up by row number (no count or header lines). The
    {NUM_ATTR_COLUMNS} attribute columns, in order:
{_attr_listing()}

    Offline demo: `python -m fashion_keras.demo OUT_DIR` writes synthetic data in this layout.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
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
                }
            ),
            supervised_keys=None,
            homepage="http://mmlab.ie.cuhk.edu.hk/projects/DeepFashion/AttributePrediction.html",
            metadata=tfds.core.MetadataDict(),
        )

    @property
    def report(self) -> dict[str, Any]:
        """The :class:`validation.BuildReport` of the build (``info.metadata["report"]``)."""
        return dict(self.info.metadata.get("report", {}))

    @property
    def skip_reports(self) -> dict[str, dict[str, Any]]:
        """``{split: SkipReport.as_dict()}`` of the last build (the report's ``splits``)."""
        return dict(self.report.get("splits", {}))

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = epath.Path(dl_manager.manual_dir)
        if not root.is_absolute():  # file:line in messages should be unambiguous
            root = root.absolute()
        required = [split_file(s, role) for s in REQUIRED_SPLITS for role in ROLES]
        missing = validation.find_missing(root, required, dirs=[IMG_DIR])
        if missing:
            raise validation.MissingFilesError(
                self.name,
                root,
                missing,
                hint="Expected layout:\n" + textwrap.dedent(self.MANUAL_DOWNLOAD_INSTRUCTIONS),
            )
        _check_attr_list(root / ANNO_DIR / "list_attr_cloth.txt")
        names = list(REQUIRED_SPLITS)
        if (root / split_file("test", "paths")).is_file():
            names.append("test")
        # Every split's annotation files are checked before any image is read, so a structural
        # error in val.txt does not surface only after the whole train split was written.
        config: validation.ValidatingConfig = self.builder_config
        report = validation.BuildReport(self.name, config.name)
        parsed = {s: _read_split(root, s, config.policy, report) for s in names}
        duplicates = _find_duplicates(root, parsed)
        return {s: self._generate_examples(root, s, parsed[s], duplicates, report) for s in names}

    def _generate_examples(
        self,
        root: epath.Path,
        split: str,
        rows: dict[str, Any],
        duplicates: dict[tuple[str, str], str],
        build_report: validation.BuildReport,
    ) -> Iterator[tuple[str, dict]]:
        config: validation.ValidatingConfig = self.builder_config
        report = build_report.split(split)
        report.declare_heads({h.name: h.classes for h in DEEPFASHION6})
        has_bbox = rows["bbox"] is not None
        for i, path_row in enumerate(rows["paths"]):
            if i in rows["bad"]:
                continue  # counted as bad_row:* when read
            rel = path_row.fields[0]
            image = report.admit_image(
                path_row.where,
                rel,
                validation.resolve_image_path(root, rel, path_row),
                config.image_limits,
                duplicates.get((split, rel)),
            )
            if image is None:
                continue
            data, info = image.data, image.info
            if has_bbox:
                bbox_row = rows["bbox"][i]
                box, clamped = validation.normalize_bbox(
                    rows["bbox_px"][i], info.width, info.height
                )
                if box is None:
                    report.skip(
                        "bbox_outside_image",
                        bbox_row.where,
                        f"box {bbox_row.text} vs image {info.width}x{info.height}",
                    )
                    continue
                if clamped:
                    report.adjust(
                        "bbox_clamped",
                        bbox_row.where,
                        f"box {bbox_row.text} vs image {info.width}x{info.height}",
                    )
            else:
                box = (0.0, 0.0, 1.0, 1.0)
                report.adjust(
                    "bbox_file_absent",
                    path_row.where,
                    f"no {split_file(split, 'bbox')}: whole image",
                )
            labels = rows["labels"][i] if rows["labels"] is not None else None
            report.keep(
                {
                    h.name: None if labels is None else h.classes[labels[h.name]]
                    for h in DEEPFASHION6
                }
            )
            yield (
                rel,
                {
                    "image": data,
                    "image/filename": rel,
                    "bbox": tfds.features.BBox(*box),
                    "labels": {
                        head.name: (UNLABELLED if labels is None else labels[head.name])
                        for head in DEEPFASHION6
                    },
                    "category": (UNLABELLED if rows["category"] is None else rows["category"][i]),
                },
            )
        build_report.finish_split(split, self.info.metadata)
        report.raise_if_nothing_kept(
            hint=f"check that the images are under {validation.describe_dir(root / IMG_DIR)}"
        )


def _read_split(
    root: epath.Path,
    split: str,
    policy: validation.RowPolicy,
    build_report: validation.BuildReport,
) -> dict[str, Any]:
    """Reads and validates all annotation files of ``split``.

    A malformed row raises, or (``skip_bad_rows``) marks its row number bad in every file of
    the split (the files line up by row). Files whose row counts differ always raise.
    """
    files = {role: root / split_file(split, role) for role in ROLES}
    paths = validation.read_rows(files["paths"], keep_blank=True)
    build_report.add_file(files["paths"], len(paths))
    report = build_report.split(split)
    rows: dict[str, Any] = {"paths": paths}
    for role in ("attr", "cate", "bbox"):
        path = files[role]
        if split not in REQUIRED_SPLITS and not path.is_file():
            rows[role] = None
            continue
        rows[role] = validation.read_rows(path, keep_blank=True)
    validation.check_row_counts(
        {str(files[r]): len(rows[r]) for r in ROLES if rows[r] is not None},
        reference=str(files["paths"]),
    )
    rows["labels"] = None if rows["attr"] is None else [None] * len(paths)
    rows["category"] = None if rows["cate"] is None else [None] * len(paths)
    rows["bbox_px"] = None if rows["bbox"] is None else [None] * len(paths)
    rows["bad"] = set()
    seen: dict[str, int] = {}
    for i in range(len(paths)):
        try:
            _parse_line(root, i, rows, seen)
        except validation.AnnotationError as e:
            policy.bad_row(e, report)
            rows["bad"].add(i)
    return rows


def _parse_line(root: epath.Path, i: int, rows: dict[str, Any], seen: dict[str, int]) -> None:
    """Validates row ``i`` of every file of a split and stores the parsed values."""
    for role, what in (
        ("paths", "one relative image path"),
        ("cate", "a 1-based category id"),
        ("bbox", "x1 y1 x2 y2"),
    ):
        if rows[role] is not None:
            validation.expect_num_fields(rows[role][i], 4 if role == "bbox" else 1, what)
    row = rows["paths"][i]
    validation.resolve_image_path(root, row.fields[0], row)
    if row.fields[0] in seen:
        raise row.error(
            "image path",
            row.fields[0],
            "each image once per split",
            note=f"also line {seen[row.fields[0]]}",
            reason="duplicate_row",
        )
    if rows["attr"] is not None:
        rows["labels"][i] = validation.parse_one_hot_groups(rows["attr"][i], ATTR_GROUPS)
    if rows["cate"] is not None:
        rows["category"][i] = (
            validation.parse_int(
                rows["cate"][i],
                0,
                "category id",
                lo=1,
                hi=len(DEEPFASHION_CATEGORIES),
                reason="category_out_of_range",
            )
            - 1
        )
    if rows["bbox"] is not None:
        rows["bbox_px"][i] = validation.parse_bbox(rows["bbox"][i])
    seen[row.fields[0]] = row.line  # only valid rows: a bad row is no later row's original


def _find_duplicates(
    root: epath.Path, parsed: dict[str, dict[str, Any]]
) -> dict[tuple[str, str], str]:
    """``{(split, image path): where}`` of images whose bytes appear in an earlier split."""
    good = {
        split: [r for i, r in enumerate(rows["paths"]) if i not in rows["bad"]]
        for split, rows in parsed.items()
    }
    hashes = validation.hash_files(root / r.fields[0] for rs in good.values() for r in rs)
    finder = validation.CrossSplitDuplicates(SPLITS)
    for split, rs in good.items():
        for r in rs:
            finder.add(split, r.fields[0], hashes[str(root / r.fields[0])], r.where)
    return finder.duplicates()


def _check_attr_list(path: epath.Path) -> None:
    """Checks an optional ``list_attr_cloth.txt`` against the head taxonomy."""
    if not path.is_file():
        return
    _, rows = validation.read_counted_rows(path, min_fields=2)
    expected = [(c, t) for t, (_, classes) in enumerate(ATTR_GROUPS, start=1) for c in classes]
    if len(rows) != len(expected):
        raise validation.AnnotationError(
            path, 1, "count line", len(rows), f"{len(expected)} attributes (DeepFashion-6)"
        )
    for row, (name, t) in zip(rows, expected, strict=True):
        got_type = validation.parse_int(row, -1, "attribute_type", lo=1, hi=len(ATTR_GROUPS))
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
