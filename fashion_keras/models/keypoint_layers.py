"""Keypoint heatmap layers (backend-agnostic Keras 3): a SimpleBaselines heatmap head with a
visibility output, and the spatial softmax / soft-argmax that reads sub-pixel coordinates off it.

Coordinate convention (used here and by :mod:`fashion_keras.training.keypoint_losses`): ``(x, y)``
are *pixel-index* coordinates of the input image, as the FashionAI / DeepFashion annotations are:
the integer ``x`` is the centre of pixel column ``x``, so an ``H x W`` image spans
``[-0.5, W - 0.5]``. A heatmap at stride ``s`` has one cell per ``s x s`` block of input pixels;
cell ``j`` covers input pixels ``s j ... s j + s - 1`` and its centre is input coordinate
``s j + (s - 1) / 2`` (:func:`heatmap_to_image`; the inverse is :func:`image_to_heatmap`).

The heatmap logits are trained with a softmax over the ``H x W`` cells of each keypoint (a belief
map; per-pixel sigmoids and direct coordinate regression collapsed to constants in the founding
write-up) and read with :func:`soft_argmax`: the expected cell position under that softmax, which
is sub-pixel.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9


def _check_positive_int(value: Any, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{what} = {value!r} must be an int >= {minimum}")
    return value


def _check_positive_float(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{what} = {value!r} must be a number > 0")
    return float(value)


def heatmap_to_image(coords: Any, stride: float) -> Any:
    """Heatmap-cell coordinates -> input-image pixel coordinates: ``s * c + (s - 1) / 2``."""
    return coords * stride + (stride - 1) / 2.0


def image_to_heatmap(coords: Any, stride: float) -> Any:
    """Input-image pixel coordinates -> heatmap-cell coordinates: ``(p - (s - 1) / 2) / s``."""
    return (coords - (stride - 1) / 2.0) / stride


def spatial_log_softmax(logits: Any, beta: float = 1.0) -> Any:
    """``log softmax`` over the ``H x W`` cells of each channel of ``(N, H, W, K)`` logits
    (scaled by ``beta``), computed in float32; same shape as ``logits``."""
    logits = ops.cast(logits, "float32")
    shape = ops.shape(logits)
    flat = ops.reshape(logits * beta, (shape[0], -1, shape[3]))
    return ops.reshape(ops.log_softmax(flat, axis=1), shape)


def soft_argmax(logits: Any, beta: float = 1.0) -> tuple[Any, Any, Any]:
    """Expected ``(x, y)`` cell position (heatmap cells, float32, each ``(N, K)``) under the
    spatial softmax of ``(N, H, W, K)`` logits, and the softmax's maximum probability
    (``(N, K)``, a confidence in ``[1 / (H W), 1]``)."""
    probs = ops.exp(spatial_log_softmax(logits, beta))
    x, y = _expected_cells(probs)
    confidence = ops.max(probs, axis=(1, 2))
    return x, y, confidence


def _expected_cells(probs: Any) -> tuple[Any, Any]:
    shape = ops.shape(probs)
    xs = ops.cast(ops.arange(shape[2]), "float32")
    ys = ops.cast(ops.arange(shape[1]), "float32")
    px = ops.sum(probs, axis=1)  # (N, W, K): marginal over rows
    py = ops.sum(probs, axis=2)  # (N, H, K)
    x = ops.sum(px * xs[None, :, None], axis=1)
    y = ops.sum(py * ys[None, :, None], axis=1)
    return x, y


def expected_position(probs: Any, stride: int) -> Any:
    """``(N, K, 2)`` input-pixel ``(x, y)``: the expectation of ``(N, H, W, K)`` spatial
    probabilities (each channel summing to 1, e.g. an average of two views' softmaxes)."""
    x, y = _expected_cells(ops.cast(probs, "float32"))
    return heatmap_to_image(ops.stack([x, y], axis=-1), stride)


@keras.saving.register_keras_serializable(package="fashion_keras")
class SpatialSoftmaxArgmax(keras.layers.Layer):
    """Heatmap logits ``(N, H, W, K)`` -> keypoints ``(N, K, 3)``: ``(x, y, confidence)``.

    ``x, y`` are the soft-argmax (:func:`soft_argmax`) in input-image pixels (the module's
    pixel-index convention, via ``stride``); ``confidence`` is the maximum probability of the
    keypoint's spatial softmax. Computed in float32.

    Args:
      stride: input pixels per heatmap cell (4 for a 3-deconvolution head on a stride-32
        backbone); must match the head (``KeypointHeatmapHead.stride``).
      beta: inverse temperature applied to the logits before the softmax (1: the distribution
        the loss trains; > 1 sharpens it).
    """

    def __init__(self, stride: int = 4, beta: float = 1.0, **kwargs: Any) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.stride = _check_positive_int(stride, "SpatialSoftmaxArgmax: stride")
        self.beta = _check_positive_float(beta, "SpatialSoftmaxArgmax: beta")

    def build(self, input_shape: Sequence[int | None]) -> None:
        if len(input_shape) != 4:
            raise ValueError(
                f"SpatialSoftmaxArgmax {self.name!r}: input shape {tuple(input_shape)} must be "
                "(N, H, W, K) heatmap logits (channels last)"
            )

    def call(self, inputs: Any) -> Any:
        x, y, confidence = soft_argmax(inputs, self.beta)
        return ops.stack(
            [heatmap_to_image(x, self.stride), heatmap_to_image(y, self.stride), confidence],
            axis=-1,
        )

    def compute_output_shape(self, input_shape: Sequence[int | None]) -> tuple[int | None, ...]:
        return (input_shape[0], input_shape[3], 3)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(stride=self.stride, beta=self.beta)
        return config


@keras.saving.register_keras_serializable(package="fashion_keras")
class KeypointHeatmapHead(keras.layers.Layer):
    """SimpleBaselines keypoint head (Xiao et al., 2018) with a visibility output.

    Input: a backbone feature map ``(N, h, w, C)`` at stride ``input_stride`` (32 for the
    SE-ResNets' last stage). ``num_deconv`` x (``Conv2DTranspose`` ``kernel_size``, stride 2,
    ``filters`` channels, no bias -> BatchNorm -> ReLU), then a 1x1 conv to ``num_keypoints``
    heatmap logits at stride ``input_stride / 2**num_deconv`` (:attr:`stride`; 3 deconvolutions
    on stride 32 give stride 4, 2 give 8). Visibility: global average of the input features ->
    ``Dense(num_keypoints, sigmoid)``, the probability per keypoint that it is visible (or
    annotated; what it learns is the loss's ``target``).

    Returns ``(heatmaps, visibility)``: logits ``(N, h 2**d, w 2**d, K)`` and probabilities
    ``(N, K)``, both float32 (also under mixed precision). Read keypoints off the logits with
    :class:`SpatialSoftmaxArgmax`; train them with
    :class:`fashion_keras.training.keypoint_losses.KeypointHeatmapLoss` and
    :class:`~fashion_keras.training.keypoint_losses.KeypointVisibilityLoss`.

    Args:
      num_keypoints: ``K``, e.g. ``KeypointHead.num_keypoints``.
      filters: channels of each deconvolution (256 in the paper).
      num_deconv: number of stride-2 deconvolutions (>= 0).
      kernel_size: deconvolution kernel (4 in the paper; must be even for an exact 2x).
      input_stride: stride of the input features relative to the image (a power of two
        ``>= 2**num_deconv``).
    """

    def __init__(
        self,
        num_keypoints: int,
        filters: int = 256,
        num_deconv: int = 3,
        kernel_size: int = 4,
        input_stride: int = 32,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        where = "KeypointHeatmapHead"
        self.num_keypoints = _check_positive_int(num_keypoints, f"{where}: num_keypoints")
        self.filters = _check_positive_int(filters, f"{where}: filters")
        self.num_deconv = _check_positive_int(num_deconv, f"{where}: num_deconv", minimum=0)
        self.kernel_size = _check_positive_int(kernel_size, f"{where}: kernel_size", minimum=2)
        if self.kernel_size % 2:
            raise ValueError(
                f"{where}: kernel_size = {kernel_size!r} must be even (a stride-2 "
                "deconvolution with an odd kernel shifts the grid); use 4 (the paper's) or 2"
            )
        self.input_stride = _check_positive_int(input_stride, f"{where}: input_stride")
        if input_stride & (input_stride - 1) or input_stride < 2**num_deconv:
            raise ValueError(
                f"{where}: input_stride = {input_stride!r} must be a power of two >= "
                f"2**num_deconv = {2**num_deconv} (num_deconv = {num_deconv}); lower num_deconv"
            )
        init = keras.initializers.RandomNormal(stddev=0.001)  # the paper's
        self.deconvs = []
        self.bns = []
        for i in range(num_deconv):
            self.deconvs.append(
                keras.layers.Conv2DTranspose(
                    filters,
                    kernel_size,
                    strides=2,
                    padding="same",
                    use_bias=False,
                    kernel_initializer=init,
                    dtype=self.dtype_policy,
                    name=f"deconv{i + 1}",
                )
            )
            self.bns.append(
                keras.layers.BatchNormalization(
                    momentum=BN_MOMENTUM,
                    epsilon=BN_EPSILON,
                    dtype=self.dtype_policy,
                    name=f"deconv{i + 1}_bn",
                )
            )
        self.final = keras.layers.Conv2D(
            num_keypoints, 1, kernel_initializer=init, dtype="float32", name="heatmaps"
        )
        self.visibility = keras.layers.Dense(
            num_keypoints, activation="sigmoid", dtype="float32", name="visibility"
        )

    @property
    def stride(self) -> int:
        """Input-image pixels per heatmap cell: ``input_stride / 2**num_deconv``."""
        return self.input_stride // 2**self.num_deconv

    def build(self, input_shape: Sequence[int | None]) -> None:
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(
                f"KeypointHeatmapHead {self.name!r}: input shape {tuple(input_shape)} must be "
                "(N, h, w, C) backbone features with a known channel count C"
            )
        n, h, w, c = input_shape
        shape: tuple[int | None, ...] = (n, h, w, c)
        for deconv, bn in zip(self.deconvs, self.bns, strict=True):
            deconv.build(shape)
            shape = (n, _times2(shape[1]), _times2(shape[2]), self.filters)
            bn.build(shape)
        self.final.build(shape)
        self.visibility.build((n, c))

    def call(self, inputs: Any, training: bool | None = None) -> tuple[Any, Any]:
        x = ops.cast(inputs, self.compute_dtype)
        for deconv, bn in zip(self.deconvs, self.bns, strict=True):
            x = ops.relu(bn(deconv(x), training=training))
        heatmaps = self.final(x)
        pooled = ops.mean(ops.cast(inputs, "float32"), axis=(1, 2))
        return heatmaps, self.visibility(pooled)

    def compute_output_shape(
        self, input_shape: Sequence[int | None]
    ) -> tuple[tuple[int | None, ...], tuple[int | None, ...]]:
        scale = 2**self.num_deconv
        n, h, w = input_shape[0], input_shape[1], input_shape[2]
        return (
            (
                n,
                None if h is None else h * scale,
                None if w is None else w * scale,
                self.num_keypoints,
            ),
            (n, self.num_keypoints),
        )

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            num_keypoints=self.num_keypoints,
            filters=self.filters,
            num_deconv=self.num_deconv,
            kernel_size=self.kernel_size,
            input_stride=self.input_stride,
        )
        return config


def _times2(size: int | None) -> int | None:
    return None if size is None else 2 * size
