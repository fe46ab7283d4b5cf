"""DeepFashion landmarks: the optional ``keypoints`` feature of both DeepFashion builders.

Two files carry landmarks (``/work/shared/spec/formats.md`` section 5 and 2.1):

* ``Anno/list_landmarks.txt`` (coarse benchmark): a count line, a header, then per image
  ``image_name clothes_type [variation_type]`` and one ``visibility x y`` triple per landmark of
  the clothes type (1 upper-body: 6, 2 lower-body: 4, 3 full-body: 8). Whether
  ``variation_type`` is there is told by the column count. DeepFashion's visibility 0 (visible),
  1 (occluded) and 2 (truncated) become v = 1, 0 and -1.
* ``Anno_fine/<split>_landmarks.txt`` (fine-grained release): 16 numbers per row, lined up with
  ``<split>.txt``: the ``x y`` of the landmarks of the row's clothes type (from its category) in
  file order, then zeros up to 8 pairs. The file has no visibility: a point is v = 1, a
  ``0 0`` pair absent (v = -1).

Every example gets ``keypoints/deepfashion_landmarks``: float32 ``[8, 3]`` rows ``(x, y, v)`` in
original image pixels, in the order of ``fashion_keras.heads.DEEPFASHION_LANDMARKS.keypoints``;
v = 1 visible, 0 occluded, -1 absent (truncated, not defined by the clothes type, or no landmark
row), with x = y = -1 where v = -1.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import tensorflow_datasets.public_api as tfds

from fashion_keras.heads import DEEPFASHION_LANDMARKS
from fashion_keras_datasets.common.builder import RowPolicy
from fashion_keras_datasets.common.images import ImageInfo
from fashion_keras_datasets.common.report import SkipReport
from fashion_keras_datasets.common.rows import Row, expect_num_fields, parse_int, parse_number

HEAD = DEEPFASHION_LANDMARKS
FEATURE = "keypoints"
#: The garment type of the landmark row among the head's categories (upper/lower/full body).
CATEGORY_FEATURE = "keypoint_categories"
NUM_LANDMARKS = HEAD.num_keypoints
ABSENT = -1.0
#: DeepFashion visibility code -> v (0 visible -> 1, 1 occluded -> 0, 2 truncated -> -1).
VISIBILITY = {"0": 1.0, "1": 0.0, "2": ABSENT}
VISIBILITY_EXPECTED = "0 (visible), 1 (occluded) or 2 (truncated)"
#: Report counts (``SkipReport.count``) of the kept examples.
WITH_LANDMARKS = "landmarks"  # a landmark row was read for the image
WITHOUT_LANDMARKS = "landmarks_absent"  # no landmark file, or no row for the image: all -1
TYPE_MISMATCH = "landmark_type_mismatch"  # landmark clothes type != the category's type
#: Bad-row reason of a visible or occluded landmark outside its image.
OUTSIDE_IMAGE = "landmark_outside_image"


def features() -> dict[str, Any]:
    """The ``keypoints`` and ``keypoint_categories`` features (merged into a builder's)."""
    return {
        FEATURE: tfds.features.FeaturesDict(
            {HEAD.name: tfds.features.Tensor(shape=(NUM_LANDMARKS, 3), dtype=np.float32)}
        ),
        CATEGORY_FEATURE: tfds.features.FeaturesDict(
            {HEAD.name: tfds.features.ClassLabel(names=HEAD.category_names)}
        ),
    }


def metadata() -> dict[str, Any]:
    """The builder's ``info.metadata`` entry naming the keypoints of the feature, in order."""
    return {"keypoint_heads": {HEAD.name: list(HEAD.keypoints)}}


def absent() -> np.ndarray:
    """The landmarks of an image without any: every row ``(-1, -1, -1)``."""
    return np.full((NUM_LANDMARKS, 3), ABSENT, np.float32)


def type_name(clothes_type: int) -> str:
    """The keypoint-head category of a 1-based DeepFashion clothes type / category type."""
    return HEAD.categories[clothes_type - 1].name


def slots(clothes_type: int) -> tuple[int, ...]:
    """Head indices of the landmarks of a 1-based clothes type, in the order files list them."""
    return tuple(HEAD.index(k) for k in HEAD.categories[clothes_type - 1].keypoints)


@dataclasses.dataclass(frozen=True, eq=False)
class Landmarks:
    """The landmarks of one annotation row."""

    points: np.ndarray  # float32 [8, 3]: x, y, v per head keypoint
    columns: tuple[int, ...]  # per head keypoint, the 1-based column of its x (0: none)
    clothes_type: int  # 1-based
    row: Row

    @property
    def where(self) -> str:
        return self.row.where


def parse_coarse_row(row: Row) -> Landmarks:
    """A row of ``Anno/list_landmarks.txt``: ``image_name clothes_type [variation_type]``
    then one ``visibility x y`` triple per landmark of the clothes type."""
    what = "image_name clothes_type [variation_type] then `visibility x y` per landmark"
    if len(row.fields) < 2:
        raise row.error("number of fields", len(row.fields), what, reason="wrong_column_count")
    clothes_type = parse_int(row, 1, "clothes_type", lo=1, hi=3, reason="bad_clothes_type")
    order = slots(clothes_type)
    n = len(order)
    if len(row.fields) not in (2 + 3 * n, 3 + 3 * n):
        raise row.error(
            "number of fields",
            len(row.fields),
            f"{2 + 3 * n} or {3 + 3 * n} ({what}; clothes_type {clothes_type} "
            f"({type_name(clothes_type)}) has {n} landmarks)",
            reason="wrong_landmark_count",
        )
    start = len(row.fields) - 3 * n
    if start == 3:
        parse_int(row, 2, "variation_type")
    points = absent()
    columns = [0] * NUM_LANDMARKS
    for j, k in enumerate(order):
        name = HEAD.keypoints[k]
        i = start + 3 * j
        code = row.fields[i]
        if code not in VISIBILITY:
            raise row.error(
                f"{name} visibility (column {i + 1})",
                code,
                VISIBILITY_EXPECTED,
                reason="bad_visibility",
            )
        x = parse_number(row, i + 1, f"{name} x (column {i + 2})", "a number (pixels)")
        y = parse_number(row, i + 2, f"{name} y (column {i + 3})", "a number (pixels)")
        v = VISIBILITY[code]
        if v != ABSENT:
            points[k] = (x, y, v)
            columns[k] = i + 2
    return Landmarks(points, tuple(columns), clothes_type, row)


def parse_fine_row(row: Row, clothes_type: int) -> Landmarks:
    """A row of ``Anno_fine/<split>_landmarks.txt``: 8 ``x y`` pairs, the landmarks of
    ``clothes_type`` (1-based, from the row's category) in file order, then zero padding."""
    n_values = 2 * NUM_LANDMARKS
    expect_num_fields(row, n_values, f"{NUM_LANDMARKS} landmark points x y, zero-padded")
    order = slots(clothes_type)
    points = absent()
    columns = [0] * NUM_LANDMARKS
    for j, k in enumerate(order):
        name = HEAD.keypoints[k]
        x = parse_number(row, 2 * j, f"{name} x (column {2 * j + 1})", "a number (pixels)")
        y = parse_number(row, 2 * j + 1, f"{name} y (column {2 * j + 2})", "a number (pixels)")
        if (x, y) != (0.0, 0.0):
            points[k] = (x, y, 1.0)
            columns[k] = 2 * j + 1
    for i in range(2 * len(order), n_values):
        if parse_number(row, i, f"padding (column {i + 1})", "a number (pixels)") != 0.0:
            raise row.error(
                f"padding (column {i + 1})",
                row.fields[i],
                f"0: {type_name(clothes_type)} garments (the row's category) have "
                f"{len(order)} landmarks, so columns {2 * len(order) + 1}-{n_values} are "
                "zero padding",
                reason="wrong_landmark_count",
            )
    return Landmarks(points, tuple(columns), clothes_type, row)


def example_value(
    landmarks: Landmarks | None,
    info: ImageInfo,
    policy: RowPolicy,
    report: SkipReport,
    *,
    where: str,
    missing: str,
    category_type: int | None = None,
) -> dict[str, np.ndarray] | None:
    """The ``keypoints`` and ``keypoint_categories`` values of one example whose other features
    were admitted (the landmark row's clothes type; -1 without a row), counted in ``report``;
    None when the row was skipped.

    A visible or occluded landmark outside the image (``0 <= x <= width``, ``0 <= y <= height``)
    is a bad row: it raises, or (``skip_bad_rows``) skips the row. Without landmarks the row is
    counted under ``landmarks_absent`` (``where``: the row, ``missing``: why); with them under
    ``landmarks``, and also under ``landmark_type_mismatch`` when ``category_type`` (1-based)
    differs from the landmark row's clothes type (the landmarks are kept as their row places
    them).
    """
    if landmarks is None:
        report.count(WITHOUT_LANDMARKS, where, missing)
        return {FEATURE: {HEAD.name: absent()}, CATEGORY_FEATURE: {HEAD.name: -1}}
    width, height = info.width, info.height
    for k in np.flatnonzero(landmarks.points[:, 2] != ABSENT):
        x, y = (float(v) for v in landmarks.points[k, :2])
        if not (0.0 <= x <= width and 0.0 <= y <= height):
            c = landmarks.columns[k]
            fields = landmarks.row.fields
            error = landmarks.row.error(
                f"{HEAD.keypoints[k]} x y (columns {c}-{c + 1})",
                f"{fields[c - 1]} {fields[c]}",
                f"a point inside the {width}x{height} image (0 <= x <= {width}, "
                f"0 <= y <= {height}), or visibility 2 (truncated)",
                reason=OUTSIDE_IMAGE,
            )
            policy.bad_row(error, report)
            return None
    report.count(WITH_LANDMARKS)
    if category_type is not None and category_type != landmarks.clothes_type:
        report.count(
            TYPE_MISMATCH,
            landmarks.where,
            f"clothes_type {landmarks.clothes_type} ({type_name(landmarks.clothes_type)}) but "
            f"the image's category is {type_name(category_type)}; landmarks kept as listed",
        )
    return {
        FEATURE: {HEAD.name: landmarks.points},
        CATEGORY_FEATURE: {HEAD.name: landmarks.clothes_type - 1},
    }
