"""ImageNet weights for the backbones from timm / PyTorch checkpoints (no network access).

Reads a timm (or Caffe-port ``senet.py``) state dict from ``.safetensors`` (the ``safetensors``
package with numpy; PyTorch is not needed), from ``.pth`` / ``.pt`` / ``.bin`` when PyTorch is
installed (``torch.load(weights_only=True)``: tensors only, never arbitrary unpickling), or a
Keras ``.weights.h5`` written by ``Backbone.save_weights`` (e.g. by this module's converter).

Mapping (every backbone variable gets exactly one checkpoint tensor; layer names are the state
dict keys with ``.`` replaced by ``_``, see :func:`torch_prefix`):

- ``Conv2D`` kernels: PyTorch ``OIHW`` (``O, I/groups, kh, kw`` for grouped convs) -> Keras
  ``HWIO`` (``kh, kw, I/groups, O``);
- ``BatchNormalization``: ``weight``/``bias``/``running_mean``/``running_var`` -> ``gamma``/
  ``beta``/``moving_mean``/``moving_variance`` (``num_batches_tracked`` is ignored);
- SE blocks: ``fc1``/``fc2`` as 1x1 convs ``(out, in, 1, 1)`` or as fully connected layers
  ``(out, in)`` (some ports use ``nn.Linear``), with biases;
- the ImageNet classifier (``fc.*`` in timm ``resnet.py``, ``last_linear.*`` in ``senet.py``)
  is ignored and reported.

A checkpoint that does not fit raises :class:`CheckpointError` listing the missing, unexpected
and mis-shaped keys (and the presets whose layout the checkpoint matches), before any variable
is changed.

Preprocessing follows the checkpoint (:func:`checkpoint_preprocessing`): a timm ``config.json``
or a ``<checkpoint>.json`` beside the file (timm's ``pretrained_cfg``), else timm's default
``pretrained_cfg`` for the backbone (:data:`PRETRAINED`).

Command line (convert once, train from the Keras file or directly from the checkpoint)::

    python -m fashion_keras.models.weights seresnet50 model.safetensors -o seresnet50.weights.h5
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import shutil
import struct
import sys
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np

from fashion_keras.models.backbones import BACKBONE_PRESETS, get_backbone
from fashion_keras.models.layers import SqueezeExcite

log = logging.getLogger("fashion_keras")

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".pth.tar", ".ckpt")
SAFETENSORS_SUFFIX = ".safetensors"
KERAS_SUFFIX = ".weights.h5"
#: Keys of the ImageNet classifier (timm resnet.py ``fc``, senet.py ``last_linear``).
CLASSIFIER_PREFIXES = ("fc.", "last_linear.", "classifier.", "head.fc.")
#: Non-parameter buffers that carry no information for inference.
IGNORED_SUFFIXES = (".num_batches_tracked",)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_MAX_LISTED = 25


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the backbone (lists the keys)."""


# --------------------------------------------------------------------------------------------
# Known checkpoints (timm's default pretrained_cfg per architecture, timm 1.0)
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PretrainedInfo:
    """timm's default ImageNet checkpoint of an architecture (tests compare it with timm)."""

    tag: str | None  # e.g. "a1_in1k"; None: timm has no ImageNet weights for it
    hf_hub_id: str | None = None  # Hugging Face repo holding model.safetensors
    url: str | None = None  # older .pth release URL (senet.py models)
    input_size: int = 224
    test_input_size: int | None = None
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def primary_file(self, arch: str) -> str | None:
        """The file name to put in the Keras cache folder for ``--weights imagenet``."""
        if self.hf_hub_id:
            return f"{arch}.{self.tag}.safetensors"
        if self.url:
            return self.url.rsplit("/", 1)[-1]
        return None

    def file_names(self, arch: str) -> list[str]:
        """File names ``--weights imagenet`` accepts in the Keras cache folder, best first."""
        names = [f"{arch}.weights.h5"]
        if self.tag:
            names += [f"{arch}.{self.tag}.safetensors", f"{arch}.{self.tag}/model.safetensors"]
        if self.url:
            names.append(self.url.rsplit("/", 1)[-1])
        if self.tag:
            names += [f"{arch}.{self.tag}.pth", f"{arch}.{self.tag}/pytorch_model.bin"]
        return names


_CADENE = "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-cadene/"
_TIMM_V01 = "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/"
_LEGACY = {"interpolation": "bilinear", "crop_pct": 0.875}

PRETRAINED: dict[str, PretrainedInfo] = {
    "resnet50": PretrainedInfo(
        "a1_in1k", "timm/resnet50.a1_in1k", test_input_size=288, crop_pct=0.95
    ),
    "seresnet50": PretrainedInfo(
        "a1_in1k", "timm/seresnet50.a1_in1k", test_input_size=288, crop_pct=0.95
    ),
    "seresnet101": PretrainedInfo(None, test_input_size=288),
    "seresnet152": PretrainedInfo(None, test_input_size=288),
    "seresnext50_32x4d": PretrainedInfo(
        "racm_in1k", "timm/seresnext50_32x4d.racm_in1k", test_input_size=288
    ),
    "seresnext101_32x4d": PretrainedInfo("gluon_in1k", "timm/seresnext101_32x4d.gluon_in1k"),
    "legacy_seresnet50": PretrainedInfo(
        "in1k", url=_CADENE + "se_resnet50-ce0d4300.pth", **_LEGACY
    ),
    "legacy_seresnet101": PretrainedInfo(
        "in1k", url=_CADENE + "se_resnet101-7e38fcc6.pth", **_LEGACY
    ),
    "legacy_seresnet152": PretrainedInfo(
        "in1k", url=_CADENE + "se_resnet152-d17c99b7.pth", **_LEGACY
    ),
    "legacy_seresnext50_32x4d": PretrainedInfo(
        "in1k", url=_TIMM_V01 + "legacy_se_resnext50_32x4d-f3651bad.pth", **_LEGACY
    ),
    "legacy_seresnext101_32x4d": PretrainedInfo(
        "in1k", url=_TIMM_V01 + "legacy_se_resnext101_32x4d-37725eac.pth", **_LEGACY
    ),
}


@dataclasses.dataclass(frozen=True)
class Preprocessing:
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


def _preprocessing_from_cfg(cfg: Mapping[str, Any], source: str) -> Preprocessing:
    """A timm ``pretrained_cfg`` (mean/std in [0, 1] units) in this package's units."""

    def triple(key: str, default: Sequence[float]) -> tuple[float, float, float]:
        value = cfg.get(key, default)
        if not isinstance(value, (list, tuple)) or len(value) != 3:
            raise CheckpointError(f"{source}: {key} = {value!r} must be a list of 3 numbers")
        return tuple(float(v) for v in value)

    input_range = cfg.get("input_range", (0, 1))
    scale = 255.0 / float(input_range[1])
    mean = tuple(m * scale for m in triple("mean", IMAGENET_MEAN))
    std = tuple(s * scale for s in triple("std", IMAGENET_STD))
    space = str(cfg.get("input_space", "RGB")).upper()
    if space not in ("RGB", "BGR"):
        raise CheckpointError(f"{source}: input_space = {space!r}; expected RGB or BGR")
    if space == "BGR":  # the values are per checkpoint channel: reverse into RGB order
        mean, std = mean[::-1], std[::-1]
    size = cfg.get("input_size", (3, 224, 224))
    size = int(size[-1]) if isinstance(size, (list, tuple)) else int(size)
    return Preprocessing(
        mean=mean,
        std=std,
        input_size=size,
        input_space=space,
        interpolation=str(cfg.get("interpolation", "bicubic")),
        crop_pct=float(cfg.get("crop_pct", 0.875)),
        source=source,
    )


def default_preprocessing(backbone: str) -> Preprocessing:
    """timm's default ``pretrained_cfg`` of ``backbone`` (ImageNet mean/std, 224 px)."""
    info = PRETRAINED.get(backbone, PretrainedInfo(None))
    cfg = dataclasses.asdict(info)
    cfg["input_size"] = (3, info.input_size, info.input_size)
    return _preprocessing_from_cfg(cfg, f"timm's pretrained_cfg for {backbone}")


def _strip_suffix(path: str) -> str:
    for suffix in (KERAS_SUFFIX, SAFETENSORS_SUFFIX, *TORCH_SUFFIXES, ".h5"):
        if path.endswith(suffix):
            return path[: -len(suffix)]
    return os.path.splitext(path)[0]


def sidecar_path(checkpoint: str) -> str:
    """``<checkpoint without suffix>.json``: the preprocessing written beside a conversion."""
    return _strip_suffix(checkpoint) + ".json"


def checkpoint_preprocessing(checkpoint: str, backbone: str) -> Preprocessing:
    """The checkpoint's preprocessing convention.

    Looks for ``<checkpoint>.json`` (written by this module's converter) or a timm
    ``config.json`` in the same folder (the Hugging Face ``timm/<model>`` layout), each holding
    timm's ``pretrained_cfg``; falls back to timm's default for ``backbone``.
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
            return _preprocessing_from_cfg(cfg, candidate)
    return default_preprocessing(backbone)


# --------------------------------------------------------------------------------------------
# Reading state dicts
# --------------------------------------------------------------------------------------------

_ST_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


def _read_safetensors_raw(path: str) -> dict[str, np.ndarray]:
    """Plain reader of the safetensors layout, for dtypes numpy lacks (BF16 -> float32)."""
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
        data = f.read()
    out = {}
    for key, meta in header.items():
        if key == "__metadata__":
            continue
        start, end = meta["data_offsets"]
        buf = data[start:end]
        if meta["dtype"] == "BF16":
            bits = np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16
            arr = bits.view(np.float32)
        elif meta["dtype"] in _ST_DTYPES:
            arr = np.frombuffer(buf, dtype=np.dtype(_ST_DTYPES[meta["dtype"]]).newbyteorder("<"))
        else:
            raise CheckpointError(f"{path}: tensor {key!r} has unsupported dtype {meta['dtype']}")
        out[key] = arr.reshape(meta["shape"]).copy()
    return out


def _read_torch(path: str) -> dict[str, Any]:
    try:
        import torch
    except ImportError as e:
        raise CheckpointError(
            f"{path}: reading a PyTorch checkpoint needs PyTorch (pip install torch), or convert "
            "it to .safetensors where PyTorch is installed "
            "(safetensors.torch.save_file(torch.load(path, weights_only=True), out))"
        ) from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for non-tensor objects, zip errors, ...
        raise CheckpointError(
            f"{path}: cannot load it as a weights-only PyTorch checkpoint (arbitrary pickled "
            f"objects are refused): {type(e).__name__}: {str(e).splitlines()[0][:300]}"
        ) from e
    return obj


def _unwrap(obj: Any, path: str) -> dict[str, Any]:
    """The state dict inside common checkpoint wrappers ({'state_dict': ...}, {'model': ...})."""
    for key in ("state_dict", "model", "model_state_dict", "module"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path}: holds no state dict (a mapping of names to tensors)")
    return dict(obj)


def _to_numpy(value: Any, key: str, path: str) -> np.ndarray:
    if hasattr(value, "detach"):  # torch.Tensor
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        value = value.numpy()
    if not isinstance(value, np.ndarray):
        raise CheckpointError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")
    if value.dtype.name in ("bfloat16", "float16", "float64"):
        value = value.astype(np.float32)
    return value


def read_state_dict(path: str) -> dict[str, np.ndarray]:
    """Reads a PyTorch/timm state dict as numpy arrays (``module.`` prefixes stripped).

    ``.safetensors`` needs only the ``safetensors`` package; ``.pth``/``.pt``/``.bin`` need
    PyTorch and are read with ``weights_only=True``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist")
    if path.endswith(SAFETENSORS_SUFFIX):
        from safetensors.numpy import load_file

        try:
            raw: dict[str, Any] = dict(load_file(path))
        except TypeError:  # bfloat16 and other dtypes numpy does not know
            raw = _read_safetensors_raw(path)
        except Exception as e:
            raise CheckpointError(f"{path}: not a readable safetensors file: {e}") from e
    elif path.endswith(TORCH_SUFFIXES):
        raw = _unwrap(_read_torch(path), path)
    else:
        raise CheckpointError(
            f"{path}: unknown checkpoint type; expected {SAFETENSORS_SUFFIX}, "
            f"{', '.join(TORCH_SUFFIXES)} or {KERAS_SUFFIX}"
        )
    state = {}
    for key, value in raw.items():
        key = key[len("module.") :] if key.startswith("module.") else key
        state[key] = _to_numpy(value, key, path)
    return state


# --------------------------------------------------------------------------------------------
# Keras layer <-> state dict key mapping
# --------------------------------------------------------------------------------------------

_BLOCK = re.compile(r"^(layer\d+)_(\d+)_(.+)$")


def torch_prefix(layer_name: str) -> str:
    """The state-dict prefix of a backbone layer: ``layer1_0_downsample_0`` ->
    ``layer1.0.downsample.0``, ``layer0_conv1`` -> ``layer0.conv1``, ``conv1`` -> ``conv1``."""
    m = _BLOCK.match(layer_name)
    if m:
        rest = re.sub(r"^downsample_(\d+)$", r"downsample.\1", m.group(3))
        return f"{m.group(1)}.{m.group(2)}.{rest}"
    if layer_name.startswith("layer0_"):
        return "layer0." + layer_name[len("layer0_") :]
    return layer_name


@dataclasses.dataclass(frozen=True)
class _Target:
    """One backbone variable and the checkpoint tensor that feeds it."""

    key: str  # state-dict key
    variable: Any  # keras.Variable
    torch_shape: tuple[int, ...]  # the shape the checkpoint must have (PyTorch layout)
    kind: str  # "conv", "se", "vector"

    def to_keras(self, value: np.ndarray) -> np.ndarray:
        if self.kind == "conv":  # OIHW -> HWIO
            return np.transpose(value, (2, 3, 1, 0))
        if self.kind == "se" and value.ndim == 2:  # nn.Linear (out, in) -> 1x1 conv
            return value.T[None, None]
        if self.kind == "se":
            return np.transpose(value, (2, 3, 1, 0))
        return value

    def accepts(self, shape: tuple[int, ...]) -> bool:
        if shape == self.torch_shape:
            return True
        # an SE fully connected layer stored as nn.Linear: (out, in) for (out, in, 1, 1)
        return self.kind == "se" and shape == self.torch_shape[:2]

    def to_torch(self) -> np.ndarray:
        value = keras.ops.convert_to_numpy(self.variable)
        if self.kind in ("conv", "se"):
            return np.ascontiguousarray(np.transpose(value, (3, 2, 0, 1)))
        return value


def _conv_targets(conv: keras.layers.Conv2D, prefix: str, kind: str) -> list[_Target]:
    kh, kw, cin, cout = (int(d) for d in conv.kernel.shape)
    out = [_Target(f"{prefix}.weight", conv.kernel, (cout, cin, kh, kw), kind)]
    if conv.use_bias:
        out.append(_Target(f"{prefix}.bias", conv.bias, (cout,), "vector"))
    return out


def _targets(backbone: keras.Model) -> list[_Target]:
    """Every backbone variable with its state-dict key (raises on an unmapped layer type)."""
    targets: list[_Target] = []
    for layer in backbone.layers:
        if not layer.weights:
            continue
        prefix = torch_prefix(layer.name)
        if isinstance(layer, SqueezeExcite):
            targets += _conv_targets(layer.fc1, f"{prefix}.fc1", "se")
            targets += _conv_targets(layer.fc2, f"{prefix}.fc2", "se")
        elif isinstance(layer, keras.layers.Conv2D):
            targets += _conv_targets(layer, prefix, "conv")
        elif isinstance(layer, keras.layers.BatchNormalization):
            n = (int(layer.gamma.shape[0]),)
            for name, var in (
                ("weight", layer.gamma),
                ("bias", layer.beta),
                ("running_mean", layer.moving_mean),
                ("running_var", layer.moving_variance),
            ):
                targets.append(_Target(f"{prefix}.{name}", var, n, "vector"))
        else:
            raise TypeError(
                f"layer {layer.name!r} ({type(layer).__name__}) has weights but no state-dict "
                "mapping"
            )
    mapped = {id(t.variable) for t in targets}
    unmapped = [v.path for v in backbone.weights if id(v) not in mapped]
    if unmapped:
        raise TypeError(f"backbone variables without a state-dict key: {unmapped}")
    return targets


def expected_keys(backbone: keras.Model) -> dict[str, tuple[int, ...]]:
    """The state-dict keys (PyTorch shapes) a checkpoint for ``backbone`` must hold."""
    return {t.key: t.torch_shape for t in _targets(backbone)}


def backbone_state_dict(backbone: keras.Model) -> dict[str, np.ndarray]:
    """The backbone's weights as a timm state dict (PyTorch layouts, ``num_batches_tracked``
    included so timm's strict ``load_state_dict`` accepts it; no classifier)."""
    state: dict[str, np.ndarray] = {}
    for t in _targets(backbone):
        state[t.key] = t.to_torch().astype(np.float32)
        if t.key.endswith(".running_var"):
            state[t.key[: -len("running_var")] + "num_batches_tracked"] = np.array(0, np.int64)
    return state


def save_state_dict(state: Mapping[str, np.ndarray], path: str) -> None:
    """Writes a state dict as ``.safetensors`` (readable by timm / ``safetensors.torch``)."""
    from safetensors.numpy import save_file

    save_file(
        {k: np.ascontiguousarray(v) for k, v in state.items()}, path, metadata={"format": "pt"}
    )


# --------------------------------------------------------------------------------------------
# Architecture of a state dict (for the error hint)
# --------------------------------------------------------------------------------------------


def describe_state_dict(state: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Backbone arguments a (SE-)ResNet(Xt) state dict implies (``{}`` if it is not one)."""
    layout = "legacy" if "layer0.conv1.weight" in state else "timm"
    stem = state.get("layer0.conv1.weight", state.get("conv1.weight"))
    if stem is None or stem.ndim != 4:
        return {}
    blocks, widths = [], []
    s = 1
    while f"layer{s}.0.conv1.weight" in state:
        n = 0
        while f"layer{s}.{n}.conv1.weight" in state:
            n += 1
        conv3 = state.get(f"layer{s}.0.conv3.weight")
        if conv3 is None:
            return {}
        blocks.append(n)
        widths.append(int(conv3.shape[0]) // 4)
        s += 1
    conv2 = state.get("layer1.0.conv2.weight")
    if not blocks or conv2 is None or conv2.ndim != 4:
        return {}
    groups = max(1, int(conv2.shape[0]) // max(1, int(conv2.shape[1])))
    base_width = int(round(int(conv2.shape[0]) / groups * 64 / widths[0]))
    se_key = "se_module" if layout == "legacy" else "se"
    return {
        "stage_blocks": tuple(blocks),
        "stage_widths": tuple(widths),
        "groups": groups,
        "base_width": base_width if groups > 1 else 64,
        "se": f"layer1.0.{se_key}.fc1.weight" in state,
        "stem_width": int(stem.shape[0]),
        "layout": layout,
    }


def matching_presets(state: Mapping[str, np.ndarray]) -> list[str]:
    """``BACKBONE_PRESETS`` names whose architecture the state dict has."""
    arch = describe_state_dict(state)
    if not arch:
        return []
    defaults = {"groups": 1, "base_width": 64, "se": False, "stem_width": 64, "layout": "timm"}
    names = []
    for name, preset in BACKBONE_PRESETS.items():
        cfg = {**defaults, **preset}
        if all(
            tuple(cfg[k]) == v if isinstance(v, tuple) else cfg[k] == v for k, v in arch.items()
        ):
            names.append(name)
    return names


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class LoadReport:
    """What :func:`load_state_dict` did."""

    source: str
    loaded: int  # tensors assigned
    ignored: list[str]  # checkpoint keys deliberately skipped (classifier, num_batches_tracked)

    def __str__(self) -> str:
        ignored = [k for k in self.ignored if not k.endswith(IGNORED_SUFFIXES)]
        text = f"{self.source}: loaded {self.loaded} tensors"
        if ignored:
            text += f"; ignored the ImageNet classifier ({', '.join(ignored)})"
        return text


def _listing(title: str, items: Sequence[str]) -> str:
    shown = list(items[:_MAX_LISTED])
    more = f"\n    ... and {len(items) - len(shown)} more" if len(items) > len(shown) else ""
    return f"  {title} ({len(items)}):\n    " + "\n    ".join(shown) + more


def _shape(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


def load_state_dict(
    backbone: keras.Model,
    state: Mapping[str, np.ndarray],
    source: str = "<state dict>",
    input_space: str = "RGB",
) -> LoadReport:
    """Assigns a timm state dict to ``backbone`` (all-or-nothing).

    Raises :class:`CheckpointError` naming ``source`` with every missing, unexpected and
    mis-shaped key, plus the presets that match the checkpoint. ``input_space="BGR"`` flips the
    stem conv's input channels so the model takes RGB images.
    """
    targets = _targets(backbone)
    state = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}
    by_key = {t.key: t for t in targets}
    missing = [f"{t.key} {_shape(t.torch_shape)}" for t in targets if t.key not in state]
    ignored = sorted(
        k for k in state if k.endswith(IGNORED_SUFFIXES) or k.startswith(CLASSIFIER_PREFIXES)
    )
    unexpected = sorted(
        f"{k} {_shape(np.shape(state[k]))}" for k in state if k not in by_key and k not in ignored
    )
    mis_shaped = []
    for t in targets:
        if t.key in state and not t.accepts(tuple(np.shape(state[t.key]))):
            mis_shaped.append(
                f"{t.key}: checkpoint {_shape(np.shape(state[t.key]))}, "
                f"expected {_shape(t.torch_shape)}"
            )
    if missing or unexpected or mis_shaped:
        name = getattr(backbone, "name", type(backbone).__name__)
        layout = getattr(backbone, "layout", "timm")
        lines = [f"checkpoint {source} does not fit backbone {name!r} ({layout} layout):"]
        if missing:
            lines.append(
                _listing("missing keys (backbone variables the checkpoint lacks)", missing)
            )
        if unexpected:
            lines.append(_listing("unexpected keys (no backbone variable)", unexpected))
        if mis_shaped:
            lines.append(_listing("mis-shaped keys", mis_shaped))
        presets = matching_presets(state)
        if presets:
            lines.append(f"  the checkpoint matches backbone(s): {', '.join(presets)}")
        elif describe_state_dict(state):
            lines.append(
                f"  the checkpoint's architecture: Backbone(**{describe_state_dict(state)})"
            )
        raise CheckpointError("\n".join(lines))

    values = []
    for t in targets:
        value = t.to_keras(np.asarray(state[t.key], dtype=np.float32))
        values.append((t, value))
    if input_space.upper() == "BGR":
        stem = values[0]
        if stem[0].kind != "conv" or stem[1].shape[2] != 3:
            raise CheckpointError(
                f"{source}: input_space BGR but the first layer is not an RGB conv"
            )
        values[0] = (stem[0], stem[1][:, :, ::-1, :].copy())
    for t, value in values:
        t.variable.assign(value)
    return LoadReport(source, len(values), ignored)


def _h5_arrays(path: str) -> dict[str, tuple[int, ...]]:
    import h5py

    arrays: dict[str, tuple[int, ...]] = {}
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, obj: (
                arrays.__setitem__(name, tuple(obj.shape))
                if isinstance(obj, h5py.Dataset)
                else None
            )
        )
    return arrays


def _load_keras_weights(backbone: keras.Model, path: str) -> LoadReport:
    """Loads a ``Backbone.save_weights`` file; on a mismatch lists the differing arrays."""
    problem = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            backbone.load_weights(path)
        except (ValueError, KeyError, OSError) as e:
            problem = str(e).splitlines()[0]
    skipped = [
        str(w.message)
        for w in caught
        if "could not be loaded" in str(w.message) or "Skipping" in str(w.message)
    ]
    if problem is None and not skipped:
        return LoadReport(path, len(backbone.weights), [])
    # Compare the file with what this backbone writes, array by array.
    tmp = tempfile.mkdtemp(prefix="fashion_keras_h5_")
    try:
        template = os.path.join(tmp, "template.weights.h5")
        backbone.save_weights(template)
        want, have = _h5_arrays(template), _h5_arrays(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    missing = [f"{k} {_shape(s)}" for k, s in want.items() if k not in have]
    unexpected = [f"{k} {_shape(s)}" for k, s in have.items() if k not in want]
    mis_shaped = [
        f"{k}: file {_shape(have[k])}, expected {_shape(s)}"
        for k, s in want.items()
        if k in have and have[k] != s
    ]
    lines = [
        f"Keras weights file {path} does not fit backbone {backbone.name!r} "
        f"({len(have)} arrays in the file, {len(want)} expected; Keras: {problem or skipped[0]}):"
    ]
    if missing:
        lines.append(_listing("missing arrays", missing))
    if unexpected:
        lines.append(_listing("unexpected arrays", unexpected))
    if mis_shaped:
        lines.append(_listing("mis-shaped arrays", mis_shaped))
    raise CheckpointError("\n".join(lines))


def load_backbone_weights(
    backbone: keras.Model, path: str, preprocessing: Preprocessing | None = None
) -> LoadReport:
    """Loads a checkpoint file (``.safetensors``, ``.pth``/``.pt``/``.bin``, ``.weights.h5``)."""
    path = os.fspath(path)
    if path.endswith(".h5"):
        if not os.path.isfile(path):
            raise CheckpointError(f"checkpoint {path!r} does not exist")
        return _load_keras_weights(backbone, path)
    space = preprocessing.input_space if preprocessing else "RGB"
    return load_state_dict(backbone, read_state_dict(path), source=path, input_space=space)


# --------------------------------------------------------------------------------------------
# --weights imagenet: the Keras cache folder
# --------------------------------------------------------------------------------------------


def keras_cache_dir() -> str:
    """Where Keras keeps downloaded weights: ``$KERAS_HOME/models`` or ``~/.keras/models``."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "models")


def resolve_weights(spec: str, backbone: str, cache_dir: str | None = None) -> str:
    """The checkpoint file for ``--weights spec``: a path, or ``imagenet`` (the Keras cache).

    Nothing is downloaded: for ``imagenet`` the error says which files were looked for.
    """
    if spec != "imagenet":
        path = os.path.expanduser(spec)
        if not os.path.isfile(path):
            raise CheckpointError(f"--weights {spec!r}: no such file")
        return path
    cache_dir = cache_dir or keras_cache_dir()
    info = PRETRAINED.get(backbone)
    if info is None or (info.tag is None and not info.url):
        alternatives = [n for n, i in PRETRAINED.items() if i.tag and n.endswith(backbone)]
        hint = f"; use {alternatives[0]} instead" if alternatives else ""
        extra = [os.path.join(cache_dir, f"{backbone}.weights.h5")]
        if os.path.isfile(extra[0]):
            return extra[0]
        raise CheckpointError(
            f"--weights imagenet: timm publishes no ImageNet weights for backbone {backbone!r}"
            f"{hint} (a converted {extra[0]} would be used if present)"
        )
    candidates = [os.path.join(cache_dir, name) for name in info.file_names(backbone)]
    for path in candidates:
        if os.path.isfile(path):
            return path
    origin = (
        f"timm's model.safetensors from the Hugging Face repo {info.hf_hub_id}"
        if info.hf_hub_id
        else f"the release file {info.url}"
    )
    primary = os.path.join(cache_dir, info.primary_file(backbone) or "")
    raise CheckpointError(
        f"--weights imagenet: no ImageNet checkpoint for {backbone!r} in {cache_dir} (nothing is "
        f"downloaded). Expected {primary} ({origin}); also accepted: "
        f"{', '.join(c for c in candidates if c != primary)}. Copy the file there, or pass "
        "--weights PATH."
    )


# --------------------------------------------------------------------------------------------
# Command line: convert a checkpoint to a Keras .weights.h5 (+ preprocessing sidecar)
# --------------------------------------------------------------------------------------------


def convert(
    backbone_name: str, checkpoint: str, output: str, image_size: int | None = None
) -> tuple[LoadReport, Preprocessing]:
    """Converts ``checkpoint`` for ``backbone_name`` to ``output`` (``.weights.h5``) and writes
    the checkpoint's preprocessing beside it as ``<output>.json`` (timm ``pretrained_cfg``)."""
    if not output.endswith(KERAS_SUFFIX):
        raise CheckpointError(f"output {output!r} must end with {KERAS_SUFFIX}")
    pre = checkpoint_preprocessing(checkpoint, backbone_name)
    size = image_size or pre.input_size
    backbone = get_backbone(backbone_name, image_shape=(size, size, 3))
    report = load_backbone_weights(backbone, checkpoint, pre)
    backbone.save_weights(output)
    scale = 1 / 255.0
    cfg = {
        "architecture": backbone_name,
        "source": os.path.abspath(checkpoint),
        "pretrained_cfg": {
            # mean/std back in timm's [0, 1] units; a BGR stem was flipped, so RGB now
            "mean": [m * scale for m in pre.mean],
            "std": [s * scale for s in pre.std],
            "input_size": [3, pre.input_size, pre.input_size],
            "input_space": "RGB",
            "interpolation": pre.interpolation,
            "crop_pct": pre.crop_pct,
        },
    }
    with open(sidecar_path(output), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    return report, pre


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fashion_keras.models.weights",
        description="Convert a timm/PyTorch checkpoint (.safetensors, .pth) to a Keras "
        ".weights.h5 for a backbone, checking every key and shape.",
    )
    parser.add_argument("backbone", choices=sorted(BACKBONE_PRESETS), help="Backbone preset.")
    parser.add_argument("checkpoint", help="The timm/PyTorch checkpoint file.")
    parser.add_argument(
        "-o", "--output", default=None, help="Output .weights.h5 (default: <backbone>.weights.h5)."
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    output = args.output or f"{args.backbone}{KERAS_SUFFIX}"
    try:
        report, pre = convert(args.backbone, args.checkpoint, output)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(report)
    print(
        f"wrote {output} and {sidecar_path(output)} (preprocessing from {pre.source}: mean "
        f"{[round(m, 3) for m in pre.mean]}, std {[round(s, 3) for s in pre.std]} in 0-255 "
        f"units, {pre.input_size} px, {pre.interpolation})"
    )
    print(
        f"train from it: python -m fashion_keras.train --backbone {args.backbone} --weights {output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
