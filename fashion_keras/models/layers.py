"""Custom layers for the SE-ResNet backbones and the classifier (backend-agnostic Keras 3)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from fashion_keras.models.presets import IMAGENET_MEAN, IMAGENET_STD


def make_divisible(
    v: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9
) -> int:
    """timm's ``make_divisible``: rounds ``v`` to a multiple of ``divisor`` (at least ``min_value``).

    When the rounded value falls below ``round_limit * v`` it is bumped up by one ``divisor``.
    """
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < round_limit * v:
        new_v += divisor
    return new_v


def se_reduced_channels(channels: int, rd_ratio: float = 1.0 / 16, rd_divisor: int = 8) -> int:
    """Reduced SE width as in timm's ``SEModule``: ``make_divisible(c * r, 8, round_limit=0)``."""
    return make_divisible(channels * rd_ratio, rd_divisor, round_limit=0.0)


@keras.saving.register_keras_serializable(package="fashion_keras")
class SqueezeExcite(keras.layers.Layer):
    """Squeeze-and-Excitation (Hu et al., 2018), laid out as timm's ``SEModule``.

    ``x * sigmoid(fc2(relu(fc1(mean_hw(x)))))`` where ``fc1``/``fc2`` are 1x1 convolutions with
    bias. ``fc1`` has ``rd_channels`` filters, by default
    ``make_divisible(channels * rd_ratio, rd_divisor, round_limit=0)`` (timm's rule), so
    ``channels=256`` gives 16 and ``channels=2048`` gives 128. The sublayers are the attributes
    ``fc1`` and ``fc2``, matching the timm state-dict keys ``<block>.se.fc1`` / ``<block>.se.fc2``.

    Args:
      channels: input (and output) channel count.
      rd_ratio: reduction ratio (``1 / r`` in the paper).
      rd_channels: explicit reduced width; overrides ``rd_ratio`` when set.
      rd_divisor: the reduced width is rounded to a multiple of this.
    """

    def __init__(
        self,
        channels: int,
        rd_ratio: float = 1.0 / 16,
        rd_channels: int | None = None,
        rd_divisor: int = 8,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"SqueezeExcite: channels = {channels!r} must be an int >= 1")
        if rd_channels is None and not 0.0 < rd_ratio <= 1.0:
            raise ValueError(f"SqueezeExcite: rd_ratio = {rd_ratio!r} must be in (0, 1]")
        if rd_channels is not None and (
            isinstance(rd_channels, bool) or not isinstance(rd_channels, int) or rd_channels < 1
        ):
            raise ValueError(f"SqueezeExcite: rd_channels = {rd_channels!r} must be an int >= 1")
        self.channels = channels
        self.rd_ratio = rd_ratio
        self.rd_channels = rd_channels
        self.rd_divisor = rd_divisor
        self.reduced_channels = (
            rd_channels if rd_channels else se_reduced_channels(channels, rd_ratio, rd_divisor)
        )
        conv_kwargs = dict(
            kernel_size=1,
            use_bias=True,
            kernel_initializer=keras.initializers.VarianceScaling(
                2.0, mode="fan_out", distribution="untruncated_normal"
            ),
            dtype=self.dtype_policy,
        )
        self.fc1 = keras.layers.Conv2D(self.reduced_channels, name="fc1", **conv_kwargs)
        self.fc2 = keras.layers.Conv2D(channels, name="fc2", **conv_kwargs)

    def build(self, input_shape: Sequence[int | None]) -> None:
        if input_shape[-1] != self.channels:
            raise ValueError(
                f"SqueezeExcite {self.name!r}: input has {input_shape[-1]} channels, "
                f"expected channels = {self.channels}"
            )
        pooled = (input_shape[0], 1, 1, self.channels)
        self.fc1.build(pooled)
        self.fc2.build((input_shape[0], 1, 1, self.reduced_channels))

    def call(self, inputs: Any) -> Any:
        s = ops.mean(inputs, axis=(1, 2), keepdims=True)
        s = ops.relu(self.fc1(s))
        s = ops.sigmoid(self.fc2(s))
        return inputs * s

    def compute_output_shape(self, input_shape: Sequence[int | None]) -> Sequence[int | None]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            channels=self.channels,
            rd_ratio=self.rd_ratio,
            rd_channels=self.rd_channels,
            rd_divisor=self.rd_divisor,
        )
        return config


@keras.saving.register_keras_serializable(package="fashion_keras")
class ImageNormalization(keras.layers.Layer):
    """Per-channel ``(x - mean) / std`` on channels-last images, computed in float32.

    The layer defaults to the float32 policy so that, under mixed precision, pixel values in
    [0, 255] are normalised before the cast to the compute dtype of the next layer.

    Args:
      mean: per-channel means (RGB), in input units (default: ImageNet's, 0-255 units).
      std: per-channel standard deviations (RGB), in input units; all must be > 0.
    """

    def __init__(
        self,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        mean = [float(m) for m in mean]
        std = [float(s) for s in std]
        if len(mean) != len(std) or not mean:
            raise ValueError(
                f"ImageNormalization: mean = {mean!r} and std = {std!r} must be non-empty and "
                "of equal length (one entry per channel)"
            )
        if any(not s > 0 for s in std):
            raise ValueError(f"ImageNormalization: std = {std!r} must all be > 0")
        self.mean = mean
        self.std = std

    def build(self, input_shape: Sequence[int | None]) -> None:
        if input_shape[-1] is not None and input_shape[-1] != len(self.mean):
            raise ValueError(
                f"ImageNormalization {self.name!r}: input has {input_shape[-1]} channels but "
                f"mean/std have {len(self.mean)} entries"
            )

    def call(self, inputs: Any) -> Any:
        x = ops.cast(inputs, self.compute_dtype)
        mean = ops.convert_to_tensor(self.mean, dtype=self.compute_dtype)
        std = ops.convert_to_tensor(self.std, dtype=self.compute_dtype)
        return (x - mean) / std

    def compute_output_shape(self, input_shape: Sequence[int | None]) -> Sequence[int | None]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(mean=list(self.mean), std=list(self.std))
        return config
