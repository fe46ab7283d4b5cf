"""deepfashion_category: the DeepFashion Category and Attribute Prediction Benchmark (coarse).

Reads ``Anno/list_category_img.txt``, ``Anno/list_bbox.txt`` and ``Eval/list_eval_partition.txt``
(each: a count line, a header line, then whitespace-separated rows, joined by image name) and
yields one example per row of the partition file, with the 50-entry category label (1-based ids
in the files, 0-based here), the body type (upper, lower, full) and the garment bbox. The
``attributes`` config also reads ``list_attr_cloth.txt`` (1000 ``name type`` rows; names contain
spaces, the type is the last token) and ``list_attr_img.txt`` (1000 values of 1/-1/0 per image).
Every config reads the optional ``list_landmarks.txt`` into ``keypoints/deepfashion_landmarks``
(see :mod:`.landmarks`; all -1 for an image without a landmark row, or without the file).
Class lists come from ``fashion_keras.heads``; every row check goes through ``common``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets.public_api as tfds
from etils import epath

from fashion_keras.heads import DEEPFASHION_CATEGORIES, DEEPFASHION_CATEGORY_TYPES
from fashion_keras_datasets.common.builder import RowPolicy, ValidatingBuilder, ValidatingConfig
from fashion_keras_datasets.common.errors import AnnotationError
from fashion_keras_datasets.common.images import PreparedImage
from fashion_keras_datasets.common.report import BuildReport, SkipReport
from fashion_keras_datasets.common.rows import (
    Row,
    expect_num_fields,
    normalize_image_path,
    parse_bbox,
    parse_int,
    read_counted_rows,
    resolve_image_path,
)
from fashion_keras_datasets.deepfashion_category import landmarks as lm

ANNO_DIRS = ("Anno", "Anno_coarse")  # the 2016 release / the later split into Anno_coarse
IMG_DIR = "img"
CATEGORY_FILE = "list_category_img.txt"
BBOX_FILE = "list_bbox.txt"
PARTITION_FILE = "Eval/list_eval_partition.txt"
CATEGORY_LIST_FILE = "list_category_cloth.txt"
ATTR_LIST_FILE = "list_attr_cloth.txt"
ATTR_IMG_FILE = "list_attr_img.txt"
LANDMARK_FILE = "list_landmarks.txt"
SPLITS = ("train", "val", "test")  # also the duplicate order: train first
BODY_TYPES = ("upper_body", "lower_body", "full_body")  # types 1, 2, 3
NUM_ATTRIBUTES = 1000
ATTRIBUTE_TYPES = ("texture", "fabric", "shape", "part", "style")  # types 1..5
ATTRIBUTE_VALUES = {"1": 1, "-1": -1, "0": 0}


@dataclasses.dataclass(eq=False)
class CategoryConfig(ValidatingConfig):
    """Options of the DeepFashion category builder.

    Attributes:
      with_attributes: also read the 1000 attributes per image (``attributes`` feature).
    """

    with_attributes: bool = False


@dataclasses.dataclass(frozen=True)
class _Row:
    """One partition row joined with its category, bbox and attributes."""

    name: str
    image: epath.Path
    where: str
    category: int  # 0-based
    bbox: tuple[float, float, float, float]
    bbox_where: str
    attributes: np.ndarray | None
    landmarks: lm.Landmarks | None  # None: no landmark row for the image
    has_landmark_file: bool  # whether the release has list_landmarks.txt

    @property
    def key(self) -> str:
        return self.name


class Builder(ValidatingBuilder):
    """DeepFashion category benchmark (50 categories, top-k), from a manual download."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release: category, body type, bbox, optional attributes.",
        "1.1.0": "`keypoints/deepfashion_landmarks` (8 x (x, y, v)) from the optional "
        "`Anno/list_landmarks.txt`, its clothes type in `keypoint_categories/deepfashion_landmarks`; "
        "`info.metadata['keypoint_heads']`.",
    }
    BUILDER_CONFIGS = [
        CategoryConfig(name="category", description="Category, body type and bbox."),
        CategoryConfig(
            name="attributes",
            description="Also the 1000 attributes (1 positive, -1 negative, 0 unknown).",
            with_attributes=True,
        ),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
    Download the DeepFashion "Category and Attribute Prediction Benchmark"
    (http://mmlab.ie.cuhk.edu.hk/projects/DeepFashion/AttributePrediction.html; the images are
    password-protected, ask the authors), unzip img.zip and place the files so:

    manual_dir/
      img/<Item_Folder>/img_XXXXXXXX.jpg  REQUIRED  the images (names as in the lists)
      Anno/                                (or Anno_coarse/)
        {CATEGORY_FILE}     REQUIRED  `image_name category_label` (1-based, 1..50)
        {BBOX_FILE}            REQUIRED  `image_name x_1 y_1 x_2 y_2` (pixels)
        {CATEGORY_LIST_FILE}  optional  50 `category_name category_type` rows, checked
        {ATTR_LIST_FILE}      config `attributes`: {NUM_ATTRIBUTES} `attribute_name attribute_type`
                                 rows (names contain spaces; the type is the last token)
        {ATTR_IMG_FILE}        config `attributes`: `image_name` + {NUM_ATTRIBUTES} values 1/-1/0
        {LANDMARK_FILE}       optional  `image_name clothes_type [variation_type]` then
                                 `visibility x y` per landmark (6 upper, 4 lower, 8 full
                                 body; visibility 0 visible, 1 occluded, 2 truncated)
      {PARTITION_FILE}  REQUIRED  `image_name evaluation_status` (train|val|test)

    Every file: line 1 the number of rows, line 2 a header, then whitespace-separated rows.
    Files are joined by image_name; the partition file decides which images are read.
    Images without a landmark row (or a release without {LANDMARK_FILE}) get landmarks -1.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        features = {
            "image": tfds.features.Image(encoding_format="jpeg"),
            "image/filename": tfds.features.Text(),
            "bbox": tfds.features.BBoxFeature(),
            "labels": tfds.features.FeaturesDict(
                {
                    "category": tfds.features.ClassLabel(names=DEEPFASHION_CATEGORIES),
                    "category_type": tfds.features.ClassLabel(names=BODY_TYPES),
                }
            ),
        }
        if self.builder_config.with_attributes:
            features["attributes"] = tfds.features.Tensor(shape=(NUM_ATTRIBUTES,), dtype=np.int8)
        features.update(lm.features())
        return self._dataset_info(
            features,
            homepage="http://mmlab.ie.cuhk.edu.hk/projects/DeepFashion/AttributePrediction.html",
            metadata=lm.metadata(),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        config: CategoryConfig = self.builder_config
        root = self._manual_root(dl_manager)
        anno = next((d for d in ANNO_DIRS if (root / d).is_dir()), ANNO_DIRS[0])
        required = [f"{anno}/{CATEGORY_FILE}", f"{anno}/{BBOX_FILE}", PARTITION_FILE]
        if config.with_attributes:
            required += [f"{anno}/{ATTR_LIST_FILE}", f"{anno}/{ATTR_IMG_FILE}"]
        self._require(root, required, [IMG_DIR])
        _check_category_list(root / anno / CATEGORY_LIST_FILE)
        report = self._new_report()
        policy = config.policy

        def file_problem(error: AnnotationError) -> None:
            policy.file_problem(error, report)

        # The partition file defines the rows (and their split).
        partition_path = root / PARTITION_FILE
        _, partition = read_counted_rows(
            partition_path, keep_blank=True, on_count_mismatch=file_problem
        )
        report.add_file(partition_path, len(partition))
        for split in SPLITS:
            report.split(split)

        # Secondary files, keyed by image name; a bad row there fails the image's row.
        secondary: dict[str, dict[str, tuple[Row, Any]]] = {
            "category": _read_keyed(root / anno / CATEGORY_FILE, _parse_category, file_problem),
            "bbox": _read_keyed(root / anno / BBOX_FILE, _parse_bbox, file_problem),
        }
        if config.with_attributes:
            names, types = _read_attribute_list(root / anno / ATTR_LIST_FILE)
            self.info.metadata["attribute_names"] = names
            self.info.metadata["attribute_types"] = types
            secondary["attributes"] = _read_keyed(
                root / anno / ATTR_IMG_FILE, _parse_attributes, file_problem
            )
        landmark_path = root / anno / LANDMARK_FILE
        if landmark_path.is_file():
            secondary["landmarks"] = _read_keyed(landmark_path, lm.parse_coarse_row, file_problem)
        rows = _join_partition(root, partition, secondary, policy, report)
        return self._split_examples(
            rows,
            [s for s in SPLITS if rows[s] or report.split(s).num_rows],
            report,
            hint="check that the images are under manual_dir/img/",
        )

    def _heads(self) -> Mapping[str, Sequence[str]]:
        return {"category": DEEPFASHION_CATEGORIES, "category_type": BODY_TYPES}

    def _example(
        self, split: str, row: _Row, image: PreparedImage, report: SkipReport
    ) -> dict[str, Any] | None:
        box = report.admit_box(row.bbox, image.info, row.bbox_where)
        if box is None:
            return None
        category_type = DEEPFASHION_CATEGORY_TYPES[row.category]
        if row.has_landmark_file:
            missing = f"{row.name}: no row in {LANDMARK_FILE}: landmarks -1"
        else:
            missing = f"no {LANDMARK_FILE} in the release: landmarks -1"
        keypoints = lm.example_value(
            row.landmarks,
            image.info,
            self.builder_config.policy,
            report,
            where=row.where,
            missing=missing,
            category_type=category_type,
        )
        if keypoints is None:
            return None
        example = {
            "image": image.data,
            "image/filename": row.name,
            "bbox": tfds.features.BBox(*box),
            "labels": {
                "category": row.category,
                "category_type": category_type - 1,
            },
            **keypoints,
        }
        if self.builder_config.with_attributes:
            example["attributes"] = row.attributes
        return example


def _join_partition(
    root: epath.Path,
    partition: list[Row],
    secondary: dict[str, dict[str, tuple[Row, Any]]],
    policy: RowPolicy,
    report: BuildReport,
) -> dict[str, list[_Row]]:
    """The valid partition rows of each split, joined with their secondary rows.

    A bad partition row raises or is reported in its split; rows of secondary files whose image
    the partition file does not list are a file problem.
    """
    rows: dict[str, list[_Row]] = {s: [] for s in SPLITS}
    seen: dict[str, int] = {}
    for prow in partition:
        split = prow.fields[1] if len(prow.fields) == 2 and prow.fields[1] in SPLITS else "train"
        try:
            rows[split].append(_join(root, prow, secondary, seen))
        except AnnotationError as e:
            policy.bad_row(e, report.split(split))
    for keyed in secondary.values():
        orphans = [row for name, (row, _) in keyed.items() if name not in seen]
        if orphans:
            policy.file_problem(
                orphans[0].error(
                    "image_name",
                    orphans[0].fields[0],
                    f"an image listed in {PARTITION_FILE}",
                    note=f"{len(orphans)} row(s) of this file name images the partition "
                    f"file does not list; they are not used",
                    reason="not_in_partition",
                ),
                report,
            )
    return rows


# --- parsing --------------------------------------------------------------------------------------


def _read_keyed(
    path: epath.Path,
    parse: Callable[[Row], Any],
    file_problem: Callable[[AnnotationError], None],
) -> dict[str, tuple[Row, Any]]:
    """``{image_name: (row, parsed value or the AnnotationError)}`` of a count+header file
    (names as :func:`normalize_image_path` gives them, the form the files are joined on).

    Errors are kept, not raised, so they surface on the partition row of that image (and count
    in its split). Blank lines and a name listed twice are file problems of their own.
    """
    _, rows = read_counted_rows(path, keep_blank=True, on_count_mismatch=file_problem)
    out: dict[str, tuple[Row, Any]] = {}
    for row in rows:
        if not row.fields:
            file_problem(
                row.error("row", "", "a non-empty row", note="blank line", reason="blank_line")
            )
            continue
        name = normalize_image_path(row.fields[0])
        if name in out:
            file_problem(
                row.error(
                    "image_name",
                    row.fields[0],
                    "each image once per file",
                    note=f"also line {out[name][0].line}; the first is used",
                    reason="duplicate_row",
                )
            )
            continue
        try:
            value = parse(row)
        except AnnotationError as e:
            value = e
        out[name] = (row, value)
    return out


def _parse_category(row: Row) -> int:
    expect_num_fields(row, 2, "image_name category_label")
    n = len(DEEPFASHION_CATEGORIES)
    return parse_int(row, 1, "category_label", lo=1, hi=n, reason="category_out_of_range") - 1


def _parse_bbox(row: Row) -> tuple[float, float, float, float]:
    expect_num_fields(row, 5, "image_name x_1 y_1 x_2 y_2")
    return parse_bbox(row, start=1, field="bbox x_1 y_1 x_2 y_2")


def _parse_attributes(row: Row) -> np.ndarray:
    expect_num_fields(row, 1 + NUM_ATTRIBUTES, f"image_name + {NUM_ATTRIBUTES} values")
    values = np.zeros(NUM_ATTRIBUTES, np.int8)
    for i, token in enumerate(row.fields[1:]):
        value = ATTRIBUTE_VALUES.get(token)
        if value is None:
            raise row.error(
                f"attribute {i + 1}",
                token,
                "1, -1 or 0 (positive, negative, unknown)",
                reason="bad_value",
            )
        values[i] = value
    return values


def _join(
    root: epath.Path,
    prow: Row,
    secondary: dict[str, dict[str, tuple[Row, Any]]],
    seen: dict[str, int],
) -> _Row:
    """Validates a partition row and joins it with the other files' rows for its image."""
    if not prow.fields:
        raise prow.error("row", "", "image_name evaluation_status", reason="blank_line")
    expect_num_fields(prow, 2, "image_name evaluation_status")
    name, status = prow.fields
    same = normalize_image_path(name)  # ./a.jpg and a//b.jpg are a.jpg and a/b.jpg
    first = seen.setdefault(same, prow.line)
    if first != prow.line:
        raise prow.error(
            "image_name", name, "each image once", note=f"also line {first}", reason="duplicate_row"
        )
    if status not in SPLITS:
        raise prow.error("evaluation_status", status, "train, val or test", reason="unknown_split")
    image = resolve_image_path(root, name, prow, "image_name")
    values: dict[str, Any] = {}
    where: dict[str, str] = {}
    for kind, keyed in secondary.items():
        entry = keyed.get(same)
        if entry is None and kind == "landmarks":
            continue  # optional: the image gets landmarks -1 (counted in the report)
        if entry is None:
            file = {"category": CATEGORY_FILE, "bbox": BBOX_FILE, "attributes": ATTR_IMG_FILE}[kind]
            raise prow.error(
                "image_name", name, f"a row for it in {file}", reason=f"missing_{kind}"
            )
        row, value = entry
        if isinstance(value, AnnotationError):
            raise value
        values[kind], where[kind] = value, row.where
    return _Row(
        name=name,
        image=image,
        where=prow.where,
        category=values["category"],
        bbox=values["bbox"],
        bbox_where=where["bbox"],
        attributes=values.get("attributes"),
        landmarks=values.get("landmarks"),
        has_landmark_file="landmarks" in secondary,
    )


def _check_category_list(path: epath.Path) -> None:
    """Checks an optional ``list_category_cloth.txt`` against ``fashion_keras.heads``."""
    if not path.is_file():
        return
    _, rows = read_counted_rows(path, min_fields=2)
    if len(rows) != len(DEEPFASHION_CATEGORIES):
        raise AnnotationError(
            path, 1, "count line", len(rows), f"{len(DEEPFASHION_CATEGORIES)} categories"
        )
    for row, name, t in zip(rows, DEEPFASHION_CATEGORIES, DEEPFASHION_CATEGORY_TYPES, strict=True):
        got = " ".join(row.fields[:-1])
        if got != name:
            raise row.error(
                "category_name", got, f"{name!r} (category id {row.line - 2})", reason="taxonomy"
            )
        if parse_int(row, -1, "category_type", lo=1, hi=3) != t:
            raise row.error(
                "category_type", row.fields[-1], f"{t} ({BODY_TYPES[t - 1]})", reason="taxonomy"
            )


def _read_attribute_list(path: epath.Path) -> tuple[list[str], list[str]]:
    """Attribute names (which contain spaces) and types (the last token) of list_attr_cloth."""
    _, rows = read_counted_rows(path, min_fields=2)
    if len(rows) != NUM_ATTRIBUTES:
        raise AnnotationError(
            path, 1, "count line", len(rows), f"{NUM_ATTRIBUTES} attributes", reason="count"
        )
    names, types = [], []
    for row in rows:
        t = parse_int(row, -1, "attribute_type (the last token)", lo=1, hi=5)
        names.append(" ".join(row.fields[:-1]))
        types.append(ATTRIBUTE_TYPES[t - 1])
    return names, types
