"""Keypoint scores (numpy only, no TensorFlow): the official FashionAI NE and the mean-position
baseline a keypoint model must beat (DeepFashion landmark scores: :mod:`.landmark_scoring`).

- :func:`normalized_error`: FashionAI 2018 keypoints NE (``formats.md`` §3). Per image the
  normaliser ``s`` is the ground-truth distance of the category's normalising pair (armpits for
  blouse, outwear and dress; waistband for trousers and skirt). Every ground-truth *visible*
  point (``v == 1``) of an image with a valid normaliser contributes ``d / s`` (``d``: pixel
  distance of prediction to truth); NE = sum of ``d / s`` / number of such points, in percent.
  Occluded (``v == 0``) and absent (``v == -1``) points do not count. Per category and per
  keypoint: the same ratio over their points. Images whose normaliser cannot be measured (a
  pair point absent, or both at the same position) are excluded from every mean and listed in
  :attr:`KeypointScore.skipped` with their ids and reason, never silently dropped.
  Predictions for keypoints the image's category does not define are ignored (any value, NaN
  included); a ground-truth ``v != -1`` on such a keypoint is a data error and raises.
- :func:`mean_position_baseline`: each keypoint's mean training position per category.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fashion_keras.heads import KeypointHead

SKIP_NORMALISER_ABSENT = "normaliser_absent"  # a normalising point has v == -1 (not annotated)
SKIP_NORMALISER_ZERO = "normaliser_zero"  # both normalising points at the same position


# --- validation helpers ------------------------------------------------------------------------


def _as_points(points: Any, name: str, num_keypoints: int | None = None) -> np.ndarray:
    arr = np.asarray(points, dtype=np.float64)
    if (
        arr.ndim != 3
        or arr.shape[2] != 2
        or (num_keypoints is not None and arr.shape[1] != num_keypoints)
    ):
        k = "K" if num_keypoints is None else str(num_keypoints)
        raise ValueError(f"{name} must have shape (N, {k}, 2) of (x, y), got shape {arr.shape}")
    return arr


def _check_same_shape(arr: np.ndarray, name: str, shape: tuple[int, ...]) -> None:
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got shape {arr.shape}")


def _as_mask(mask: Any, name: str, shape: tuple[int, ...], hint: str) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.dtype != np.bool_:
        raise ValueError(f"{name} must be a boolean mask, got dtype {arr.dtype}; {hint}")
    _check_same_shape(arr, name, shape)
    return arr


def _first_bad(bad: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(bad)[0])


def _require_finite(
    points: np.ndarray, counted: np.ndarray, name: str, where: Callable[[int, int], str]
) -> None:
    """Raises naming the first counted point (``counted``: ``[N, K]``) of ``points`` with a
    non-finite coordinate; ``where(image, keypoint)`` says which one."""
    bad = counted[..., None] & ~np.isfinite(points)
    if bad.any():
        i, j, _ = _first_bad(bad)
        raise ValueError(
            f"{name} has a non-finite coordinate at {where(i, j)}: {points[i, j].tolist()}"
        )


def _category_indices(categories: Any, n: int, head: KeypointHead) -> np.ndarray:
    cats = list(categories)
    if len(cats) != n:
        raise ValueError(f"categories must have {n} entries (one per image), got {len(cats)}")
    lookup = {c: i for i, c in enumerate(head.category_names)}
    unknown = sorted({str(c) for c in cats if c not in lookup})
    if unknown:
        raise ValueError(
            f"categories has unknown value(s) {unknown[:10]!r}; expected categories of keypoint "
            f"head {head.name!r}: {list(head.category_names)!r}"
        )
    return np.asarray([lookup[c] for c in cats], dtype=np.int64).reshape(n)


def _defined_matrix(head: KeypointHead) -> np.ndarray:
    """``[C, K]`` bool: category ``c`` defines keypoint ``k``."""
    return np.asarray([head.defined_mask(c) for c in head.category_names], dtype=bool).reshape(
        len(head.categories), head.num_keypoints
    )


# --- FashionAI normalised error ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class NormalizedErrorPart:
    """NE of a subset (a category or a keypoint): ``percent`` (NaN when ``points == 0``), the
    number of counted points and, for a category, of scored and of skipped images."""

    percent: float
    points: int
    images: int | None = None
    skipped_images: int | None = None


@dataclasses.dataclass(frozen=True)
class SkippedImage:
    """An image left out of the NE because its normaliser cannot be measured."""

    image_id: str
    category: str
    reason: str  # SKIP_NORMALISER_ABSENT or SKIP_NORMALISER_ZERO


@dataclasses.dataclass(frozen=True)
class KeypointScore:
    """The FashionAI NE: overall, per category (categories present, head order) and per keypoint
    (head order), in percent; plus the counts and the images left out."""

    percent: float
    points: int
    images: int
    per_category: dict[str, NormalizedErrorPart]
    per_keypoint: dict[str, NormalizedErrorPart]
    skipped: tuple[SkippedImage, ...]

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (NaN becomes ``None``)."""

        def num(x: float) -> float | None:
            return None if math.isnan(x) else x

        return {
            "ne_percent": num(self.percent),
            "points": self.points,
            "images": self.images,
            "skipped_images": self.num_skipped,
            "per_category": {
                k: {**dataclasses.asdict(v), "percent": num(v.percent)}
                for k, v in self.per_category.items()
            },
            "per_keypoint": {
                k: {"percent": num(v.percent), "points": v.points}
                for k, v in self.per_keypoint.items()
            },
            "skipped": [dataclasses.asdict(s) for s in self.skipped],
        }

    def format(self, baseline: KeypointScore | None = None) -> str:
        """A plain-text report; with ``baseline`` (e.g. the mean-position baseline's score) a
        second column shows its NE."""

        def pct(x: float) -> str:
            return "   n/a" if math.isnan(x) else f"{x:6.2f}"

        head = "NE %    " + ("baseline " if baseline is not None else "") + "points"

        def row(label: str, part: NormalizedErrorPart, base: NormalizedErrorPart | None) -> str:
            b = "" if baseline is None else (pct(base.percent) if base else "   n/a") + "   "
            return f"  {label:<20} {pct(part.percent)}  {b}{part.points:>7}"

        overall = NormalizedErrorPart(self.percent, self.points)
        base_overall = (
            None if baseline is None else NormalizedErrorPart(baseline.percent, baseline.points)
        )
        lines = [f"  {'':<20} {head}", row("overall", overall, base_overall)]
        lines.append("per category:")
        for name, part in self.per_category.items():
            base = baseline.per_category.get(name) if baseline is not None else None
            lines.append(row(name, part, base))
        lines.append("per keypoint:")
        for name, part in self.per_keypoint.items():
            if part.points:
                base = baseline.per_keypoint.get(name) if baseline is not None else None
                lines.append(row(name, part, base))
        lines.append(
            f"images scored: {self.images}; skipped (normaliser missing or zero): "
            f"{self.num_skipped}"
        )
        if self.skipped:
            shown = ", ".join(f"{s.image_id} ({s.category}: {s.reason})" for s in self.skipped[:10])
            more = f", ... {self.num_skipped - 10} more" if self.num_skipped > 10 else ""
            lines.append(f"  skipped: {shown}{more}")
        return "\n".join(lines)


def normalized_error(
    pred: Any,
    true: Any,
    visibility: Any,
    categories: Sequence[str],
    head: KeypointHead,
    image_ids: Sequence[Any] | None = None,
) -> KeypointScore:
    """The official FashionAI keypoint NE (see the module docstring).

    Args:
      pred, true: ``[N, K, 2]`` pixel ``(x, y)`` of the head's ``K`` keypoints.
      visibility: ``[N, K]`` ground truth in the file encoding: 1 visible, 0 occluded, -1 absent.
      categories: ``N`` category names of ``head`` (``"blouse"``, ...).
      head: a :class:`KeypointHead` whose categories all have a normaliser pair.
      image_ids: ``N`` ids for :attr:`KeypointScore.skipped` (default: the row indices).

    Raises:
      ValueError: bad shapes or values, a category without normaliser, a non-finite counted
        coordinate, or ground truth present on a keypoint its category does not define.
    """
    pairs = _normaliser_pairs(head)
    pred, true, vis, ids, cat = _checked_inputs(pred, true, visibility, categories, head, image_ids)
    s, skip, skipped = _normalisers(true, vis, cat, ids, pairs, head)
    return _score(pred, true, vis, cat, ids, s, skip, skipped, head)


def _checked_inputs(
    pred: Any,
    true: Any,
    visibility: Any,
    categories: Sequence[str],
    head: KeypointHead,
    image_ids: Sequence[Any] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], np.ndarray]:
    """``normalized_error``'s inputs as arrays, checked; ids as strings, category indices."""
    true = _as_points(true, "true", head.num_keypoints)
    n, k = true.shape[:2]
    pred = _as_points(pred, "pred", k)
    _check_same_shape(pred, "pred", true.shape)
    vis = np.asarray(visibility)
    _check_same_shape(vis, "visibility", (n, k))
    if vis.size and not np.all(np.isin(vis, (-1, 0, 1))):
        bad = sorted(set(np.asarray(vis[~np.isin(vis, (-1, 0, 1))]).tolist()))
        raise ValueError(
            f"visibility must hold 1 (visible), 0 (occluded) or -1 (absent); bad values {bad[:10]}"
        )
    vis = vis.astype(np.int64)
    ids = [str(i) for i in (range(n) if image_ids is None else image_ids)]
    if len(ids) != n:
        raise ValueError(f"image_ids must have {n} entries (one per image), got {len(ids)}")
    cat = _category_indices(categories, n, head)

    defined = _defined_matrix(head)[cat]  # [N, K]
    stray = (vis != -1) & ~defined
    if stray.any():
        i, j = _first_bad(stray)
        raise ValueError(
            f"image {ids[i]} ({head.category_names[cat[i]]}): keypoint {head.keypoints[j]!r} has "
            f"visibility {vis[i, j]} but the category does not define it; expected -1 (absent)"
        )
    _require_finite(
        true, vis != -1, "true", lambda i, j: f"image {ids[i]}, keypoint {head.keypoints[j]!r}"
    )

    return pred, true, vis, ids, cat


def _normaliser_pairs(head: KeypointHead) -> np.ndarray:
    """``[C, 2]`` keypoint indices of each category's normalising pair."""
    norm_pairs = []
    for c in head.category_names:
        pair = head.normaliser_indices(c)
        if pair is None:
            raise ValueError(
                f"keypoint head {head.name!r}: category {c!r} has no normaliser pair, so the "
                "FashionAI NE is undefined; use landmark_error (image-size normalised) instead"
            )
        norm_pairs.append(pair)
    return np.asarray(norm_pairs, dtype=np.int64).reshape(len(norm_pairs), 2)


def _normalisers(
    true: np.ndarray,
    vis: np.ndarray,
    cat: np.ndarray,
    ids: list[str],
    pairs: np.ndarray,
    head: KeypointHead,
) -> tuple[np.ndarray, np.ndarray, tuple[SkippedImage, ...]]:
    """Per image the normalising distance, whether the image is skipped, and the skipped list."""
    present = vis != -1
    n = true.shape[0]
    rows = np.arange(n)
    a, b = pairs[cat, 0], pairs[cat, 1]
    pair_present = present[rows, a] & present[rows, b]
    s = np.linalg.norm(true[rows, a] - true[rows, b], axis=-1)
    skip = ~pair_present | (s == 0)
    skipped = tuple(
        SkippedImage(
            ids[i],
            head.category_names[cat[i]],
            SKIP_NORMALISER_ABSENT if not pair_present[i] else SKIP_NORMALISER_ZERO,
        )
        for i in np.flatnonzero(skip)
    )

    return s, skip, skipped


def _score(
    pred: np.ndarray,
    true: np.ndarray,
    vis: np.ndarray,
    cat: np.ndarray,
    ids: list[str],
    s: np.ndarray,
    skip: np.ndarray,
    skipped: tuple[SkippedImage, ...],
    head: KeypointHead,
) -> KeypointScore:
    """The NE overall, per category and per keypoint over the visible points of kept images."""
    n, k = true.shape[:2]
    counted = (vis == 1) & ~skip[:, None]  # [N, K]
    _require_finite(
        pred,
        counted,
        "pred",
        lambda i, j: f"image {ids[i]}, keypoint {head.keypoints[j]!r} (ground-truth visible)",
    )
    ratio = np.zeros((n, k))
    if counted.any():
        d = np.linalg.norm(pred - true, axis=-1)
        safe_s = np.where(skip, 1.0, s)
        ratio = np.where(counted, d / safe_s[:, None], 0.0)

    def part(
        mask_rows: np.ndarray, mask_cols: np.ndarray | slice = slice(None)
    ) -> tuple[float, int]:
        c = counted[mask_rows][:, mask_cols]
        total = int(c.sum())
        value = float(ratio[mask_rows][:, mask_cols].sum()) / total * 100 if total else math.nan
        return value, total

    everything = np.ones(n, dtype=bool)
    percent, points = part(everything)
    per_category: dict[str, NormalizedErrorPart] = {}
    for ci, name in enumerate(head.category_names):
        rows_c = cat == ci
        if not rows_c.any():
            continue
        value, total = part(rows_c & ~skip)
        per_category[name] = NormalizedErrorPart(
            value, total, int((rows_c & ~skip).sum()), int((rows_c & skip).sum())
        )
    per_keypoint = {
        name: NormalizedErrorPart(*part(everything, np.arange(k) == j))
        for j, name in enumerate(head.keypoints)
    }
    return KeypointScore(percent, points, int((~skip).sum()), per_category, per_keypoint, skipped)


# --- baseline ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class MeanPositionBaseline:
    """Each keypoint's mean training position per category (``means``: ``[C, K, 2]`` in head
    category order; NaN where the category does not define the keypoint)."""

    head: KeypointHead
    means: np.ndarray

    def predict(self, categories: Sequence[str]) -> np.ndarray:
        """``[N, K, 2]`` predictions: the category's mean positions for each image."""
        cats = list(categories)
        cat = _category_indices(cats, len(cats), self.head)
        return self.means[cat].copy()


def mean_position_baseline(
    train_true: Any, present: Any, categories: Sequence[str], head: KeypointHead
) -> MeanPositionBaseline:
    """The baseline a keypoint model must beat: predict, for every image, the mean training
    position of each keypoint in its category.

    Args:
      train_true: ``[N, K, 2]`` training ground truth.
      present: ``[N, K]`` bool, points with a position (FashionAI: ``visibility >= 0``;
        DeepFashion: the landmark slots the clothes type defines).
      categories: ``N`` category names of ``head``.

    A defined keypoint never seen in its category falls back to its mean over all categories
    (NaN if never seen at all).
    """
    true = _as_points(train_true, "train_true", head.num_keypoints)
    n, k = true.shape[:2]
    mask = _as_mask(
        present,
        "present",
        (n, k),
        "pass e.g. visibility >= 0 (FashionAI) to mark the annotated points",
    )
    _require_finite(
        true,
        mask,
        "train_true",
        lambda i, j: f"image {i}, keypoint {head.keypoints[j]!r} (present)",
    )
    cat = _category_indices(categories, n, head)
    weights = mask[..., None].astype(np.float64)
    filled = np.where(mask[..., None], true, 0.0)
    total_sum, total_count = filled.sum(axis=0), weights.sum(axis=0)  # [K, 2], [K, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        overall = total_sum / total_count
    defined = _defined_matrix(head)
    means = np.full((len(head.categories), k, 2), np.nan)
    for ci in range(len(head.categories)):
        rows = cat == ci
        s, c = filled[rows].sum(axis=0), weights[rows].sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            m = np.where(c > 0, s / np.maximum(c, 1), overall)
        means[ci] = np.where(defined[ci][:, None], m, np.nan)
    return MeanPositionBaseline(head, means)
