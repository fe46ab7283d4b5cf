"""Resolving ``--weights`` to a checkpoint and its config, and loading it into a backbone.

``--weights`` is a local file, ``imagenet``, a timm Hugging Face id or an ``https://`` URL; the
names are fetched once into the Keras cache folder and verified (:mod:`.cache`,
:mod:`.download`).
"""

from __future__ import annotations

import os

import keras

from fashion_keras.models.checkpoints.cache import checkpoint_path
from fashion_keras.models.checkpoints.convert_resnet import load_state_dict
from fashion_keras.models.checkpoints.files import (
    LoadReport,
    load_keras_weights,
    read_state_dict,
)
from fashion_keras.models.checkpoints.pretrained_config import (
    PretrainedConfig,
    read_pretrained_config,
)


def resolve(
    weights: str | os.PathLike, backbone: str, cache_dir: str | None = None
) -> tuple[str, PretrainedConfig]:
    """The checkpoint file for ``weights`` and its :class:`PretrainedConfig` for ``backbone``.

    ``weights``: a local path; ``"imagenet"`` (timm's default checkpoint of the backbone,
    ``presets.PRETRAINED``); a timm Hugging Face id (``timm/seresnet50.a1_in1k``,
    ``hf://timm/...``; its ``config.json`` gives the preprocessing); or an ``https://`` URL.
    Names are downloaded once into ``cache_dir`` (default ``$KERAS_HOME/models``), checked
    (size, SHA-256 where published, the hash prefix of a release name) and later re-checked
    there with no network request.

    Raises :class:`CheckpointError` naming the missing file, or the URL and the path to put the
    file at when it cannot be downloaded, is not found or arrives corrupt or truncated.
    """
    path = checkpoint_path(weights, backbone, cache_dir)
    return path, read_pretrained_config(path, backbone)


def load_backbone_weights(
    backbone: keras.Model, path: str | os.PathLike, config: PretrainedConfig | None = None
) -> LoadReport:
    """Loads a checkpoint file (``.safetensors``, ``.pth``/``.pt``/``.bin``, ``.weights.h5``).

    ``config`` (the checkpoint's :class:`PretrainedConfig`) tells a ``BGR`` stem to flip.
    """
    path = os.fspath(path)
    if path.endswith(".h5"):
        return load_keras_weights(backbone, path)
    space = config.input_space if config else "RGB"
    return load_state_dict(backbone, read_state_dict(path), source=path, input_space=space)
