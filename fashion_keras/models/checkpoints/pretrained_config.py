"""A checkpoint's input convention (timm's ``pretrained_cfg``) in this package's units.

:func:`read_pretrained_config` looks for a ``<checkpoint>.json`` (written by the converter) or a
timm ``config.json`` beside the checkpoint (the Hugging Face ``timm/<model>`` layout), each
holding timm's ``pretrained_cfg``; else it takes timm's default for the backbone
(``presets.PRETRAINED``). timm's ``mean``/``std`` are in 0-1 units (``input_range``); they are
converted here, where the configs are read and written, to the 0-255 units of the model.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from fashion_keras.models.checkpoints.files import (
    KERAS_SUFFIX,
    SAFETENSORS_SUFFIX,
    TORCH_SUFFIXES,
    CheckpointError,
)
from fashion_keras.models.presets import PRETRAINED, PretrainedInfo

log = logging.getLogger("fashion_keras")
#: timm's defaults (ImageNet mean/std in timm's 0-1 units) for keys a config leaves out.
_TIMM_DEFAULT = PretrainedInfo(None)


@dataclasses.dataclass(frozen=True)
class PretrainedConfig:
    """How images must be prepared for a checkpoint, in this package's units.

    ``mean``/``std`` are RGB and in 0-255 units (the model's ``ImageNormalization``);
    ``input_space`` is the channel order the checkpoint's first conv was trained on (a ``BGR``
    stem is flipped on import so the Keras model always takes RGB).
    """

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: int
    input_space: str = "RGB"
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    source: str = "default"

    @classmethod
    def from_timm_cfg(cls, cfg: Mapping[str, Any], source: str) -> PretrainedConfig:
        """A timm ``pretrained_cfg`` (mean/std in ``input_range`` units, default 0-1)."""

        def triple(key: str, default: Sequence[float]) -> tuple[float, float, float]:
            value = cfg.get(key, default)
            if not isinstance(value, (list, tuple)) or len(value) != 3:
                raise CheckpointError(f"{source}: {key} = {value!r} must be a list of 3 numbers")
            return tuple(float(v) for v in value)

        input_range = cfg.get("input_range", (0, 1))
        scale = 255.0 / float(input_range[1])
        mean = tuple(m * scale for m in triple("mean", _TIMM_DEFAULT.mean))
        std = tuple(s * scale for s in triple("std", _TIMM_DEFAULT.std))
        space = str(cfg.get("input_space", "RGB")).upper()
        if space not in ("RGB", "BGR"):
            raise CheckpointError(f"{source}: input_space = {space!r}; expected RGB or BGR")
        if space == "BGR":  # the values are per checkpoint channel: reverse into RGB order
            mean, std = mean[::-1], std[::-1]
        size = cfg.get("input_size", (3, 224, 224))
        size = int(size[-1]) if isinstance(size, (list, tuple)) else int(size)
        return cls(
            mean=mean,
            std=std,
            input_size=size,
            input_space=space,
            interpolation=str(cfg.get("interpolation", "bicubic")),
            crop_pct=float(cfg.get("crop_pct", 0.875)),
            source=source,
        )

    def to_timm_cfg(self) -> dict[str, Any]:
        """The timm ``pretrained_cfg`` of this config (mean/std back in timm's 0-1 units)."""
        return {
            "mean": [m / 255.0 for m in self.mean],
            "std": [s / 255.0 for s in self.std],
            "input_size": [3, self.input_size, self.input_size],
            "input_space": self.input_space,
            "interpolation": self.interpolation,
            "crop_pct": self.crop_pct,
        }


def default_pretrained_config(backbone: str) -> PretrainedConfig:
    """timm's default ``pretrained_cfg`` of ``backbone`` (ImageNet mean/std, 224 px)."""
    info = PRETRAINED.get(backbone, _TIMM_DEFAULT)
    cfg = dataclasses.asdict(info)
    cfg["input_size"] = (3, info.input_size, info.input_size)
    return PretrainedConfig.from_timm_cfg(cfg, f"timm's pretrained_cfg for {backbone}")


def _strip_suffix(path: str) -> str:
    for suffix in (KERAS_SUFFIX, SAFETENSORS_SUFFIX, *TORCH_SUFFIXES, ".h5"):
        if path.endswith(suffix):
            return path[: -len(suffix)]
    return os.path.splitext(path)[0]


def sidecar_path(checkpoint: str) -> str:
    """``<checkpoint without suffix>.json``: the config written beside a conversion."""
    return _strip_suffix(checkpoint) + ".json"


def read_pretrained_config(checkpoint: str, backbone: str) -> PretrainedConfig:
    """The checkpoint's input convention.

    Looks for ``<checkpoint>.json`` (written by the converter) or a timm ``config.json`` in the
    same folder (the Hugging Face ``timm/<model>`` layout), each holding timm's
    ``pretrained_cfg``; falls back to timm's default for ``backbone``.
    """
    for candidate in (
        sidecar_path(checkpoint),
        os.path.join(os.path.dirname(checkpoint), "config.json"),
    ):
        if not os.path.isfile(candidate) or os.path.abspath(candidate) == os.path.abspath(
            checkpoint
        ):
            continue
        try:
            with open(candidate, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{candidate}: cannot read the preprocessing config: {e}") from e
        cfg = data.get("pretrained_cfg") if isinstance(data, dict) else None
        if isinstance(cfg, dict):
            arch = data.get("architecture")
            if arch and arch != backbone:
                log.warning(
                    "%s describes architecture %r, the backbone is %r", candidate, arch, backbone
                )
            return PretrainedConfig.from_timm_cfg(cfg, candidate)
    return default_pretrained_config(backbone)
