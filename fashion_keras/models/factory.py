"""One call from a backbone name, a head spec and a weights source to a ready classifier."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from fashion_keras.heads import HeadSpec
from fashion_keras.models.checkpoints import load_backbone_weights, resolve
from fashion_keras.models.classifier import MultiHeadClassifier, build_model
from fashion_keras.models.presets import IMAGENET_MEAN, IMAGENET_STD, backbone_preset

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
) -> MultiHeadClassifier:
    """Builds a :class:`MultiHeadClassifier` whose backbone is loaded from ``weights`` and whose
    mean/std follow that checkpoint (like ``timm.create_model(name, pretrained=True)``).

    Args:
      backbone: a ``BACKBONE_PRESETS`` name (timm's model name, e.g. ``"seresnet50"``).
      heads: a head preset name, comma list, YAML/JSON path, tuple of ``Head`` or dict form.
      weights: ``None`` (random backbone, ImageNet mean/std); ``"imagenet"`` (timm's checkpoint
        for ``backbone`` in the Keras cache folder, nothing is downloaded); or a checkpoint
        path (``.safetensors``, ``.pth``/``.pt``/``.bin``, ``.weights.h5``). Mean/std and
        the default input size come from its ``<checkpoint>.json`` / timm ``config.json``, else
        timm's default ``pretrained_cfg`` for ``backbone``.
      image_size: square input size; ``None``: the checkpoint's input size (224 without
        weights).
      fc_layers: hidden Dense layers between the pooled features and the heads.
      fc_units: width of each hidden Dense layer.
      dropout: dropout rate in [0, 1).
      preprocessing: the data pipeline's input preprocessing, kept in the model (e.g.
        ``{"bbox_margin": 0.2}``; see :class:`MultiHeadClassifier`).

    Raises:
      ValueError: an unknown backbone or head spec, or a bad size argument.
      CheckpointError: the checkpoint is missing (the error names the file expected), cannot be
        read, or does not fit the backbone (listing the keys); no weight has changed then.
    """
    backbone_preset(backbone)  # an unknown name fails before any file is looked for
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
        fc_layers=fc_layers,
        fc_units=fc_units,
        dropout=dropout,
        mean=mean,
        std=std,
        preprocessing=preprocessing,
    )
    if path is not None:
        report = load_backbone_weights(model.backbone, path, config)
        log.info("%s (mean %s, std %s from %s)", report, mean, std, config.source)
    return model
