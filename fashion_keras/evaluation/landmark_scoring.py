"""DeepFashion landmark scores as mmfashion reports them: the normalised error (distance over the
image width / height) and the share of landmarks detected within N pixels (numpy only).

DeepFashion landmarks (``formats.md`` §5), as mmfashion's
``LandmarkDetectorEvaluator.compute_distance`` defines them: per landmark
``sqrt((dx / w)^2 + (dy / h)^2)`` with ``(w, h)`` the size of the image the coordinates are in,
and a landmark is detected when its pixel distance is ``<= pixels``. Here both are taken over
ground-truth visible landmarks only; ``mmfashion_masking=True`` reproduces mmfashion's
figures, which zero invisible landmarks in both prediction and truth and so count them as
error 0 and detected in a mean over all slots.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fashion_keras.evaluation.keypoint_scoring import (
    _as_mask,
    _as_points,
    _check_same_shape,
    _require_finite,
)

_VISIBLE_HINT = (
    "pass the visible landmarks as a mask, e.g. deepfashion_visible(visibility) for "
    "list_landmarks.txt values (0 = visible)"
)


def deepfashion_visible(visibility: Any) -> np.ndarray:
    """Visible mask of DeepFashion landmark visibility: 0 visible, 1 occluded, 2 truncated, and
    -1 for a slot the clothes type does not define (padding to the head's 8 landmarks)."""
    vis = np.asarray(visibility)
    if vis.size and not np.all(np.isin(vis, (-1, 0, 1, 2))):
        bad = sorted(set(vis[~np.isin(vis, (-1, 0, 1, 2))].tolist()))
        raise ValueError(
            "DeepFashion visibility must hold 0 (visible), 1 (occluded), 2 (truncated) or -1 "
            f"(not defined); bad values {bad[:10]}"
        )
    return vis == 0


def _landmark_inputs(
    pred: Any, true: Any, visible: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    true = _as_points(true, "true")
    pred = _as_points(pred, "pred")
    _check_same_shape(pred, "pred", true.shape)
    vis = _as_mask(visible, "visible", true.shape[:2], _VISIBLE_HINT)
    for arr, name in ((true, "true"), (pred, "pred")):
        _require_finite(arr, vis, name, lambda i, j: f"image {i}, landmark {j} (visible)")
    return pred, true, vis


def _masked_mean(values: np.ndarray, vis: np.ndarray, fill: float, mmfashion: bool) -> float:
    if mmfashion:
        return float(np.where(vis, values, fill).mean()) if vis.size else math.nan
    total = int(vis.sum())
    return float(np.where(vis, values, 0.0).sum()) / total if total else math.nan


def landmark_error(
    pred: Any,
    true: Any,
    visible: Any,
    image_sizes: Any,
    *,
    mmfashion_masking: bool = False,
) -> float:
    """DeepFashion landmark NE (a fraction, as reported: FashionNet 0.0872): the mean over visible
    landmarks of ``sqrt((dx / w)^2 + (dy / h)^2)``; NaN when no landmark is visible.

    Args:
      pred, true: ``[N, K, 2]`` pixel ``(x, y)``.
      visible: ``[N, K]`` bool mask of ground-truth visible landmarks (:func:`deepfashion_visible`).
      image_sizes: ``(width, height)`` of the images the coordinates are in, one pair for all or
        ``[N, 2]``.
      mmfashion_masking: average over all ``N * K`` slots with invisible ones as error 0, as
        mmfashion's evaluator does (its published figures).
    """
    pred, true, vis = _landmark_inputs(pred, true, visible)
    n = true.shape[0]
    sizes = np.asarray(image_sizes, dtype=np.float64)
    if sizes.shape == (2,):
        sizes = np.broadcast_to(sizes, (n, 2))
    if sizes.shape != (n, 2) or not np.all(np.isfinite(sizes)) or np.any(sizes <= 0):
        raise ValueError(
            f"image_sizes must be one (width, height) pair or shape ({n}, 2), all > 0; got "
            f"shape {sizes.shape}"
            + ("" if sizes.shape not in ((2,), (n, 2)) else f" with values {sizes[:3].tolist()}")
        )
    scaled = (pred - true) / sizes[:, None, :]
    err = np.sqrt(np.sum(scaled**2, axis=-1))
    return _masked_mean(err, vis, 0.0, mmfashion_masking)


def detected_within(
    pred: Any,
    true: Any,
    visible: Any,
    pixels: float = 10.0,
    *,
    mmfashion_masking: bool = False,
) -> float:
    """Percent of visible landmarks whose pixel distance to the truth is ``<= pixels`` (NaN when
    none is visible); ``mmfashion_masking``: over all slots, invisible ones counting as detected.
    """
    if isinstance(pixels, bool) or not isinstance(pixels, (int, float)) or not pixels >= 0:
        raise ValueError(f"pixels = {pixels!r} must be a number >= 0 (e.g. 10)")
    pred, true, vis = _landmark_inputs(pred, true, visible)
    hit = (np.linalg.norm(pred - true, axis=-1) <= pixels).astype(np.float64)
    return _masked_mean(hit, vis, 1.0, mmfashion_masking) * 100
