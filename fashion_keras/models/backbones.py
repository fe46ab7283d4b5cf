"""SE-ResNet / SE-ResNeXt backbones in timm's ``resnet.py`` and ``senet.py`` layouts (Keras 3).

Layout: 7x7/2 conv stem + BN + ReLU + 3x3/2 max-pool, then four stages of bottleneck blocks
(stride on the 3x3 conv, grouped for ResNeXt; 1x1 conv + BN projection shortcut when the shape
changes; optional Squeeze-and-Excitation after the last BN of the residual branch). PyTorch's
symmetric padding is reproduced with explicit ``ZeroPadding2D`` + ``"valid"`` convolutions, and
BatchNorm uses PyTorch's ``eps=1e-5`` / ``momentum=0.1`` (Keras ``momentum=0.9``), so imported
timm weights give timm's outputs.

Layer names map to timm state-dict keys by replacing ``.`` with ``_``:

- ``conv1``, ``bn1``: the stem (timm ``conv1``, ``bn1``);
- ``layer{s}_{b}_conv{i}`` / ``layer{s}_{b}_bn{i}`` (i = 1, 2, 3): ``layer{s}.{b}.conv{i}`` /
  ``layer{s}.{b}.bn{i}``;
- ``layer{s}_{b}_se`` (a :class:`SqueezeExcite` with sublayers ``fc1``, ``fc2``):
  ``layer{s}.{b}.se.fc1`` / ``layer{s}.{b}.se.fc2``;
- ``layer{s}_{b}_downsample_0`` (1x1 conv) / ``layer{s}_{b}_downsample_1`` (BN):
  ``layer{s}.{b}.downsample.0`` / ``layer{s}.{b}.downsample.1``.

Parameter-free layers are named ``conv1_pad``, ``act1``, ``maxpool_pad``, ``maxpool`` and, per
block, ``..._act1``, ``..._conv2_pad``, ``..._act2``, ``..._add``, ``..._act3``.

``layout="legacy"`` reproduces timm's ``senet.py`` (the Caffe-derived SENet port,
``legacy_seresnet50`` ...), which differs in:

- names: the stem is ``layer0_conv1`` / ``layer0_bn1`` (timm ``layer0.conv1`` / ``layer0.bn1``),
  the max-pool ``pool0``, the SE block ``layer{s}_{b}_se_module`` (``layer{s}.{b}.se_module``);
- the stem max-pool uses ``ceil_mode=True`` and no padding (Caffe), reproduced by padding one
  zero row/column at the bottom/right (exact after the ReLU);
- SE reduced width ``channels // reduction`` (no rounding to a multiple of 8);
- no zero-init of the last BN;
- SE-ResNet (not SE-ResNeXt) blocks put the stride on the first 1x1 conv (``stride_in_1x1``),
  as the original Caffe ResNet does; that also changes the MACs (see ``models.summary``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import keras

from fashion_keras.models.applications import APPLICATIONS, ApplicationBackbone, is_application
from fashion_keras.models.layers import SqueezeExcite
from fashion_keras.models.presets import BACKBONE_PRESETS, backbone_preset

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9  # PyTorch momentum 0.1
BOTTLENECK_EXPANSION = 4
LAYOUTS = ("timm", "legacy")
Layout = Literal["timm", "legacy"]


def _conv_init() -> keras.initializers.Initializer:
    # timm: kaiming_normal_(mode="fan_out", nonlinearity="relu")
    return keras.initializers.VarianceScaling(
        2.0, mode="fan_out", distribution="untruncated_normal"
    )


def _conv(
    filters: int, kernel: int, stride: int, name: str, groups: int = 1
) -> keras.layers.Conv2D:
    return keras.layers.Conv2D(
        filters,
        kernel,
        strides=stride,
        padding="valid",
        groups=groups,
        use_bias=False,
        kernel_initializer=_conv_init(),
        name=name,
    )


def _bn(name: str, zero_gamma: bool = False) -> keras.layers.BatchNormalization:
    return keras.layers.BatchNormalization(
        axis=-1,
        momentum=BN_MOMENTUM,
        epsilon=BN_EPSILON,
        gamma_initializer="zeros" if zero_gamma else "ones",
        name=name,
    )


def _check_int(value: Any, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"Backbone: {what} = {value!r} must be an int >= {minimum}")
    return value


def _bottleneck(
    x: Any,
    prefix: str,
    in_channels: int,
    planes: int,
    stride: int,
    groups: int,
    base_width: int,
    se: bool,
    se_reduction: float,
    layout: Layout = "timm",
    stride_in_1x1: bool = False,
) -> tuple[Any, int]:
    """One bottleneck block (timm ``Bottleneck`` or senet ``SEResNet(X)Bottleneck``).

    Returns the output tensor and its channel count.
    """
    width = int(math.floor(planes * (base_width / 64)) * groups)
    out_channels = planes * BOTTLENECK_EXPANSION
    legacy = layout == "legacy"
    stride1, stride3 = (stride, 1) if stride_in_1x1 else (1, stride)
    shortcut = x

    y = _conv(width, 1, stride1, f"{prefix}_conv1")(x)
    y = _bn(f"{prefix}_bn1")(y)
    y = keras.layers.ReLU(name=f"{prefix}_act1")(y)
    y = keras.layers.ZeroPadding2D(1, name=f"{prefix}_conv2_pad")(y)
    y = _conv(width, 3, stride3, f"{prefix}_conv2", groups=groups)(y)
    y = _bn(f"{prefix}_bn2")(y)
    y = keras.layers.ReLU(name=f"{prefix}_act2")(y)
    y = _conv(out_channels, 1, 1, f"{prefix}_conv3")(y)
    y = _bn(f"{prefix}_bn3", zero_gamma=not legacy)(y)  # timm zero_init_last
    if se:
        if legacy:  # senet.py SEModule: channels // reduction, no rounding
            rd = max(1, out_channels // int(se_reduction))
            y = SqueezeExcite(out_channels, rd_channels=rd, name=f"{prefix}_se_module")(y)
        else:
            y = SqueezeExcite(out_channels, rd_ratio=1.0 / se_reduction, name=f"{prefix}_se")(y)

    if stride != 1 or in_channels != out_channels:
        shortcut = _conv(out_channels, 1, stride, f"{prefix}_downsample_0")(shortcut)
        shortcut = _bn(f"{prefix}_downsample_1")(shortcut)

    y = keras.layers.Add(name=f"{prefix}_add")([y, shortcut])
    y = keras.layers.ReLU(name=f"{prefix}_act3")(y)
    return y, out_channels


def _stem(x: Any, stem_width: int, layout: Layout) -> Any:
    """7x7/2 conv + BN + ReLU + 3x3/2 max-pool, named and padded as in timm or senet.py."""
    if layout == "legacy":
        x = keras.layers.ZeroPadding2D(3, name="layer0_conv1_pad")(x)
        x = _conv(stem_width, 7, 2, "layer0_conv1")(x)
        x = _bn("layer0_bn1")(x)
        x = keras.layers.ReLU(name="layer0_relu1")(x)
        # MaxPool2d(3, 2, ceil_mode=True): one extra zero row/column at the bottom/right gives
        # the ceil-mode output size for odd and even inputs; zeros never win after the ReLU.
        x = keras.layers.ZeroPadding2D(((0, 1), (0, 1)), name="pool0_pad")(x)
        return keras.layers.MaxPooling2D(3, strides=2, padding="valid", name="pool0")(x)
    x = keras.layers.ZeroPadding2D(3, name="conv1_pad")(x)
    x = _conv(stem_width, 7, 2, "conv1")(x)
    x = _bn("bn1")(x)
    x = keras.layers.ReLU(name="act1")(x)
    # PyTorch pads max-pool inputs with -inf; zeros are equivalent after the ReLU.
    x = keras.layers.ZeroPadding2D(1, name="maxpool_pad")(x)
    return keras.layers.MaxPooling2D(3, strides=2, padding="valid", name="maxpool")(x)


def _check_args(
    stage_blocks: tuple[int, ...],
    stage_widths: tuple[int, ...],
    *,
    groups: int,
    base_width: int,
    se: bool,
    se_reduction: float,
    stem_width: int,
    image_shape: tuple[int | None, ...],
    layout: str,
    stride_in_1x1: bool,
) -> None:
    """Raises ``ValueError`` naming the first bad ``Backbone`` argument."""
    if not stage_blocks or len(stage_blocks) != len(stage_widths):
        raise ValueError(
            f"Backbone: stage_blocks = {list(stage_blocks)!r} and stage_widths = "
            f"{list(stage_widths)!r} must be non-empty and of equal length"
        )
    for i, (n, w) in enumerate(zip(stage_blocks, stage_widths, strict=True)):
        _check_int(n, f"stage_blocks[{i}]")
        _check_int(w, f"stage_widths[{i}]")
    _check_int(groups, "groups")
    _check_int(base_width, "base_width")
    _check_int(stem_width, "stem_width")
    if not isinstance(se, bool):
        raise ValueError(f"Backbone: se = {se!r} must be a bool")
    if isinstance(se_reduction, bool) or not isinstance(se_reduction, (int, float)):
        raise ValueError(f"Backbone: se_reduction = {se_reduction!r} must be a number >= 1")
    if not se_reduction >= 1:
        raise ValueError(f"Backbone: se_reduction = {se_reduction!r} must be a number >= 1")
    if layout not in LAYOUTS:
        raise ValueError(f"Backbone: layout = {layout!r}; expected one of {list(LAYOUTS)}")
    if not isinstance(stride_in_1x1, bool):
        raise ValueError(f"Backbone: stride_in_1x1 = {stride_in_1x1!r} must be a bool")
    if len(image_shape) != 3:
        raise ValueError(
            f"Backbone: image_shape = {image_shape!r} must be (height, width, channels)"
        )
    for planes in stage_widths:
        if math.floor(planes * (base_width / 64)) < 1:
            raise ValueError(
                f"Backbone: stage width {planes} with base_width = {base_width} gives a "
                "3x3 conv width of 0 per group"
            )


@keras.saving.register_keras_serializable(package="fashion_keras")
class Backbone(keras.Model):
    """(SE-)ResNet / (SE-)ResNeXt feature extractor with bottleneck blocks (timm layout).

    Input: normalised float images ``(N, H, W, 3)``. Output: the last feature map
    ``(N, ceil(H/32), ceil(W/32), num_features)`` (exactly ``H/32`` for multiples of 32), not
    pooled.

    Args:
      stage_blocks: number of bottleneck blocks per stage, e.g. ``(3, 4, 6, 3)``.
      stage_widths: ``planes`` per stage (timm ``channels``); a stage outputs ``4 * planes``.
      groups: cardinality of the grouped 3x3 conv (ResNeXt), 1 for ResNet.
      base_width: ResNeXt width per group; the 3x3 width is ``floor(planes*base_width/64)*groups``.
      se: add a Squeeze-and-Excitation block to each bottleneck.
      se_reduction: SE reduction ratio ``r`` (reduced width rounded as in timm).
      stem_width: channels of the 7x7 stem conv.
      image_shape: input shape ``(H, W, C)``, ``None`` for variable sizes.
      layout: ``"timm"`` (timm ``resnet.py``) or ``"legacy"`` (timm ``senet.py``, the Caffe
        SENet port): layer names, stem max-pool, SE width rounding (see the module docstring).
      stride_in_1x1: put the block stride on the first 1x1 conv instead of the 3x3 conv
        (Caffe ResNet / senet.py ``SEResNetBottleneck``).
      **kwargs: ``name``, ``trainable``, passed to ``keras.Model``.
    """

    def __init__(
        self,
        stage_blocks: Sequence[int],
        stage_widths: Sequence[int],
        groups: int = 1,
        base_width: int = 64,
        se: bool = False,
        se_reduction: float = 16,
        stem_width: int = 64,
        image_shape: Sequence[int | None] = (None, None, 3),
        layout: Layout = "timm",
        stride_in_1x1: bool = False,
        **kwargs: Any,
    ) -> None:
        stage_blocks, stage_widths = tuple(stage_blocks), tuple(stage_widths)
        image_shape = tuple(image_shape)
        block_args = {
            "groups": groups,
            "base_width": base_width,
            "se": se,
            "se_reduction": se_reduction,
            "layout": layout,
            "stride_in_1x1": stride_in_1x1,
        }
        _check_args(
            stage_blocks, stage_widths, stem_width=stem_width, image_shape=image_shape, **block_args
        )

        # --- functional graph ---
        inputs = keras.Input(shape=image_shape, name="images")
        x = _stem(inputs, stem_width, layout)
        channels = stem_width
        for s, (num_blocks, planes) in enumerate(zip(stage_blocks, stage_widths, strict=True)):
            for b in range(num_blocks):
                x, channels = _bottleneck(
                    x,
                    prefix=f"layer{s + 1}_{b}",
                    in_channels=channels,
                    planes=planes,
                    stride=(1 if s == 0 else 2) if b == 0 else 1,
                    **block_args,
                )
        super().__init__(inputs=inputs, outputs=x, **kwargs)
        if kwargs.get("trainable") is False:
            # `trainable=False` in the constructor does not reach the layers (on TensorFlow,
            # re-setting an unchanged attribute skips the setter), so a frozen backbone would
            # come back from a saved config with trainable layers and training-mode BN.
            for layer in self.layers:
                layer.trainable = False

        # --- config ---
        self.stage_blocks = stage_blocks
        self.stage_widths = stage_widths
        self.groups = groups
        self.base_width = base_width
        self.se = se
        self.se_reduction = se_reduction
        self.stem_width = stem_width
        self.image_shape = image_shape
        self.layout = layout
        self.stride_in_1x1 = stride_in_1x1
        self.num_features = channels

    @property
    def num_stages(self) -> int:
        """Number of stages (groups ``layer1`` ... ``layerN`` of the learning-rate multipliers)."""
        return len(self.stage_blocks)

    @property
    def stem_layer_names(self) -> tuple[str, ...]:
        """Names of the stem's layers (everything before ``layer1``)."""
        names = []
        for layer in self.layers[1:]:
            if layer.name.startswith("layer1_"):
                break
            names.append(layer.name)
        return tuple(names)

    def stage_layer_names(self, stage: int) -> tuple[str, ...]:
        """Names of the layers of stage ``stage`` (1-based: ``layer1`` ... ``layerN``)."""
        if not 1 <= stage <= len(self.stage_blocks):
            raise ValueError(
                f"Backbone {self.name!r}: stage = {stage!r}; expected 1 to {len(self.stage_blocks)}"
            )
        return tuple(layer.name for layer in self.layers if layer.name.startswith(f"layer{stage}_"))

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "stage_blocks": list(self.stage_blocks),
            "stage_widths": list(self.stage_widths),
            "groups": self.groups,
            "base_width": self.base_width,
            "se": self.se,
            "se_reduction": self.se_reduction,
            "stem_width": self.stem_width,
            "image_shape": list(self.image_shape),
            "layout": self.layout,
            "stride_in_1x1": self.stride_in_1x1,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Backbone:
        return cls(**config)


def get_backbone(
    name: str, image_shape: Sequence[int | None] = (None, None, 3), **kwargs: Any
) -> Backbone | ApplicationBackbone:
    """Builds the backbone ``name``, randomly initialised: a ``presets.BACKBONE_PRESETS`` name
    (SE-ResNet family) or an ``applications.APPLICATIONS`` name (``keras_densenet201`` ...).

    ``kwargs`` override preset arguments (or set ``name``/``trainable``; ``weights`` for an
    application backbone).
    """
    if is_application(name):
        return ApplicationBackbone(name, image_shape=image_shape, **kwargs)
    if name not in BACKBONE_PRESETS:
        raise ValueError(
            f"unknown backbone {name!r}; expected one of {', '.join(sorted(BACKBONE_PRESETS))} "
            f"(SE-ResNet family) or {', '.join(sorted(APPLICATIONS))} (keras.applications)"
        )
    args = {**backbone_preset(name), "name": name, **kwargs}
    return Backbone(image_shape=image_shape, **args)
