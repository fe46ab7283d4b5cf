"""Checkpoint files: state dicts from ``.safetensors`` / PyTorch files, Keras ``.weights.h5``.

``.safetensors`` needs only the ``safetensors`` package with numpy (BF16, which numpy lacks, is
read by a plain reader of the format and widened to float32); ``.pth`` / ``.pt`` / ``.bin``
need PyTorch and are read with ``torch.load(weights_only=True)`` (tensors only, never arbitrary
unpickling); a ``.weights.h5`` is a Keras file written by ``Backbone.save_weights`` (e.g. by
the converter), and a mismatch is reported array by array.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import struct
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".pth.tar", ".ckpt")
SAFETENSORS_SUFFIX = ".safetensors"
KERAS_SUFFIX = ".weights.h5"
#: Non-parameter buffers that carry no information for inference.
IGNORED_SUFFIXES = (".num_batches_tracked",)
_MAX_LISTED = 25


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the backbone (lists the keys)."""


@dataclasses.dataclass
class LoadReport:
    """What loading a checkpoint into a backbone did."""

    source: str
    loaded: int  # tensors assigned
    ignored: list[str]  # checkpoint keys deliberately skipped (classifier, num_batches_tracked)

    def __str__(self) -> str:
        ignored = [k for k in self.ignored if not k.endswith(IGNORED_SUFFIXES)]
        text = f"{self.source}: loaded {self.loaded} tensors"
        if ignored:
            text += f"; ignored the ImageNet classifier ({', '.join(ignored)})"
        return text


def listings(*sections: tuple[str, Sequence[str]]) -> list[str]:
    """Per non-empty ``(title, items)`` section, ``title (n):`` and the first items, one a
    line, for an error message."""
    out = []
    for title, items in sections:
        if items:
            shown = list(items[:_MAX_LISTED])
            more = (
                f"\n    ... and {len(items) - len(shown)} more" if len(items) > len(shown) else ""
            )
            out.append(f"  {title} ({len(items)}):\n    " + "\n    ".join(shown) + more)
    return out


def shape_str(shape: Sequence[int]) -> str:
    """``[2, 3]`` for a shape, as error messages show it."""
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


# --------------------------------------------------------------------------------------------
# State dicts
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


def save_state_dict(state: Mapping[str, np.ndarray], path: str) -> None:
    """Writes a state dict as ``.safetensors`` (readable by timm / ``safetensors.torch``)."""
    from safetensors.numpy import save_file

    save_file(
        {k: np.ascontiguousarray(v) for k, v in state.items()}, path, metadata={"format": "pt"}
    )


# --------------------------------------------------------------------------------------------
# Keras .weights.h5
# --------------------------------------------------------------------------------------------


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


def load_keras_weights(backbone: keras.Model, path: str) -> LoadReport:
    """Loads a ``Backbone.save_weights`` file; on a mismatch lists the differing arrays."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist")
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
    missing = [f"{k} {shape_str(s)}" for k, s in want.items() if k not in have]
    unexpected = [f"{k} {shape_str(s)}" for k, s in have.items() if k not in want]
    mis_shaped = [
        f"{k}: file {shape_str(have[k])}, expected {shape_str(s)}"
        for k, s in want.items()
        if k in have and have[k] != s
    ]
    lines = [
        f"Keras weights file {path} does not fit backbone {backbone.name!r} "
        f"({len(have)} arrays in the file, {len(want)} expected; Keras: {problem or skipped[0]}):"
    ]
    lines += listings(
        ("missing arrays", missing),
        ("unexpected arrays", unexpected),
        ("mis-shaped arrays", mis_shaped),
    )
    raise CheckpointError("\n".join(lines))
