"""Pretrained weights for the backbones from timm / PyTorch checkpoints, local or fetched.

- :mod:`.files`: reading checkpoint files (``.safetensors`` incl. BF16, weights-only PyTorch
  ``.pth``/``.pt``/``.bin``, Keras ``.weights.h5``) and writing ``.safetensors``;
- :mod:`.convert_resnet`: the converter of the (SE-)ResNet / ResNeXt family (timm ``resnet.py``
  and ``senet.py`` layouts): key mapping, loading, matching presets;
- :mod:`.pretrained_config`: the checkpoint's input convention (:class:`PretrainedConfig`);
- :mod:`.cache`: ``--weights`` -> a file (a path, or a name in the Keras cache folder);
- :mod:`.download`: fetching ``imagenet`` / timm ids / URLs into the cache, verified;
- :mod:`.loading`: :func:`resolve` (``--weights`` -> file and config) and
  :func:`load_backbone_weights`;
- :mod:`.cli`: ``python -m fashion_keras.models.checkpoints BACKBONE CHECKPOINT -o OUT``.
"""

from fashion_keras.models.checkpoints.cache import checkpoint_path, keras_cache_dir
from fashion_keras.models.checkpoints.cli import convert
from fashion_keras.models.checkpoints.convert_resnet import (
    backbone_state_dict,
    describe_state_dict,
    expected_keys,
    load_state_dict,
    matching_presets,
    torch_prefix,
)
from fashion_keras.models.checkpoints.download import RemoteCheckpoint, fetch, remote_checkpoint
from fashion_keras.models.checkpoints.files import (
    CheckpointError,
    LoadReport,
    read_state_dict,
    save_state_dict,
)
from fashion_keras.models.checkpoints.loading import load_backbone_weights, resolve
from fashion_keras.models.checkpoints.pretrained_config import (
    PretrainedConfig,
    default_pretrained_config,
    read_pretrained_config,
    sidecar_path,
)

__all__ = [
    "CheckpointError",
    "LoadReport",
    "PretrainedConfig",
    "RemoteCheckpoint",
    "backbone_state_dict",
    "checkpoint_path",
    "convert",
    "default_pretrained_config",
    "describe_state_dict",
    "expected_keys",
    "fetch",
    "keras_cache_dir",
    "load_backbone_weights",
    "load_state_dict",
    "matching_presets",
    "read_pretrained_config",
    "read_state_dict",
    "remote_checkpoint",
    "resolve",
    "save_state_dict",
    "sidecar_path",
    "torch_prefix",
]
