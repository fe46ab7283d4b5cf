"""Masked keypoint losses for :class:`fashion_keras.models.keypoint_layers.KeypointHeatmapHead`.

Target (both losses): ``y_true`` of shape ``(N, K, 3)``, per keypoint ``(x, y, v)`` with ``x, y``
in input-image pixels (the pixel-index convention of :mod:`fashion_keras.models.keypoint_layers`:
integer ``x`` is the centre of pixel column ``x``) and the visibility ``v``:

- ``v = 1``: visible, position annotated;
- ``v = 0``: occluded, position annotated (estimated by the annotator);
- ``v = -1``: absent: the garment category does not define the keypoint (or it is cut off);
  its ``x, y`` are ignored (any finite value).

Values are rounded to the nearest of -1, 0, 1 (anything <= -0.5 is absent).

- :class:`KeypointHeatmapLoss` on the heatmap logits ``(N, H, W, K)``: per keypoint, the
  cross-entropy between the spatial softmax of its logits and a target map built from the true
  position at the heatmap's stride (a Gaussian of ``sigma`` cells, or with ``sigma=0`` the
  bilinear one-hot: the four cells around the point weighted so that their mean is the point),
  normalised to sum 1; plus ``coord_weight`` times the L1 distance, in heatmap cells, of the
  soft-argmax to the true position. Absent keypoints never count; occluded ones count when
  ``count_occluded`` (default ``True``: FashionAI annotates their positions and the model must
  place them; the FashionAI score ignores them, so ``False`` trains only what is scored).
- :class:`KeypointVisibilityLoss` on the visibility probabilities ``(N, K)``: binary
  cross-entropy; ``target="visible"`` learns ``v = 1`` against ``v = 0`` (absent keypoints do
  not count), ``target="annotated"`` learns ``v != -1`` (the keypoints the garment has; every
  keypoint counts).

Masking and reduction, as the per-head focal losses (:mod:`fashion_keras.training.losses`): the
per-keypoint mask is folded into the sample weight (``(N,)`` per example, e.g. 0 on rows without
keypoint labels, or ``(N, K)``), and the default reduction ``"mean_with_sample_weight"`` then
gives the weighted mean over the *counted keypoints* of the batch: exactly 0, with zero
gradient, when none counts. ``reduction="none"`` returns the ``(N, K)`` per-keypoint losses times
those weights (0 where masked). Keras' distribution scaling is kept (the reduction is Keras').

In ``compile`` the two sit beside the focal losses, each with the same ``(N, K, 3)`` target::

    model.compile(loss={"kp_heatmaps": KeypointHeatmapLoss(stride=4),
                        "kp_visibility": KeypointVisibilityLoss()}, ...)
    model.fit(images, {"kp_heatmaps": keypoints, "kp_visibility": keypoints}, ...)
"""

from __future__ import annotations

from typing import Any, Literal

import keras
from keras import ops

from fashion_keras.models.keypoint_layers import (
    image_to_heatmap,
    soft_argmax,
    spatial_log_softmax,
)

MASKED_REDUCTION = "mean_with_sample_weight"
VISIBILITY_TARGETS = ("visible", "annotated")


def visibility_masks(y_true: Any) -> tuple[Any, Any]:
    """``(visible, occluded)`` float32 masks ``(N, K)`` from the ``v`` of ``(N, K, 3)`` targets."""
    v = ops.round(ops.cast(y_true[..., 2], "float32"))
    visible = ops.cast(v >= 1.0, "float32")
    occluded = ops.cast(ops.equal(v, 0.0), "float32")
    return visible, occluded


def heatmap_coords(y_true: Any, stride: int) -> tuple[Any, Any]:
    """The true ``(x, y)`` of ``(N, K, 3)`` targets in heatmap cells at ``stride`` (``(N, K)``
    each, float32); non-finite coordinates (e.g. NaN on absent keypoints) become 0."""
    xy = ops.cast(y_true[..., :2], "float32")
    xy = image_to_heatmap(ops.where(ops.isfinite(xy), xy, 0.0), stride)
    return xy[..., 0], xy[..., 1]


def target_heatmaps(y_true: Any, height: Any, width: Any, stride: int, sigma: float) -> Any:
    """Target maps ``(N, height, width, K)`` for ``(N, K, 3)`` targets at ``stride``: a Gaussian
    of ``sigma`` heatmap cells (``sigma=0``: bilinear one-hot) at each point, normalised to sum
    1 over the map (all zeros for a point far outside it)."""
    u, w = heatmap_coords(y_true, stride)  # (N, K) each
    xs = ops.cast(ops.arange(width), "float32")[None, :, None]  # (1, W, 1)
    ys = ops.cast(ops.arange(height), "float32")[None, :, None]
    dx = xs - u[:, None, :]  # (N, W, K)
    dy = ys - w[:, None, :]
    if sigma > 0:
        gx = ops.exp(-ops.square(dx) / (2.0 * sigma**2))
        gy = ops.exp(-ops.square(dy) / (2.0 * sigma**2))
    else:
        gx = ops.relu(1.0 - ops.abs(dx))
        gy = ops.relu(1.0 - ops.abs(dy))
    maps = gy[:, :, None, :] * gx[:, None, :, :]  # (N, H, W, K)
    total = ops.sum(maps, axis=(1, 2), keepdims=True)
    return maps / ops.maximum(total, 1e-12)


def _check_number(value: Any, what: str, minimum: float, strict: bool) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float))
    if ok:
        ok = value > minimum if strict else value >= minimum
    if not ok:
        raise ValueError(f"{what} = {value!r} must be a number {'>' if strict else '>='} {minimum}")
    return float(value)


class _MaskedKeypointLoss(keras.losses.Loss):
    """Per-keypoint ``(N, K)`` losses from :meth:`call`; :meth:`keypoint_mask` is folded into the
    sample weight before Keras' reduction."""

    def keypoint_mask(self, y_true: Any) -> Any:
        raise NotImplementedError

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        y_true = ops.convert_to_tensor(y_true, dtype=self.dtype)
        if len(y_true.shape) != 3 or y_true.shape[-1] != 3:
            raise ValueError(
                f"{type(self).__name__} {self.name!r}: y_true shape {tuple(y_true.shape)} must "
                "be (N, K, 3) keypoints (x, y, v) in input pixels, v in {-1, 0, 1}"
            )
        weights = self.keypoint_mask(y_true)  # (N, K)
        if sample_weight is not None:
            sw = ops.cast(ops.convert_to_tensor(sample_weight), weights.dtype)
            if len(sw.shape) == 1:
                sw = sw[:, None]
            if len(sw.shape) != 2:
                raise ValueError(
                    f"{type(self).__name__} {self.name!r}: sample_weight shape "
                    f"{tuple(sw.shape)} must be (N,), (N, 1) or (N, K)"
                )
            weights = weights * sw
        return super().__call__(y_true, y_pred, sample_weight=weights)


@keras.saving.register_keras_serializable(package="fashion_keras")
class KeypointHeatmapLoss(_MaskedKeypointLoss):
    """Masked spatial-softmax cross-entropy of heatmap logits against target maps (see the
    module docstring for the target, the mask and the reduction).

    Args:
      stride: input pixels per heatmap cell (``KeypointHeatmapHead.stride``).
      sigma: the target Gaussian's standard deviation in heatmap cells; 0 for the bilinear
        one-hot target.
      count_occluded: whether occluded keypoints (``v = 0``) count (absent ones, ``v = -1``,
        never do).
      coord_weight: weight of the L1 distance (heatmap cells) of the soft-argmax to the truth.
      reduction, name, dtype: as ``keras.losses.Loss``.
    """

    def __init__(
        self,
        stride: int = 4,
        sigma: float = 2.0,
        count_occluded: bool = True,
        coord_weight: float = 0.0,
        reduction: str | None = MASKED_REDUCTION,
        name: str = "keypoint_heatmap",
        dtype: Any = None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
            raise ValueError(
                f"KeypointHeatmapLoss: stride = {stride!r} must be an int >= 1 (the head's "
                "KeypointHeatmapHead.stride)"
            )
        if not isinstance(count_occluded, bool):
            raise ValueError(
                f"KeypointHeatmapLoss: count_occluded = {count_occluded!r} must be True or False"
            )
        self.stride = stride
        self.sigma = _check_number(sigma, "KeypointHeatmapLoss: sigma", 0.0, strict=False)
        self.count_occluded = count_occluded
        self.coord_weight = _check_number(
            coord_weight, "KeypointHeatmapLoss: coord_weight", 0.0, strict=False
        )

    def keypoint_mask(self, y_true: Any) -> Any:
        visible, occluded = visibility_masks(y_true)
        return visible + occluded if self.count_occluded else visible

    def call(self, y_true: Any, y_pred: Any) -> Any:
        if len(y_pred.shape) != 4:
            raise ValueError(
                f"KeypointHeatmapLoss {self.name!r}: y_pred shape {tuple(y_pred.shape)} must be "
                "(N, H, W, K) heatmap logits"
            )
        shape = ops.shape(y_pred)
        log_probs = spatial_log_softmax(y_pred)
        target = target_heatmaps(y_true, shape[1], shape[2], self.stride, self.sigma)
        loss = -ops.sum(target * log_probs, axis=(1, 2))  # (N, K)
        if self.coord_weight:
            x, y, _ = soft_argmax(y_pred)
            u, w = heatmap_coords(y_true, self.stride)
            loss = loss + self.coord_weight * (ops.abs(x - u) + ops.abs(y - w))
        return loss

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            stride=self.stride,
            sigma=self.sigma,
            count_occluded=self.count_occluded,
            coord_weight=self.coord_weight,
        )
        return config


@keras.saving.register_keras_serializable(package="fashion_keras")
class KeypointVisibilityLoss(_MaskedKeypointLoss):
    """Masked binary cross-entropy of the per-keypoint visibility output (see the module
    docstring).

    Args:
      target: ``"visible"`` (learn ``v = 1`` vs ``v = 0``; absent keypoints do not count) or
        ``"annotated"`` (learn ``v != -1``; every keypoint counts).
      from_logits: whether ``y_pred`` holds logits instead of probabilities.
      reduction, name, dtype: as ``keras.losses.Loss``.
    """

    def __init__(
        self,
        target: Literal["visible", "annotated"] = "visible",
        from_logits: bool = False,
        reduction: str | None = MASKED_REDUCTION,
        name: str = "keypoint_visibility",
        dtype: Any = None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if target not in VISIBILITY_TARGETS:
            raise ValueError(
                f"KeypointVisibilityLoss: target = {target!r}; expected one of "
                f"{list(VISIBILITY_TARGETS)}"
            )
        self.target = target
        self.from_logits = bool(from_logits)

    def _labels(self, y_true: Any) -> tuple[Any, Any]:
        visible, occluded = visibility_masks(y_true)
        if self.target == "visible":
            return visible, visible + occluded
        return visible + occluded, ops.ones_like(visible)

    def keypoint_mask(self, y_true: Any) -> Any:
        return self._labels(y_true)[1]

    def call(self, y_true: Any, y_pred: Any) -> Any:
        labels, _ = self._labels(y_true)
        if len(y_pred.shape) != 2:
            raise ValueError(
                f"KeypointVisibilityLoss {self.name!r}: y_pred shape {tuple(y_pred.shape)} must "
                "be (N, K) visibility probabilities"
            )
        return keras.losses.binary_crossentropy(
            labels[..., None], ops.cast(y_pred, "float32")[..., None], from_logits=self.from_logits
        )

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(target=self.target, from_logits=self.from_logits)
        return config
