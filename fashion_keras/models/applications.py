"""``keras.applications`` networks as backbones of the multi-head classifier.

:data:`APPLICATIONS` is the table (as keras-hub presets / timm ``default_cfgs``): per backbone
name (``keras_<model>``) the ``keras.applications`` constructor, its default input size, its
input preprocessing as the classifier's RGB mean/std in 0-255 units (plus ``bgr`` for the Caffe
models, whose first layer then reverses the channels), Keras' ImageNet top-1 (keras.io/api/
applications) and where its stem and four stages end, so per-layer learning rates work.

Keras' ``preprocess_input`` modes as mean/std on the RGB [0, 255] input:

- ``caffe`` (ResNet v1, VGG): BGR, minus the BGR mean (103.939, 116.779, 123.68), std 1;
- ``tf`` (ResNet v2, Inception-v3): ``x / 127.5 - 1``: mean 127.5, std 127.5;
- ``torch`` (DenseNet; EfficientNetV2-B*, ConvNeXt built with ``include_preprocessing=False``):
  the ImageNet mean/std;
- EfficientNetV2-S/M/L (``include_preprocessing=False``): ``x / 128 - 1``: mean 128, std 128.

So the preprocessing stays in one place, the classifier's ``normalize`` layer. ImageNet weights
come from Keras' own download (``weights="imagenet"`` of the constructor, cached in
``$KERAS_HOME/models``, default ``~/.keras/models``).

:class:`ApplicationBackbone` is a functional model whose layers are the application's own
layers (no nesting), with the interface of :class:`~fashion_keras.models.backbones.Backbone`:
``stem_layer_names``, ``stage_blocks`` (one entry per stage), ``stage_layer_names(stage)``,
``num_features``. Its config holds only the table name and the input shape: a saved model is
rebuilt from the table with ``weights=None`` and Keras' saving restores the weights.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from fashion_keras.models.presets import IMAGENET_MEAN, IMAGENET_STD

Selector = str | tuple[str, int]

_CAFFE = {"mean": (123.68, 116.779, 103.939), "std": (1.0, 1.0, 1.0), "bgr": True}
_TF = {"mean": (127.5, 127.5, 127.5), "std": (127.5, 127.5, 127.5)}
_TORCH = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}
_V2_SML = {"mean": (128.0, 128.0, 128.0), "std": (128.0, 128.0, 128.0)}

_RESNET_ENDS = ("pool1_pool", "conv2_*", "conv3_*", "conv4_*")
_VGG_ENDS = ("block1_pool", "block2_pool", "block3_pool", "block4_pool")
_DENSENET_ENDS = ("pool1", "pool2_pool", "pool3_pool", "pool4_pool")
# Inception-v3 (timm feature levels): stem = 3 convs + pool (stride 4), layer1 = 2 convs + pool
# (stride 8), layer2 = mixed0-2 (35x35 at 299 px), layer3 = mixed3-7 (17x17), layer4 = mixed8-10.
_INCEPTION_ENDS = (("MaxPooling2D", 0), ("MaxPooling2D", 1), "mixed2", "mixed7")
# EfficientNetV2 (timm's stages by stride): stem + block1 (/2), block2 (/4), block3 (/8),
# block4-5 (/16), block6(-7) + top conv (/32).
_EFFNETV2_ENDS = ("block1*", "block2*", "block3*", "block5*")


def _convnext_ends(name: str) -> tuple[str, ...]:
    # the downsampling layer of stage i+1 opens that stage, as in timm
    return (f"{name}_stem", f"{name}_stage_0_*", f"{name}_stage_1_*", f"{name}_stage_2_*")


@dataclasses.dataclass(frozen=True)
class ApplicationInfo:
    """One ``keras.applications`` backbone of :data:`APPLICATIONS`.

    ``stage_ends``: the last layer of the stem and of stages 1-3 (stage 4 runs to the end), each
    a layer name, ``"prefix*"`` (the last layer whose name starts with ``prefix``) or
    ``(class_name, k)`` (the k-th layer of that class, 0-based), in the layers' topological
    order.
    """

    constructor: str  # attribute of keras.applications
    default_size: int
    min_size: int
    mode: str  # Keras' preprocess_input mode the mean/std reproduce
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    top1: float  # ImageNet top-1 (%), keras.io/api/applications
    stage_ends: tuple[Selector, ...]
    bgr: bool = False
    include_preprocessing: bool = False  # the constructor has include_preprocessing

    def build(
        self, input_tensor: Any, weights: str | None, image_shape: tuple[int | None, ...]
    ) -> keras.Model:
        """The application without its classifier, on ``input_tensor``."""
        kwargs: dict[str, Any] = {
            "include_top": False,
            "weights": weights,
            "input_tensor": input_tensor,
            "input_shape": image_shape,
        }
        if self.include_preprocessing:
            kwargs["include_preprocessing"] = False
        return getattr(keras.applications, self.constructor)(**kwargs)


def _info(constructor: str, size: int, mode: str, top1: float, ends: tuple, **kw: Any) -> Any:
    stats = {"caffe": _CAFFE, "tf": _TF, "torch": _TORCH, "v2_sml": _V2_SML}[mode]
    kw.setdefault("min_size", 75 if constructor == "InceptionV3" else 32)
    return ApplicationInfo(constructor, size, mode=mode, top1=top1, stage_ends=ends, **stats, **kw)


#: The ``keras.applications`` backbones by name.
APPLICATIONS: dict[str, ApplicationInfo] = {
    "keras_resnet50": _info("ResNet50", 224, "caffe", 74.9, _RESNET_ENDS),
    "keras_resnet101": _info("ResNet101", 224, "caffe", 76.4, _RESNET_ENDS),
    "keras_resnet152": _info("ResNet152", 224, "caffe", 76.6, _RESNET_ENDS),
    "keras_resnet50_v2": _info("ResNet50V2", 224, "tf", 76.0, _RESNET_ENDS),
    "keras_resnet101_v2": _info("ResNet101V2", 224, "tf", 77.2, _RESNET_ENDS),
    "keras_resnet152_v2": _info("ResNet152V2", 224, "tf", 78.0, _RESNET_ENDS),
    "keras_inception_v3": _info("InceptionV3", 299, "tf", 77.9, _INCEPTION_ENDS),
    "keras_densenet121": _info("DenseNet121", 224, "torch", 75.0, _DENSENET_ENDS),
    "keras_densenet169": _info("DenseNet169", 224, "torch", 76.2, _DENSENET_ENDS),
    "keras_densenet201": _info("DenseNet201", 224, "torch", 77.3, _DENSENET_ENDS),
    "keras_vgg16": _info("VGG16", 224, "caffe", 71.3, _VGG_ENDS),
    "keras_vgg19": _info("VGG19", 224, "caffe", 71.3, _VGG_ENDS),
    "keras_efficientnet_v2_b0": _info(
        "EfficientNetV2B0", 224, "torch", 78.7, _EFFNETV2_ENDS, include_preprocessing=True
    ),
    "keras_efficientnet_v2_s": _info(
        "EfficientNetV2S", 384, "v2_sml", 83.9, _EFFNETV2_ENDS, include_preprocessing=True
    ),
    "keras_convnext_tiny": _info(
        "ConvNeXtTiny",
        224,
        "torch",
        81.3,
        _convnext_ends("convnext_tiny"),
        include_preprocessing=True,
    ),
    "keras_convnext_small": _info(
        "ConvNeXtSmall",
        224,
        "torch",
        82.3,
        _convnext_ends("convnext_small"),
        include_preprocessing=True,
    ),
}


def is_application(name: Any) -> bool:
    """Whether ``name`` is a :data:`APPLICATIONS` backbone name."""
    return isinstance(name, str) and name in APPLICATIONS


def application_info(name: str) -> ApplicationInfo:
    """The table entry of ``name``; raises ``ValueError`` listing the valid names."""
    if not is_application(name):
        raise ValueError(
            f"unknown keras.applications backbone {name!r}; expected one of "
            f"{', '.join(sorted(APPLICATIONS))}"
        )
    return APPLICATIONS[name]


def check_weights(weights: str | os.PathLike[str] | None, backbone: str) -> str | None:
    """The weights source of an application backbone, checked before anything is built:
    ``None``, ``"imagenet"`` (Keras' own download) or an existing ``.h5`` file (a
    ``.weights.h5`` of the backbone or of the ``keras.applications`` model, or Keras' own
    ``*_notop.h5``). Raises ``ValueError`` naming the field and the accepted forms."""
    if weights is None:
        return None
    text = os.fspath(weights)
    if text == "imagenet":
        return text
    if text.endswith(".h5") and os.path.isfile(text):
        return text
    problem = "does not exist" if text.endswith(".h5") else "is not a Keras .h5 weights file"
    raise ValueError(
        f"config field 'weights' = {text!r} {problem}; backbone {backbone!r} (keras.applications)"
        " takes 'imagenet' (Keras' download into $KERAS_HOME/models) or a Keras .weights.h5 / "
        ".h5 file of the same network; timm checkpoints fit the SE-ResNet family only"
    )


@keras.saving.register_keras_serializable(package="fashion_keras")
class ReverseChannels(keras.layers.Layer):
    """RGB <-> BGR: reverses the last axis (the Caffe models' first layer)."""

    def call(self, inputs: Any) -> Any:
        return ops.flip(inputs, axis=-1)

    def compute_output_shape(self, input_shape: Sequence[int | None]) -> Sequence[int | None]:
        return input_shape


def _select(layers: Sequence[keras.layers.Layer], selector: Selector, name: str) -> int:
    """Index in ``layers`` of the layer ``selector`` picks (see :class:`ApplicationInfo`)."""
    if isinstance(selector, tuple):
        cls, k = selector
        hits = [i for i, layer in enumerate(layers) if type(layer).__name__ == cls]
        index = hits[k] if k < len(hits) else None
    elif selector.endswith("*"):
        hits = [i for i, layer in enumerate(layers) if layer.name.startswith(selector[:-1])]
        index = hits[-1] if hits else None
    else:
        index = next((i for i, layer in enumerate(layers) if layer.name == selector), None)
    if index is None:
        raise ValueError(f"{name}: no layer matches the stage end {selector!r}")
    return index


@keras.saving.register_keras_serializable(package="fashion_keras")
class ApplicationBackbone(keras.Model):
    """A ``keras.applications`` network (no classifier, not pooled) as a classifier backbone.

    Input: the normalised image (``(x - mean) / std`` of :attr:`mean` / :attr:`std`, in RGB);
    a ``bgr`` application's first layer (``reverse_channels``) makes it BGR. Output: the last
    feature map ``(N, h, w, num_features)``.

    Args:
      application: an :data:`APPLICATIONS` name, e.g. ``"keras_densenet201"``.
      image_shape: ``(H, W, 3)``; ``None`` sizes for variable inputs.
      weights: ``None`` (random), ``"imagenet"`` (Keras' download) or a Keras ``.h5`` path
        given to the constructor; not part of the config.
      **kwargs: ``name`` (default: ``application``), ``trainable``.
    """

    def __init__(
        self,
        application: str,
        image_shape: Sequence[int | None] = (None, None, 3),
        weights: str | None = None,
        **kwargs: Any,
    ) -> None:
        info = application_info(application)
        image_shape = tuple(image_shape)
        if len(image_shape) != 3 or image_shape[2] != 3:
            raise ValueError(
                f"ApplicationBackbone: image_shape = {image_shape!r} must be (height, width, 3)"
            )
        small = [d for d in image_shape[:2] if d is not None and d < info.min_size]
        if small:
            raise ValueError(
                f"ApplicationBackbone {application!r}: image_shape = {image_shape!r}; "
                f"{info.constructor} needs inputs of at least {info.min_size} px (default "
                f"{info.default_size}); raise --image-size"
            )
        kwargs.setdefault("name", application)
        inputs = keras.Input(shape=image_shape, name="images")
        x = ReverseChannels(name="reverse_channels")(inputs) if info.bgr else inputs
        app = info.build(x, weights, image_shape)
        super().__init__(inputs=inputs, outputs=app.outputs[0], **kwargs)
        if kwargs.get("trainable") is False:  # as in Backbone: reach the layers
            for layer in self.layers:
                layer.trainable = False

        self.application = application
        self.image_shape = image_shape
        self.info = info
        self.num_features = int(app.outputs[0].shape[-1])
        self._groups = self._split_groups()
        #: layers per stage (one entry per stage, as ``Backbone.stage_blocks``)
        self.stage_blocks = tuple(len(g) for g in self._groups[1:])

    @property
    def mean(self) -> tuple[float, float, float]:
        """RGB mean (0-255) the classifier subtracts for this application."""
        return self.info.mean

    @property
    def std(self) -> tuple[float, float, float]:
        """RGB std (0-255) the classifier divides by for this application."""
        return self.info.std

    @property
    def num_stages(self) -> int:
        """Number of stages (groups ``layer1`` ... ``layerN`` of the learning-rate multipliers)."""
        return len(self._groups) - 1

    def _split_groups(self) -> list[tuple[str, ...]]:
        layers = self.layers[1:]  # without the input layer
        ends = [_select(layers, s, self.application) for s in self.info.stage_ends]
        ends.append(len(layers) - 1)
        if any(b <= a for a, b in zip(ends, ends[1:], strict=False)) or ends[0] < 0:
            raise ValueError(f"{self.application}: stage ends {ends} are not increasing")
        starts = [0] + [e + 1 for e in ends[:-1]]
        return [
            tuple(layer.name for layer in layers[s : e + 1])
            for s, e in zip(starts, ends, strict=True)
        ]

    @property
    def stem_layer_names(self) -> tuple[str, ...]:
        """Names of the stem's layers (up to the table's stem end)."""
        return self._groups[0]

    def stage_layer_names(self, stage: int) -> tuple[str, ...]:
        """Names of the layers of stage ``stage`` (1-based)."""
        if not 1 <= stage <= self.num_stages:
            raise ValueError(
                f"ApplicationBackbone {self.name!r}: stage = {stage!r}; expected 1 to "
                f"{self.num_stages}"
            )
        return self._groups[stage]

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "application": self.application,
            "image_shape": list(self.image_shape),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ApplicationBackbone:
        return cls(**config)
