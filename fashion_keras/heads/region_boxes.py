"""Region boxes: the box of a :class:`~fashion_keras.heads.regions.Region` from a photo's keypoints.

Pixel convention: a keypoint's ``x`` (``y``) is the index of its pixel column (row), i.e. the
pixel's centre, as in the annotations and :meth:`KeypointHead.flip_permutation`. Boxes are in
pixel *edges*, half-open: ``(x1, y1, x2, y2)`` covers columns ``x1 <= c < x2``; the tight box of
points at columns 10 and 19 is ``[10, 20)``, 10 pixels wide, and a box clamped to a ``W x H``
image lies in ``[0, W] x [0, H]``.

A box is grown from the present keypoints (``v >= 0``) in this order:

1. the tight box of the points (edges as above);
2. ``extend_up``: that fraction of the box height is added above it (toward the neck);
3. ``margin``: that fraction of the box width (height) is added on the left and right (top and
   bottom);
4. ``square``: the shorter side grows, about the centre, to the longer one;
5. ``min_size``: a side shorter than ``min_size`` times the image's shorter side grows, about
   the centre, to that length;
6. the box is clamped to the image (so a clamped box may no longer be square).

Fewer than two present keypoints give no box (the caller falls back to the garment box).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from fashion_keras.heads.keypoints import KeypointHead
from fashion_keras.heads.names import HeadSpecError
from fashion_keras.heads.regions import Region, get_region

#: A box in pixel edges: ``(x1, y1, x2, y2)``.
Box = tuple[float, float, float, float]


def region_indices(region: Region, head: KeypointHead) -> tuple[int, ...]:
    """The indices of ``region``'s keypoints in ``head``; a :class:`HeadSpecError` when
    ``head`` lacks some of them."""
    missing = [k for k in region.keypoints if k not in head.keypoints]
    if missing:
        raise HeadSpecError(
            f"region {region.name!r}: keypoint(s) {missing!r} are not in keypoint head "
            f"{head.name!r}; expected names from its 'keypoints' {list(head.keypoints)!r}"
        )
    return tuple(head.index(k) for k in region.keypoints)


def _image_size(size: Any, where: str) -> tuple[float, float]:
    arr = np.asarray(size, dtype=np.float64)
    if arr.shape != (2,) or not np.all(np.isfinite(arr)) or not np.all(arr > 0):
        raise ValueError(f"{where} = {size!r} must be (width, height), two numbers > 0")
    return float(arr[0]), float(arr[1])


def region_box(
    region: Region | str,
    keypoints: Any,
    head: KeypointHead,
    image_size: Sequence[float],
) -> Box | None:
    """The box of ``region`` in one photo, in pixel edges (module docstring), or ``None`` when
    fewer than two of its keypoints are present.

    Args:
      region: a :class:`Region` or a preset name.
      keypoints: float ``[K, 3]`` ``(x, y, v)`` in photo pixels, in ``head.keypoints`` order;
        ``v >= 0`` (visible or occluded) is present, ``v = -1`` absent.
      head: the keypoint head the points belong to (it must have the region's keypoints).
      image_size: ``(width, height)`` of the photo; the box is clamped to it.
    """
    region = get_region(region)
    points = np.asarray(keypoints, dtype=np.float64)
    if points.shape != (head.num_keypoints, 3):
        raise ValueError(
            f"keypoints has shape {points.shape}, expected ({head.num_keypoints}, 3): (x, y, v) "
            f"per keypoint of head {head.name!r}"
        )
    width, height = _image_size(image_size, "image_size")
    present = [
        (float(x), float(y))
        for x, y, v in points[list(region_indices(region, head))]
        if v >= 0 and math.isfinite(x) and math.isfinite(y)
    ]
    if len(present) < 2:
        return None
    xs, ys = [p[0] for p in present], [p[1] for p in present]
    x1, x2, y1, y2 = min(xs), max(xs) + 1.0, min(ys), max(ys) + 1.0
    y1 -= region.extend_up * (y2 - y1)
    w, h = x2 - x1, y2 - y1
    x1, x2 = x1 - region.margin * w, x2 + region.margin * w
    y1, y2 = y1 - region.margin * h, y2 + region.margin * h
    if region.square:
        side = max(x2 - x1, y2 - y1)
        x1, x2 = _grow(x1, x2, side)
        y1, y2 = _grow(y1, y2, side)
    least = region.min_size * min(width, height)
    x1, x2 = _grow(x1, x2, least)
    y1, y2 = _grow(y1, y2, least)
    x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
    y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
    if x2 <= x1 or y2 <= y1:
        return None
    return x1, y1, x2, y2


def _grow(a: float, b: float, length: float) -> tuple[float, float]:
    """``[a, b)`` grown about its centre to at least ``length``."""
    if b - a >= length:
        return a, b
    centre = (a + b) / 2
    return centre - length / 2, centre + length / 2


def region_boxes(
    region: Region | str,
    keypoints: Any,
    head: KeypointHead,
    image_sizes: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`region_box` for a batch.

    Args:
      region: a :class:`Region` or a preset name.
      keypoints: float ``[N, K, 3]`` ``(x, y, v)`` in photo pixels, ``head.keypoints`` order.
      head: the keypoint head the points belong to.
      image_sizes: ``[N, 2]`` ``(width, height)`` per photo, or one ``(width, height)`` for all.

    Returns:
      ``(boxes, found)``: float64 ``[N, 4]`` ``(x1, y1, x2, y2)`` in pixel edges (NaN where not
      found) and bool ``[N]``, False where :func:`region_box` gives ``None``.
    """
    region = get_region(region)
    points = np.asarray(keypoints, dtype=np.float64)
    if points.ndim != 3 or points.shape[1:] != (head.num_keypoints, 3):
        raise ValueError(
            f"keypoints has shape {points.shape}, expected (N, {head.num_keypoints}, 3): "
            f"(x, y, v) per keypoint of head {head.name!r}"
        )
    n = points.shape[0]
    sizes = np.asarray(image_sizes, dtype=np.float64)
    if sizes.shape == (2,):
        sizes = np.broadcast_to(sizes, (n, 2))
    if sizes.shape != (n, 2) or not np.all(np.isfinite(sizes)) or not np.all(sizes > 0):
        raise ValueError(
            f"image_sizes has shape {sizes.shape}, expected ({n}, 2) or (2,): (width, height) "
            "per photo, numbers > 0"
        )
    width, height = sizes[:, 0], sizes[:, 1]
    pts = points[:, list(region_indices(region, head)), :]
    x, y, v = pts[..., 0], pts[..., 1], pts[..., 2]
    present = (v >= 0) & np.isfinite(x) & np.isfinite(y)
    found = present.sum(axis=1) >= 2
    x1 = np.where(found, np.where(present, x, np.inf).min(axis=1), 0.0)
    x2 = np.where(found, np.where(present, x, -np.inf).max(axis=1), 0.0) + 1.0
    y1 = np.where(found, np.where(present, y, np.inf).min(axis=1), 0.0)
    y2 = np.where(found, np.where(present, y, -np.inf).max(axis=1), 0.0) + 1.0
    y1 = y1 - region.extend_up * (y2 - y1)
    w, h = x2 - x1, y2 - y1
    x1, x2 = x1 - region.margin * w, x2 + region.margin * w
    y1, y2 = y1 - region.margin * h, y2 + region.margin * h
    if region.square:
        side = np.maximum(x2 - x1, y2 - y1)
        x1, x2 = _grow_all(x1, x2, side)
        y1, y2 = _grow_all(y1, y2, side)
    least = region.min_size * np.minimum(width, height)
    x1, x2 = _grow_all(x1, x2, least)
    y1, y2 = _grow_all(y1, y2, least)
    x1, x2 = np.clip(x1, 0.0, width), np.clip(x2, 0.0, width)
    y1, y2 = np.clip(y1, 0.0, height), np.clip(y2, 0.0, height)
    found &= (x2 > x1) & (y2 > y1)
    boxes = np.stack([x1, y1, x2, y2], axis=1)
    boxes[~found] = np.nan
    return boxes, found


def _grow_all(a: np.ndarray, b: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_grow` per row."""
    short = b - a < length
    centre = (a + b) / 2
    return np.where(short, centre - length / 2, a), np.where(short, centre + length / 2, b)
