"""The multi-head attribute classifier: backbone + global average pool + one softmax per head."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import keras

from fashion_keras.heads import (
    AnyHead,
    Head,
    HeadSpec,
    KeypointHead,
    get_heads,
    heads_from_dict,
    heads_to_dict,
    keypoint_heads,
    softmax_heads,
    visibility_output,
)
from fashion_keras.heads.views import crop_input, head_view, model_views
from fashion_keras.models.backbones import get_backbone
from fashion_keras.models.batch_view import views_of
from fashion_keras.models.keypoint_layers import KeypointHeatmapHead
from fashion_keras.models.layers import ImageNormalization
from fashion_keras.models.presets import IMAGENET_MEAN, IMAGENET_STD


def _resolve_heads(heads: Any) -> HeadSpec:
    if isinstance(heads, Mapping) or (
        isinstance(heads, Sequence)
        and not isinstance(heads, str)
        and heads
        and all(isinstance(h, Mapping) for h in heads)
    ):
        return heads_from_dict(heads)
    if isinstance(heads, Iterable) and not isinstance(heads, (str, bytes)):
        heads = tuple(heads)
        if heads and all(isinstance(h, AnyHead) for h in heads):
            return get_heads(heads)
    raise ValueError(
        f"MultiHeadClassifier: heads = {heads!r} must be a non-empty tuple of Head / KeypointHead "
        "objects or "
        "its dict form ({'heads': [...]})"
    )


def _check_sizes(fc_layers: int, fc_units: int, dropout: float, image_size: int | None) -> None:
    """Raises ``ValueError`` naming the first bad size argument of ``MultiHeadClassifier``."""
    if isinstance(fc_layers, bool) or not isinstance(fc_layers, int) or fc_layers < 0:
        raise ValueError(f"MultiHeadClassifier: fc_layers = {fc_layers!r} must be an int >= 0")
    if isinstance(fc_units, bool) or not isinstance(fc_units, int) or fc_units < 1:
        raise ValueError(f"MultiHeadClassifier: fc_units = {fc_units!r} must be an int >= 1")
    if (
        isinstance(dropout, bool)
        or not isinstance(dropout, (int, float))
        or not 0.0 <= dropout < 1.0
    ):
        raise ValueError(f"MultiHeadClassifier: dropout = {dropout!r} must be in [0, 1)")
    if image_size is not None and (
        isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1
    ):
        raise ValueError(
            f"MultiHeadClassifier: image_size = {image_size!r} must be an int >= 1 or None"
        )


def _check_regions(heads: HeadSpec, regions: Sequence[str]) -> tuple[str, ...]:
    """``regions`` as a tuple; raises ``ValueError`` unless each is a region some softmax
    head names (``Head.region``), once."""
    if isinstance(regions, str) or not isinstance(regions, Sequence):
        raise ValueError(
            f"MultiHeadClassifier: regions = {regions!r} must be a list of region names"
        )
    named = {h.region for h in softmax_heads(heads) if h.region}
    for region in regions:
        if region not in named:
            raise ValueError(
                f"MultiHeadClassifier: regions = {list(regions)!r}: no head reads region "
                f"{region!r}; the heads name {sorted(named)!r} (a head's 'region' in the spec)"
            )
    if len(set(regions)) != len(regions):
        raise ValueError(f"MultiHeadClassifier: regions = {list(regions)!r} repeats a name")
    return tuple(regions)


def _check_names(
    heads: HeadSpec, backbone: keras.Model, fc_layers: int, regions: Sequence[str] = ()
) -> None:
    """Raises ``ValueError`` when a head's name is taken by a layer or output of the model."""
    reserved = {"image", "normalize", "pool", "dropout", backbone.name}
    reserved |= {crop_input(r) for r in regions}
    reserved |= {f"fc{i + 1}" for i in range(fc_layers)}
    reserved |= {f"fc{i + 1}_dropout" for i in range(fc_layers)}
    reserved |= {visibility_output(h.name) for h in keypoint_heads(heads)}
    clashes = sorted(h.name for h in heads if h.name in reserved)
    if clashes:
        raise ValueError(
            f"MultiHeadClassifier: head name(s) {clashes!r} clash with layer names of the "
            f"model ({', '.join(sorted(reserved))}); rename the heads"
        )


def _preprocessing_json(preprocessing: Mapping[str, Any] | None) -> str | None:
    """``preprocessing`` as JSON text (``None`` stays ``None``); raises ``ValueError`` unless it
    is a mapping with string keys that JSON can hold."""
    if preprocessing is None:
        return None
    if not isinstance(preprocessing, Mapping) or not all(isinstance(k, str) for k in preprocessing):
        raise ValueError(
            f"MultiHeadClassifier: preprocessing = {preprocessing!r} must be a dict with string "
            "keys (e.g. {'bbox_margin': 0.2}) or None"
        )
    try:
        return json.dumps(dict(preprocessing), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"MultiHeadClassifier: preprocessing = {preprocessing!r} must be JSON-serialisable "
            f"(strings, numbers, booleans, None, lists and dicts of them): {e}"
        ) from e


@keras.saving.register_keras_serializable(package="fashion_keras")
class MultiHeadClassifier(keras.Model):
    """Garment attribute classifier with one softmax output per head.

    Graph: ``image`` (float32 RGB in [0, 255]) -> ``normalize`` ((x - mean) / std) -> backbone
    -> ``pool`` (global average) -> ``fc_layers`` x (``fc{i}`` Dense(fc_units, relu) +
    ``fc{i}_dropout``) -> ``dropout`` (only when ``fc_layers == 0``) -> one
    ``Dense(num_classes, softmax, dtype=float32)`` per head, named after the head. Dropout
    layers are added only when ``dropout > 0``, so features pass through exactly one dropout
    before each Dense.

    Keypoint heads (:class:`~fashion_keras.heads.KeypointHead`) sit on the backbone's feature
    map: a :class:`~fashion_keras.models.keypoint_layers.KeypointHeatmapHead` named after the
    head gives heatmap logits at ``keypoint_stride`` and per-keypoint visibility probabilities.

    With ``regions``, the input is a dict of views (:func:`model_views`): ``image`` and one
    ``<region>_crop`` per region, each ``(batch, size, size, 3)``.

    Outputs: a dict ``{head.name: (batch, head.num_classes)}`` for the softmax heads and, per
    keypoint head, ``{head.name: (batch, size / stride, size / stride, K)}`` heatmap logits
    and ``{head.name + "_visibility": (batch, K)}``, in head order.

    Args:
      backbone: the feature extractor (its input must accept the normalised image).
      heads: a head spec (tuple of ``Head``) or its dict form (``heads_to_dict``).
      fc_layers: number of hidden Dense layers between the pool and the heads (int >= 0).
      fc_units: width of each hidden Dense layer.
      dropout: dropout rate in [0, 1).
      image_size: square input size, or ``None`` for variable-size inputs.
      mean: per-channel RGB mean subtracted from the [0, 255] input; ``None``: the backbone's
        own (``ApplicationBackbone.mean``), else the ImageNet mean.
      std: per-channel RGB standard deviation dividing the input; ``None`` as for ``mean``.
      keypoint_filters: channels of the keypoint heads' deconvolutions (256 in SimpleBaselines).
      keypoint_stride: input pixels per heatmap cell (4 or 8; a power of two dividing the
        backbone's output stride).
      regions: regions (``REGIONS`` names) the model reads crops of: a softmax head whose
        ``region`` is listed pools the backbone's features of its input ``<region>_crop`` (the
        region's view) instead of ``image`` (the garment view); the same backbone runs over
        every view. Empty (the default): one ``image`` input, every head on the garment view.
      preprocessing: input preprocessing the data pipeline (not the model) applies, an opaque
        JSON-serialisable dict such as ``{"bbox_margin": 0.2}``; kept as ``model.preprocessing``
        and in the saved config (``None``: not recorded, as in models saved before it existed).
      **kwargs: ``name``, ``trainable``, passed to ``keras.Model``.
    """

    def __init__(
        self,
        backbone: keras.Model,
        heads: HeadSpec | Mapping[str, Any],
        fc_layers: int = 0,
        fc_units: int = 1024,
        dropout: float = 0.0,
        image_size: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        preprocessing: Mapping[str, Any] | None = None,
        keypoint_filters: int = 256,
        keypoint_stride: int = 4,
        regions: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        if mean is None:
            mean = getattr(backbone, "mean", IMAGENET_MEAN)
        if std is None:
            std = getattr(backbone, "std", IMAGENET_STD)
        if not isinstance(backbone, keras.Model):
            raise ValueError(
                f"MultiHeadClassifier: backbone = {backbone!r} must be a Backbone (keras.Model)"
            )
        heads = _resolve_heads(heads)
        _check_sizes(fc_layers, fc_units, dropout, image_size)
        preprocessing_json = _preprocessing_json(preprocessing)
        dropout = float(dropout)
        regions = _check_regions(heads, regions)
        if regions and image_size is None:
            raise ValueError(
                f"MultiHeadClassifier: regions = {list(regions)!r} need a fixed image_size "
                "(the views share one batch through the backbone)"
            )
        _check_names(heads, backbone, fc_layers, regions)

        # --- functional graph ---
        views = model_views(heads, regions)
        shape = (image_size, image_size, 3)
        inputs = {v: keras.Input(shape=shape, dtype="float32", name=crop_input(v)) for v in views}
        feature_maps, pooled = _view_features(
            backbone, inputs, mean, std, fc_layers, fc_units, dropout
        )
        points = keypoint_heads(heads)
        num_deconv = _num_deconv(backbone, image_size, keypoint_stride) if points else 0
        outputs = {}
        for h in heads:
            if h in points:
                heatmaps, visibility = KeypointHeatmapHead(
                    h.num_keypoints,
                    filters=keypoint_filters,
                    num_deconv=num_deconv,
                    input_stride=keypoint_stride * 2**num_deconv,
                    name=h.name,
                )(feature_maps[None])
                outputs[h.name] = heatmaps
                outputs[visibility_output(h.name)] = visibility
            else:
                outputs[h.name] = keras.layers.Dense(
                    h.num_classes, activation="softmax", dtype="float32", name=h.name
                )(pooled[head_view(h, regions)])
        if views == (None,):
            inputs = inputs[None]  # a plain image input, as before regions existed
        else:
            inputs = {crop_input(v): tensor for v, tensor in inputs.items()}
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # --- config ---
        self.backbone = backbone
        self.heads = heads
        self.fc_layers = fc_layers
        self.fc_units = fc_units
        self.dropout = dropout
        self.image_size = image_size
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self._preprocessing_json = preprocessing_json
        self.keypoint_filters = keypoint_filters
        self.keypoint_stride = keypoint_stride
        self.regions = regions

    def __call__(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        # a training batch of garment windows (``augment_on = accelerator``) becomes views
        # here, inside the training step on the accelerator (:mod:`.batch_view`)
        return super().__call__(views_of(inputs, self.image_size), *args, **kwargs)

    def call(self, inputs: Any, training: bool | None = None, mask: Any = None) -> Any:
        # JAX's stateless training step calls ``call`` directly
        return super().call(views_of(inputs, self.image_size), training=training, mask=mask)

    @property
    def head_names(self) -> tuple[str, ...]:
        return tuple(h.name for h in self.heads)

    @property
    def softmax_heads(self) -> tuple[Head, ...]:
        """The softmax (attribute) heads, in order."""
        return softmax_heads(self.heads)

    @property
    def keypoint_heads(self) -> tuple[KeypointHead, ...]:
        """The keypoint heads, in order."""
        return keypoint_heads(self.heads)

    @property
    def preprocessing(self) -> dict[str, Any] | None:
        """The input preprocessing the data pipeline applies (a fresh plain dict, or None)."""
        if self._preprocessing_json is None:
            return None
        return json.loads(self._preprocessing_json)

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "heads": heads_to_dict(self.heads),
            "fc_layers": self.fc_layers,
            "fc_units": self.fc_units,
            "dropout": self.dropout,
            "image_size": self.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "preprocessing": self.preprocessing,
            "keypoint_filters": self.keypoint_filters,
            "keypoint_stride": self.keypoint_stride,
            **({"regions": list(self.regions)} if self.regions else {}),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> MultiHeadClassifier:
        config = dict(config)
        backbone = config["backbone"]
        if isinstance(backbone, dict):
            config["backbone"] = keras.saving.deserialize_keras_object(backbone)
        return cls(**config)

    def compile_from_config(self, config: dict[str, Any]) -> None:
        # A trained model.keras names the project's metrics and optimizers in its compile
        # config; registering them here lets a plain keras.saving.load_model restore it.
        from fashion_keras.training import metrics, optimizers  # noqa: F401

        super().compile_from_config(config)


def _view_features(
    backbone: keras.Model,
    inputs: Mapping[str | None, Any],
    mean: Sequence[float],
    std: Sequence[float],
    fc_layers: int,
    fc_units: int,
    dropout: float,
) -> tuple[dict[str | None, Any], dict[str | None, Any]]:
    """Per view: the backbone's feature map and the pooled (and fc) features, with one set of
    layers (shared weights) for every view (several views need a fixed input size)."""
    normalize = ImageNormalization(mean, std, name="normalize")
    pool = keras.layers.GlobalAveragePooling2D(name="pool")
    hidden = []
    for i in range(fc_layers):
        hidden.append(keras.layers.Dense(fc_units, activation="relu", name=f"fc{i + 1}"))
        if dropout > 0:
            hidden.append(keras.layers.Dropout(dropout, name=f"fc{i + 1}_dropout"))
    if fc_layers == 0 and dropout > 0:
        hidden.append(keras.layers.Dropout(dropout, name="dropout"))
    views = list(inputs)
    # several views go through the backbone as one batch (views major), so batch
    # normalisation sees the same mix of views in training as its moving statistics hold
    stacked = inputs[views[0]]
    if len(views) > 1:
        stacked = keras.ops.concatenate([inputs[v] for v in views], axis=0)
    maps = backbone(normalize(stacked))
    x = pool(maps)
    for layer in hidden:
        x = layer(x)
    if len(views) == 1:
        return {views[0]: maps}, {views[0]: x}
    per_view = keras.ops.reshape(x, (len(views), -1, x.shape[-1]))
    per_map = keras.ops.reshape(maps, (len(views), -1, *maps.shape[1:]))
    return (
        {v: per_map[i] for i, v in enumerate(views)},
        {v: per_view[i] for i, v in enumerate(views)},
    )


def _num_deconv(backbone: keras.Model, image_size: int | None, stride: int) -> int:
    """Deconvolutions that take the backbone's feature map to ``stride`` (its output stride
    read from a static input size, else 32 as for every backbone here)."""
    if (
        isinstance(stride, bool)
        or not isinstance(stride, int)
        or stride < 1
        or stride & (stride - 1)
    ):
        raise ValueError(
            f"MultiHeadClassifier: keypoint_stride = {stride!r} must be a power of two (4 or 8)"
        )
    side = backbone.output_shape[1]
    output_stride = image_size // side if image_size and side else 32
    if output_stride < stride or output_stride % stride:
        raise ValueError(
            f"MultiHeadClassifier: keypoint_stride = {stride} does not divide the backbone's "
            f"output stride {output_stride}; use 4 or 8"
        )
    return (output_stride // stride).bit_length() - 1


def build_model(
    backbone: str = "seresnet50",
    heads: str | HeadSpec | Mapping[str, Any] = "deepfashion6",
    image_size: int = 224,
    fc_layers: int = 0,
    dropout: float = 0.0,
    preprocessing: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> MultiHeadClassifier:
    """Builds a randomly initialised :class:`MultiHeadClassifier` from a backbone preset name
    and a head spec (:func:`fashion_keras.models.create_model` also loads pretrained weights).

    Args:
      backbone: a ``BACKBONE_PRESETS`` or ``APPLICATIONS`` name (or a backbone instance).
      heads: anything ``fashion_keras.heads.get_heads`` accepts (preset name, comma list,
        YAML/JSON path, tuple of heads) or the dict form of a head spec.
      image_size: square input size (``None`` for variable-size inputs).
      fc_layers: hidden Dense layers before the heads.
      dropout: dropout rate in [0, 1).
      preprocessing: the data pipeline's input preprocessing, kept in the model (see
        :class:`MultiHeadClassifier`).
      **kwargs: further ``MultiHeadClassifier`` arguments (``fc_units``, ``mean``, ``std``,
        ``name``); ``mean``/``std`` default to the backbone's (see ``MultiHeadClassifier``).
    """
    if isinstance(backbone, str):
        image_shape = (image_size, image_size, 3)
        backbone = get_backbone(backbone, image_shape=image_shape)
    if isinstance(heads, (str, bytes)) or hasattr(heads, "__fspath__"):
        heads = get_heads(heads)
    return MultiHeadClassifier(
        backbone,
        heads,
        fc_layers=fc_layers,
        dropout=dropout,
        image_size=image_size,
        preprocessing=preprocessing,
        **kwargs,
    )
