"""Converter of the (SE-)ResNet / ResNeXt family: timm ``resnet.py`` and ``senet.py`` state dicts.

Shaped like keras-hub's ``keras_hub/src/utils/timm/convert_resnet.py``: the key mapping between
:class:`~fashion_keras.models.backbones.Backbone` variables and timm state-dict keys, loading a
state dict (:func:`load_state_dict`), exporting one (:func:`backbone_state_dict`) and telling
which backbone presets a state dict matches (:func:`describe_state_dict`,
:func:`matching_presets`).

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
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from fashion_keras.models.checkpoints.files import (
    IGNORED_SUFFIXES,
    CheckpointError,
    LoadReport,
    listings,
    shape_str,
)
from fashion_keras.models.layers import SqueezeExcite
from fashion_keras.models.presets import BACKBONE_PRESETS

#: Keys of the ImageNet classifier (timm resnet.py ``fc``, senet.py ``last_linear``).
CLASSIFIER_PREFIXES = ("fc.", "last_linear.", "classifier.", "head.fc.")

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


def _mismatch(
    backbone: keras.Model,
    state: Mapping[str, np.ndarray],
    source: str,
    missing: list[str],
    unexpected: list[str],
    mis_shaped: list[str],
) -> CheckpointError:
    """The error for a checkpoint that does not fit, with the presets it does match."""
    name = getattr(backbone, "name", type(backbone).__name__)
    layout = getattr(backbone, "layout", "timm")
    lines = [f"checkpoint {source} does not fit backbone {name!r} ({layout} layout):"]
    lines += listings(
        ("missing keys (backbone variables the checkpoint lacks)", missing),
        ("unexpected keys (no backbone variable)", unexpected),
        ("mis-shaped keys", mis_shaped),
    )
    presets = matching_presets(state)
    if presets:
        lines.append(f"  the checkpoint matches backbone(s): {', '.join(presets)}")
    elif describe_state_dict(state):
        lines.append(f"  the checkpoint's architecture: Backbone(**{describe_state_dict(state)})")
    return CheckpointError("\n".join(lines))


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
    missing = [f"{t.key} {shape_str(t.torch_shape)}" for t in targets if t.key not in state]
    ignored = sorted(
        k for k in state if k.endswith(IGNORED_SUFFIXES) or k.startswith(CLASSIFIER_PREFIXES)
    )
    unexpected = sorted(
        f"{k} {shape_str(np.shape(state[k]))}"
        for k in state
        if k not in by_key and k not in ignored
    )
    mis_shaped = []
    for t in targets:
        if t.key in state and not t.accepts(tuple(np.shape(state[t.key]))):
            mis_shaped.append(
                f"{t.key}: checkpoint {shape_str(np.shape(state[t.key]))}, "
                f"expected {shape_str(t.torch_shape)}"
            )
    if missing or unexpected or mis_shaped:
        raise _mismatch(backbone, state, source, missing, unexpected, mis_shaped)

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
