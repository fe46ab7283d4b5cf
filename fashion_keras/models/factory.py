"""One call from a backbone name, a head spec and a weights source to a ready classifier."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from fashion_keras.heads import HeadSpec
from fashion_keras.models import applications
from fashion_keras.models.backbones import get_backbone
from fashion_keras.models.checkpoints import load_backbone_weights, resolve
from fashion_keras.models.classifier import MultiHeadClassifier, build_model
from fashion_keras.models.presets import BACKBONE_PRESETS, IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger("fashion_keras")

#: Input size of a model built without weights and without ``image_size``.
DEFAULT_IMAGE_SIZE = 224


def create_model(
    backbone: str = "seresnet50",
    heads: str | HeadSpec | Mapping[str, Any] = "deepfashion6",
    *,
    weights: str | os.PathLike[str] | None = None,
    image_size: int | None = None,
    fc_layers: int = 0,
    fc_units: int = 1024,
    dropout: float = 0.0,
    preprocessing: Mapping[str, Any] | None = None,
    keypoint_filters: int = 256,
    keypoint_stride: int = 4,
    regions: Sequence[str] = (),
) -> MultiHeadClassifier:
    """Builds a :class:`MultiHeadClassifier` whose backbone is loaded from ``weights`` and whose
    mean/std follow that checkpoint (like ``timm.create_model(name, pretrained=True)``).

    Args:
      backbone: a ``BACKBONE_PRESETS`` name (timm's model name, e.g. ``"seresnet50"``) or an
        ``APPLICATIONS`` name (``keras.applications``, e.g. ``"keras_densenet201"``).
      heads: a head preset name, comma list, YAML/JSON path, tuple of ``Head`` or dict form.
      weights: ``None`` (random backbone, ImageNet mean/std); ``"imagenet"`` (the backbone's
        default checkpoint, ``presets.PRETRAINED``), a timm Hugging Face id
        (``"timm/seresnet50.a1_in1k"``, ``"hf://timm/..."``) or an ``https://`` URL: fetched
        once into ``$KERAS_HOME/models``, checked, then reused offline
        (:mod:`fashion_keras.models.checkpoints.download`); or a checkpoint path
        (``.safetensors``, ``.pth``/``.pt``/``.bin``, ``.weights.h5``). Mean/std and the
        default input size come from its ``<checkpoint>.json`` / timm ``config.json``, else
        timm's default ``pretrained_cfg`` for ``backbone``. For an application backbone:
        ``"imagenet"`` is Keras' own download (into ``$KERAS_HOME/models``) or a Keras ``.h5``
        path; mean/std and the default size are the application's (``APPLICATIONS``).
      image_size: square input size; ``None``: the checkpoint's input size (224 without
        weights; an application's own default size, e.g. 299 for Inception-v3).
      fc_layers: hidden Dense layers between the pooled features and the heads.
      fc_units: width of each hidden Dense layer.
      dropout: dropout rate in [0, 1).
      preprocessing: the data pipeline's input preprocessing, kept in the model (e.g.
        ``{"bbox_margin": 0.2}``; see :class:`MultiHeadClassifier`).
      keypoint_filters, keypoint_stride: the keypoint heads' deconvolution width and heatmap
        stride (see :class:`MultiHeadClassifier`; only used when ``heads`` has keypoint heads).
      regions: the regions whose crops the model reads (see :class:`MultiHeadClassifier`).

    Raises:
      ValueError: an unknown backbone or head spec, or a bad size argument.
      CheckpointError: the checkpoint is missing, cannot be downloaded (the error names the URL
        and the path to put the file at), fails its size or SHA-256 check, cannot be read, or
        does not fit the backbone (listing the keys); no weight has changed then.
    """
    create = (
        _create_application_model
        if applications.is_application(backbone)
        else _create_timm_family_model
    )
    return create(
        backbone,
        heads,
        weights=weights,
        image_size=image_size,
        fc_layers=fc_layers,
        fc_units=fc_units,
        dropout=dropout,
        preprocessing=preprocessing,
        keypoint_filters=keypoint_filters,
        keypoint_stride=keypoint_stride,
        regions=regions,
    )


def _create_timm_family_model(
    backbone: str,
    heads: str | HeadSpec | Mapping[str, Any],
    *,
    weights: str | os.PathLike[str] | None,
    image_size: int | None,
    **kwargs: Any,
) -> MultiHeadClassifier:
    """``create_model`` for an SE-ResNet family backbone: a timm checkpoint resolved (and
    fetched) by :func:`checkpoints.resolve`, its mean/std and input size."""
    if backbone not in BACKBONE_PRESETS:  # fails before any file is looked for
        get_backbone(backbone)  # raises ValueError listing both families' names
    mean, std, path, config = IMAGENET_MEAN, IMAGENET_STD, None, None
    if weights is not None:
        path, config = resolve(weights, backbone)
        mean, std = config.mean, config.std
        if image_size is None:
            image_size = config.input_size
        elif image_size != config.input_size:
            log.info(
                "%s was trained at %d px (%s); building at %d px",
                path,
                config.input_size,
                config.source,
                image_size,
            )
    model = build_model(
        backbone,
        heads,
        image_size=DEFAULT_IMAGE_SIZE if image_size is None else image_size,
        mean=mean,
        std=std,
        **kwargs,
    )
    if path is not None:
        report = load_backbone_weights(model.backbone, path, config)
        log.info("%s (mean %s, std %s from %s)", report, mean, std, config.source)
    return model


def default_image_size(backbone: str, weights: str | os.PathLike[str] | None) -> tuple[int, str]:
    """The input size ``create_model`` builds ``backbone`` at when ``image_size`` is unset, and
    where it comes from (for ``train``'s log)."""
    if applications.is_application(backbone):
        info = applications.application_info(backbone)
        return info.default_size, f"keras.applications.{info.constructor}"
    if weights is None:
        return DEFAULT_IMAGE_SIZE, "the default size"
    _, config = resolve(weights, backbone)
    return config.input_size, config.source


def check_weights(backbone: str, weights: str | os.PathLike[str] | None) -> None:
    """Checks the ``weights`` source of ``backbone`` before training builds anything: an
    application backbone takes ``"imagenet"`` or a Keras ``.h5`` file, the SE-ResNet family
    what ``checkpoints.resolve`` finds. Raises ``ValueError`` / ``CheckpointError``."""
    if applications.is_application(backbone):
        applications.check_weights(weights, backbone)
    elif weights:
        resolve(weights, backbone)


def _create_application_model(
    backbone: str,
    heads: str | HeadSpec | Mapping[str, Any],
    *,
    weights: str | os.PathLike[str] | None,
    image_size: int | None,
    **kwargs: Any,
) -> MultiHeadClassifier:
    """``create_model`` for a ``keras.applications`` backbone: Keras' ImageNet download or a
    Keras ``.h5`` file, the application's mean/std and default input size."""
    info = applications.application_info(backbone)
    source = applications.check_weights(weights, backbone)
    size = info.default_size if image_size is None else image_size
    net = get_backbone(
        backbone,
        image_shape=(size, size, 3),
        weights="imagenet" if source == "imagenet" else None,
    )
    model = build_model(net, heads, image_size=size, mean=info.mean, std=info.std, **kwargs)
    if source == "imagenet":
        log.info("%s: Keras' ImageNet weights (%s)", backbone, info.constructor)
    elif source is not None:
        report = load_backbone_weights(model.backbone, source)
        log.info("%s (%s preprocessing)", report, info.mode)
    return model
