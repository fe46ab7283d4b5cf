"""FashionAI 2018 keypoints submission files (``formats.md`` §3): write one from predicted
points, and read one back to check it before uploading.

A submission is a CSV with the header ``image_id,image_category,<the 24 keypoint names in the
head's order>`` (26 columns) and one row per row of the test list, in the test list's order.
Each keypoint cell is ``x_y_v``: the point rounded to integer pixels of the original image and
``v = 1``; keypoints the row's category does not define are ``-1_-1_-1``.

:func:`write_submission` rejects bad arguments with a ``ValueError`` naming the argument and the
value; :func:`read_submission` raises an
:class:`~fashion_keras_datasets.common.errors.AnnotationError` reading
``file:line: field = 'value': expected ...`` for the first problem it finds.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from fashion_keras.heads import FASHIONAI_KEYPOINTS, KeypointHead
from fashion_keras_datasets.common.errors import AnnotationError
from fashion_keras_datasets.common.rows import check_header

ID_COLUMNS = ("image_id", "image_category")
ABSENT_CELL = "-1_-1_-1"
CELL_EXPECTED = (
    "x_y_v: pixel x and y, then v (1 visible, 0 occluded, -1 absent), e.g. '120_88_1'; "
    "a keypoint the category does not define is '-1_-1_-1'"
)
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_CELL_RE = re.compile(rf"^({_NUMBER})_({_NUMBER})_([-+]?\d+)$")


def submission_header(head: KeypointHead = FASHIONAI_KEYPOINTS) -> tuple[str, ...]:
    """The submission's column names: ``image_id``, ``image_category``, the head's keypoints."""
    return (*ID_COLUMNS, *head.keypoints)


@dataclasses.dataclass(frozen=True, eq=False)
class Submission:
    """A parsed submission: per row the image id and category, the points ``[N, K, 2]`` (NaN
    where the cell is ``-1_-1_-1``) and the visibility ``[N, K]`` (1, 0 or -1)."""

    image_ids: tuple[str, ...]
    categories: tuple[str, ...]
    keypoints: np.ndarray
    visibility: np.ndarray

    def __len__(self) -> int:
        return len(self.image_ids)


def _round_half_up(x: np.ndarray) -> np.ndarray:
    return np.floor(x + 0.5).astype(np.int64)


def write_submission(
    path: str | os.PathLike,
    image_ids: Sequence[str],
    categories: Sequence[str],
    keypoints: Any,
    head: KeypointHead = FASHIONAI_KEYPOINTS,
) -> str:
    """Writes a FashionAI keypoints submission CSV at ``path`` (atomically) and returns the path.

    Args:
      path: the CSV to write; its folder is created if needed.
      image_ids: the test list's ``image_id`` column, in its order (the rows keep this order).
      categories: the test list's ``image_category`` column (categories of ``head``).
      keypoints: ``[N, K, 2]`` predicted ``(x, y)`` in original-image pixels, head order; each
        point is rounded to the nearest integer pixel (halves up). Points the row's category
        does not define are written ``-1_-1_-1`` whatever their value (NaN included).
      head: the keypoint head that fixes the columns and the categories.

    Raises:
      ValueError: a shape or length mismatch, an empty, duplicate or comma-holding image id, an
        unknown category, or a non-finite coordinate on a defined keypoint.
    """
    points = _checked_points(keypoints, head)
    n, k = points.shape[0], head.num_keypoints
    ids = list(image_ids)
    cats = list(categories)
    _check_ids(ids, cats, n)
    defined = _defined_points(points, ids, cats, head)
    pixels = _round_half_up(np.where(defined[..., None], points, 0.0))
    rows = (
        [
            ids[i],
            cats[i],
            *(
                f"{pixels[i, j, 0]}_{pixels[i, j, 1]}_1" if defined[i, j] else ABSENT_CELL
                for j in range(k)
            ),
        ]
        for i in range(n)
    )
    return _write_csv_atomically(os.fspath(path), submission_header(head), rows)


def _checked_points(keypoints: Any, head: KeypointHead) -> np.ndarray:
    """``keypoints`` as float64 ``[N, K, 2]``; a ``ValueError`` for another shape."""
    points = np.asarray(keypoints, dtype=np.float64)
    k = head.num_keypoints
    if points.ndim != 3 or points.shape[1:] != (k, 2):
        raise ValueError(
            f"keypoints must have shape (N, {k}, 2) of (x, y) pixels in the order of keypoint "
            f"head {head.name!r}, got shape {points.shape}"
        )
    return points


def _check_ids(ids: Sequence[Any], cats: Sequence[Any], n: int) -> None:
    """One image id and one category per row; each id a non-empty, comma-free path, once."""
    for name, values in (("image_ids", ids), ("categories", cats)):
        if len(values) != n:
            raise ValueError(
                f"{name} has {len(values)} entries but keypoints has {n} rows; expected one "
                "entry per test-list row"
            )
    seen: dict[str, int] = {}
    for i, image_id in enumerate(ids):
        if not isinstance(image_id, str) or not image_id or any(c in image_id for c in ",\r\n"):
            raise ValueError(
                f"image_ids[{i}] = {image_id!r}: expected a non-empty image path without commas "
                "or line breaks (the test list's image_id)"
            )
        if image_id in seen:
            raise ValueError(
                f"image_ids[{i}] = {image_id!r}: expected each image once; also image_ids"
                f"[{seen[image_id]}]"
            )
        seen[image_id] = i


def _defined_points(
    points: np.ndarray, ids: Sequence[str], cats: Sequence[Any], head: KeypointHead
) -> np.ndarray:
    """The ``[N, K]`` keypoints each row's category defines; a ``ValueError`` for an unknown
    category or a non-finite coordinate on a defined keypoint."""
    masks: dict[str, np.ndarray] = {}
    for i, category in enumerate(cats):
        if category not in head.category_names:
            raise ValueError(
                f"categories[{i}] = {category!r}: expected one of {list(head.category_names)!r} "
                f"(image {ids[i]!r})"
            )
        masks.setdefault(category, np.asarray(head.defined_mask(category), dtype=bool))
    n, k = points.shape[0], head.num_keypoints
    defined = np.stack([masks[c] for c in cats]) if n else np.zeros((0, k), dtype=bool)
    bad = defined[..., None] & ~np.isfinite(points)
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0][:2])
        raise ValueError(
            f"keypoints[{i}, {j}] ({head.keypoints[j]!r} of image {ids[i]!r}, {cats[i]}) = "
            f"{points[i, j].tolist()}: expected finite pixel coordinates for every keypoint "
            "the category defines"
        )
    return defined


def _write_csv_atomically(path: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Writes ``header`` and ``rows`` as a CSV at ``path`` via a temporary file; returns ``path``."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def read_submission(
    path: str | os.PathLike,
    head: KeypointHead = FASHIONAI_KEYPOINTS,
    image_ids: Sequence[str] | None = None,
    check_defined: bool = True,
) -> Submission:
    """Reads and checks a submission CSV (see the module docstring).

    Checks the header (the head's 26 columns in order), every row's column count, image id
    (non-empty, each once), category (one of the head's) and ``x_y_v`` cells. With
    ``check_defined`` (the default) a row must give a point for every keypoint its category
    defines and ``-1_-1_-1`` for the others, as :func:`write_submission` writes them. With
    ``image_ids`` (the test list's ids) the rows must be exactly those, in that order.

    Raises:
      AnnotationError: ``file:line: field = 'value': expected ...`` for the first problem.
      OSError: the file cannot be read.
    """
    path = os.fspath(path)
    header = submission_header(head)
    what = f"{','.join(ID_COLUMNS)} then the {head.num_keypoints} keypoints of head {head.name!r}"
    ids: list[str] = []
    cats: list[str] = []
    points: list[np.ndarray] = []
    vis: list[np.ndarray] = []
    first_line: dict[str, int] = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        got_header = next(reader, None)
        if got_header is None:
            raise AnnotationError(path, 1, "header", "", f"{','.join(header)} (the file is empty)")
        if got_header and got_header[0].startswith("\ufeff"):
            got_header[0] = got_header[0][1:]
        check_header(path, got_header, header, what)
        for fields in reader:
            line = reader.line_num
            if not fields or fields == [""]:
                continue  # a blank line (e.g. a trailing one)
            image_id, category, xy, v = _parse_row(path, line, fields, head, check_defined)
            _check_row_id(path, line, image_id, first_line, image_ids, len(ids))
            first_line[image_id] = line
            ids.append(image_id)
            cats.append(category)
            points.append(xy)
            vis.append(v)
    if image_ids is not None and len(ids) != len(image_ids):
        raise AnnotationError(
            path,
            None,
            "rows",
            len(ids),
            f"{len(image_ids)} (one per test-list row); missing from {image_ids[len(ids)]!r} on",
            reason="test_list_order",
        )
    k = head.num_keypoints
    return Submission(
        tuple(ids),
        tuple(cats),
        np.stack(points) if points else np.zeros((0, k, 2)),
        np.stack(vis) if vis else np.zeros((0, k), dtype=np.int64),
    )


def _check_row_id(
    path: str,
    line: int,
    image_id: str,
    first_line: dict[str, int],
    image_ids: Sequence[str] | None,
    row: int,
) -> None:
    """The image id of the ``row``-th row (0-based, on ``line``): not seen before (``first_line``:
    the line of each id so far) and, with ``image_ids``, the test list's id of that row."""
    if image_id in first_line:
        raise AnnotationError(
            path,
            line,
            "image_id",
            image_id,
            "each image once",
            note=f"also on line {first_line[image_id]}",
            reason="duplicate_image",
        )
    if image_ids is not None:
        want = image_ids[row] if row < len(image_ids) else None
        if image_id != want:
            expected = (
                f"{want!r} (row {row + 1} of the test list; rows keep its order)"
                if want is not None
                else f"no more rows (the test list has {len(image_ids)})"
            )
            raise AnnotationError(
                path, line, "image_id", image_id, expected, reason="test_list_order"
            )


def _parse_row(
    path: str, line: int, fields: Sequence[str], head: KeypointHead, check_defined: bool
) -> tuple[str, str, np.ndarray, np.ndarray]:
    """One row as ``(image_id, category, [K, 2] points, [K] visibility)``."""
    k = head.num_keypoints
    if len(fields) != len(ID_COLUMNS) + k:
        raise AnnotationError(
            path,
            line,
            "number of columns",
            len(fields),
            f"{len(ID_COLUMNS) + k} comma-separated columns (image_id,image_category,"
            f"<{k} x_y_v cells>)",
            reason="wrong_column_count",
        )
    image_id, category = fields[0], fields[1]
    if not image_id.strip():
        raise AnnotationError(
            path, line, "image_id", image_id, "the test list's image path", reason="empty_id"
        )
    if category not in head.category_names:
        raise AnnotationError(
            path,
            line,
            "image_category",
            category,
            f"one of {list(head.category_names)}",
            reason="unknown_category",
        )
    defined = head.defined_mask(category)
    xy = np.full((k, 2), math.nan)
    vis = np.full((k,), -1, dtype=np.int64)
    for j, name in enumerate(head.keypoints):
        column = len(ID_COLUMNS) + j
        field = f"{name} (column {column + 1})"
        token = fields[column]
        match = _CELL_RE.match(token)
        if match is None:
            raise AnnotationError(path, line, field, token, CELL_EXPECTED, reason="bad_cell")
        x, y, v = float(match[1]), float(match[2]), int(match[3])
        if v not in (-1, 0, 1):
            raise AnnotationError(
                path,
                line,
                field,
                token,
                "a visibility v (the last part of x_y_v) of 1 (visible), 0 (occluded) or "
                "-1 (absent)",
                reason="bad_visibility",
            )
        if v == -1 and (x, y) != (-1, -1):
            raise AnnotationError(
                path,
                line,
                field,
                token,
                "'-1_-1_-1' for an absent keypoint (v = -1), or v = 1 / 0 for a point",
                reason="bad_cell",
            )
        if check_defined and (v != -1) != defined[j]:
            expected = (
                f"a predicted point x_y_1: category {category!r} defines {name!r}"
                if defined[j]
                else f"'-1_-1_-1': category {category!r} does not define {name!r}"
            )
            raise AnnotationError(path, line, field, token, expected, reason="defined_mismatch")
        if v != -1:
            xy[j] = (x, y)
        vis[j] = v
    return image_id, category, xy, vis
