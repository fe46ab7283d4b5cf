"""Keypoint figures (numpy and matplotlib only, no TensorFlow): the images a keypoint model gets
most wrong, ground truth and prediction drawn over the photo with the head's skeleton.

- :func:`per_image_errors`: each image's FashionAI NE in percent (NaN where it cannot be
  scored), the ``errors`` that :func:`plot_worst_cases` ranks.
- :func:`plot_worst_cases`: a grid PNG of the ``k`` images with the highest error.

Figures are drawn on a bare ``matplotlib.figure.Figure`` with the Agg canvas (no pyplot state)
and written atomically, as in :mod:`fashion_keras.evaluation.curves`; this module does not
import Keras, so scoring scripts stay light.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from fashion_keras.evaluation.keypoint_scoring import (
    _checked_inputs,
    _normaliser_pairs,
    _normalisers,
    _require_finite,
)
from fashion_keras.heads import KeypointHead

#: Panels per row of :func:`plot_worst_cases` (fewer when fewer images are drawn).
WORST_CASES_COLUMNS = 4
#: Size of one panel in pixels (width, height) and of the band above the grid (title, legend).
WORST_CASES_PANEL_PX = (320, 340)
WORST_CASES_TOP_PX = 90
_DPI = 100
_TRUTH_COLOUR = "#1a9850"  # green
_PRED_COLOUR = "#d73027"  # red


def per_image_errors(
    pred: Any,
    true: Any,
    visibility: Any,
    categories: Sequence[str],
    head: KeypointHead,
) -> np.ndarray:
    """Each image's FashionAI NE in percent: the mean ``d / s`` over its visible points, as in
    :func:`~fashion_keras.evaluation.keypoint_scoring.normalized_error` restricted to the image.

    Returns ``[N]`` float; NaN for an image that cannot be scored (its normaliser is absent or
    zero, or it has no visible point). Arguments and errors as for ``normalized_error``.
    """
    pairs = _normaliser_pairs(head)
    pred, true, vis, ids, cat = _checked_inputs(pred, true, visibility, categories, head, None)
    s, skip, _ = _normalisers(true, vis, cat, ids, pairs, head)
    counted = (vis == 1) & ~skip[:, None]
    _require_finite(
        pred,
        counted,
        "pred",
        lambda i, j: f"image {i}, keypoint {head.keypoints[j]!r} (ground-truth visible)",
    )
    with np.errstate(invalid="ignore"):
        diff = np.where(counted[..., None], pred - true, 0.0)
    d = np.linalg.norm(diff, axis=-1)
    ratio = d / np.where(skip, 1.0, s)[:, None]
    count = counted.sum(axis=1)
    total = np.where(counted, ratio, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count * 100.0, np.nan)


def plot_worst_cases(
    path: str | os.PathLike,
    images: Sequence[np.ndarray],
    truth: Any,
    predicted: Any,
    errors: Any,
    categories: Sequence[str],
    head: KeypointHead,
    k: int = 8,
) -> list[int]:
    """Draws the ``k`` images with the highest error as a grid PNG at ``path``.

    Each panel shows the photo, the ground truth in green (points present in the annotation,
    occluded ones hollow) and the prediction in red (the keypoints the image's category
    defines), each joined by the ``head.skeleton`` edges whose two points are drawn; its title
    gives the image index, the category and the NE in percent. Panels are
    :data:`WORST_CASES_PANEL_PX` pixels, :data:`WORST_CASES_COLUMNS` to a row.

    Args:
      path: the PNG to write (its folder is created if needed).
      images: ``N`` uint8 ``H x W x 3`` original photos (sizes may differ); only the drawn
        ones are read, so a lazy sequence works.
      truth: ``[N, K, 3]`` ground truth ``(x, y, v)`` in the photos' pixels; ``v``: 1 visible,
        0 occluded, -1 absent.
      predicted: ``[N, K, 2]`` predicted ``(x, y)`` in the same pixels.
      errors: ``[N]`` per-image NE in percent (:func:`per_image_errors`); NaN for an image that
        could not be scored, never drawn.
      categories: ``N`` category names of ``head``.
      head: the keypoint head (keypoint order, categories, skeleton).
      k: how many images to draw (all scored ones when fewer).

    Returns:
      The indices of the drawn images, worst first. With no scored image the PNG says so.

    Raises:
      ValueError: bad shapes, lengths, categories, ``k`` or images.
    """
    truth_arr, pred_arr, err, cats = _checked_inputs_to_plot(
        images, truth, predicted, errors, categories, head, k
    )
    scored = np.flatnonzero(~np.isnan(err))
    # highest error first; ties keep the image order (a stable sort on the negated error)
    order = scored[np.argsort(-err[scored], kind="stable")][:k].tolist()

    fig, grid, cols, height = _grid_figure(max(len(order), 1))
    edges = head.skeleton_indices()
    for slot, i in enumerate(order):
        ax = fig.add_subplot(grid[slot // cols, slot % cols])
        image = _checked_image(images[i], i)
        _draw_panel(ax, image, truth_arr[i], pred_arr[i], head.defined_mask(cats[i]), edges)
        ax.set_title(f"#{i} {cats[i]}  NE {err[i]:.2f}%", fontsize=9)
    if not order:
        ax = fig.add_subplot(grid[0, 0])
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no image could be scored", ha="center", va="center", fontsize=10)
    title = f"worst {len(order)} of {len(scored)} scored images by NE ({head.name})"
    _add_legend_and_title(fig, height, title)
    _save_png(fig, os.fspath(path))
    return order


def _checked_inputs_to_plot(
    images: Sequence[np.ndarray],
    truth: Any,
    predicted: Any,
    errors: Any,
    categories: Sequence[str],
    head: KeypointHead,
    k: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """The arguments of :func:`plot_worst_cases` checked: ``(truth, predicted, errors,
    categories)`` as float64 arrays and a list; a ``ValueError`` for a bad one."""
    truth_arr = np.asarray(truth, dtype=np.float64)
    pred_arr = np.asarray(predicted, dtype=np.float64)
    err = np.asarray(errors, dtype=np.float64)
    n, nk = len(images), head.num_keypoints
    if truth_arr.shape != (n, nk, 3):
        raise ValueError(
            f"truth must have shape ({n}, {nk}, 3) of (x, y, v) for the {n} images, "
            f"got shape {truth_arr.shape}"
        )
    if pred_arr.shape != (n, nk, 2):
        raise ValueError(
            f"predicted must have shape ({n}, {nk}, 2) of (x, y), got shape {pred_arr.shape}"
        )
    if err.shape != (n,):
        raise ValueError(f"errors must have shape ({n},) (one NE per image), got {err.shape}")
    cats = list(categories)
    if len(cats) != n:
        raise ValueError(f"categories has {len(cats)} entries; expected {n} (one per image)")
    unknown = sorted({str(c) for c in cats if c not in head.category_names})
    if unknown:
        raise ValueError(
            f"categories has unknown value(s) {unknown[:10]!r}; expected categories of keypoint "
            f"head {head.name!r}: {list(head.category_names)!r}"
        )
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k = {k!r}: expected a positive number of images to draw")
    return truth_arr, pred_arr, err, cats


def _grid_figure(count: int) -> tuple[Figure, Any, int, int]:
    """A figure for ``count`` panels: ``(figure, gridspec, columns, height in pixels)``, the
    panels :data:`WORST_CASES_PANEL_PX` each below a :data:`WORST_CASES_TOP_PX` band."""
    cols = min(count, WORST_CASES_COLUMNS)
    rows = math.ceil(count / cols)
    pw, ph = WORST_CASES_PANEL_PX
    width, height = cols * pw, rows * ph + WORST_CASES_TOP_PX
    fig = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI)
    grid = fig.add_gridspec(
        rows,
        cols,
        left=0.01,
        right=0.99,
        bottom=0.01,
        top=1 - WORST_CASES_TOP_PX / height,
        wspace=0.05,
        hspace=0.15,
    )
    return fig, grid, cols, height


def _add_legend_and_title(fig: Figure, height: int, title: str) -> None:
    """The ground truth / prediction legend and ``title`` in the band above the panels."""
    handles = [
        Line2D([], [], color=_TRUTH_COLOUR, marker="o", label="ground truth"),
        Line2D([], [], color=_PRED_COLOUR, marker="o", label="prediction"),
    ]
    fig.legend(
        handles=handles,
        loc="upper center",
        ncol=2,
        fontsize=8,
        frameon=False,
        bbox_to_anchor=(0.5, 1 - 26 / height),
    )
    fig.suptitle(title, y=1 - 6 / height, va="top", fontsize=10)


def _checked_image(image: Any, index: int) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3 or 0 in arr.shape:
        raise ValueError(
            f"images[{index}] must be a uint8 H x W x 3 photo, got dtype {arr.dtype} and "
            f"shape {arr.shape}"
        )
    return arr


def _draw_panel(
    ax: Any,
    image: np.ndarray,
    truth: np.ndarray,
    pred: np.ndarray,
    defined: Sequence[bool],
    edges: Sequence[tuple[int, int]],
) -> None:
    """One photo with its ground truth (green) and prediction (red) skeletons."""
    h, w = image.shape[:2]
    ax.imshow(image, interpolation="bilinear")
    defined_arr = np.asarray(defined, dtype=bool)
    present = (truth[:, 2] != -1) & np.isfinite(truth[:, :2]).all(axis=1)
    predicted = defined_arr & np.isfinite(pred).all(axis=1)
    for points, shown, colour in (
        (truth[:, :2], present, _TRUTH_COLOUR),
        (pred, predicted, _PRED_COLOUR),
    ):
        for a, b in edges:
            if shown[a] and shown[b]:
                ax.plot(
                    points[[a, b], 0], points[[a, b], 1], color=colour, linewidth=1.2, alpha=0.9
                )
    occluded = present & (truth[:, 2] == 0)
    visible = present & ~occluded
    ax.scatter(truth[visible, 0], truth[visible, 1], s=12, color=_TRUTH_COLOUR, zorder=3)
    ax.scatter(
        truth[occluded, 0],
        truth[occluded, 1],
        s=12,
        facecolors="none",
        edgecolors=_TRUTH_COLOUR,
        zorder=3,
    )
    ax.scatter(pred[predicted, 0], pred[predicted, 1], s=12, color=_PRED_COLOUR, zorder=4)
    # the photo's frame, whatever lies outside it
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_axis_off()


def _save_png(fig: Figure, path: str) -> None:
    """Writes ``fig`` at ``path`` atomically (as ``curves.save_png``, without importing Keras)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    FigureCanvasAgg(fig)
    tmp = f"{path}.tmp-{os.getpid()}.png"
    try:
        fig.savefig(tmp, format="png", dpi=_DPI)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
