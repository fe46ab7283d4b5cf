"""TF Serving's REST JSON format: request bodies to input arrays, outputs to response bodies.

Requests (``POST /v1/models/NAME[/versions/N|/labels/L]:predict``) carry ``signature_name``
(optional) and exactly one of

- ``instances`` (row format): a list with one entry per example; an entry is the value of the
  signature's only input, or an object ``{input_name: value}``;
- ``inputs`` (columnar format): the value of the only input, or ``{input_name: value}``, each
  value holding the whole batch.

Binary strings are sent as ``{"b64": "<base64>"}``; plain JSON strings are UTF-8 encoded.
Responses are ``{"predictions": [...]}`` (row format: one object of named outputs per example,
or the bare value when the signature has a single output) or ``{"outputs": ...}`` (columnar).
String outputs come back as JSON strings, except outputs whose name ends in ``_bytes`` (and
bytes that are not UTF-8), which come back as ``{"b64": ...}``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from serving.errors import invalid
from serving.limits import RequestLimits
from serving.signature import Signature, dtype_name, shape_str

REQUEST_FIELDS = ("signature_name", "instances", "inputs")
#: numpy's most dimensions: how deep a string input of unknown rank may nest.
MAX_RANK = 64


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def parse_request(payload: Any) -> tuple[str, str]:
    """Checks the body's top level; returns ``(signature_name, "instances" | "inputs")``."""
    if not isinstance(payload, dict):
        raise invalid(f"request body must be a JSON object; got a JSON {type(payload).__name__}")
    unknown = sorted(set(payload) - set(REQUEST_FIELDS))
    if unknown:
        raise invalid(f"request body has unknown field {unknown[0]!r}; fields: {REQUEST_FIELDS}")
    signature = payload.get("signature_name", "")
    if not isinstance(signature, str):
        raise invalid(f"'signature_name' must be a string; got {signature!r}")
    kinds = [k for k in ("instances", "inputs") if k in payload]
    if len(kinds) != 1:
        raise invalid(
            "request body must have exactly one of 'instances' (row format) or 'inputs' "
            f"(columnar format); got {kinds or 'neither'}"
        )
    return signature, kinds[0]


def json_to_arrays(
    payload: Mapping[str, Any], sig: Signature, where: str, limits: RequestLimits | None = None
) -> dict[str, np.ndarray]:
    """The input arrays of a predict body (checked by :func:`parse_request`).

    With ``limits``, each input's batch (its list's length) is checked before it is converted.
    """
    names = sorted(sig.inputs)
    if "instances" in payload:
        columns, field = _instance_columns(payload["instances"], sig, names, where)
    else:
        columns, field = _input_columns(payload["inputs"], sig, names, where)
    if limits is not None:
        for name, value in columns.items():
            if isinstance(value, list):
                limits.check_batch(name, len(value), where)
    return {
        n: _to_array(n, v, sig.inputs[n], where, field.format(n) if "{}" in field else field)
        for n, v in columns.items()
    }


def _instance_columns(
    instances: Any, sig: Signature, names: list[str], where: str
) -> tuple[dict[str, Any], str]:
    """Row format: ``({input: [value per example]}, field)``."""
    if not isinstance(instances, list):
        raise invalid(f"{where}: 'instances' must be a list; got {type(instances).__name__}")
    if not instances:
        raise invalid(f"{where}: 'instances' is empty; send at least one example")
    named = [isinstance(x, dict) and not _is_b64(x) for x in instances]
    if all(named):
        for i, inst in enumerate(instances):
            if set(inst) != set(names):
                raise invalid(
                    f"{where}: instances[{i}] has inputs {sorted(inst)}; signature "
                    f"{sig.name!r} expects {names}"
                )
        return {n: [inst[n] for inst in instances] for n in names}, "instances[*].{}"
    if any(named):
        i = named.index(True) if not named[0] else named.index(False)
        raise invalid(
            f"{where}: instances mixes named-input objects and bare values (see "
            f"instances[{i}]); use one form"
        )
    return _only_input(instances, sig, names, where, "instances", "each instance must be an object")


def _input_columns(
    inputs: Any, sig: Signature, names: list[str], where: str
) -> tuple[dict[str, Any], str]:
    """Columnar format: ``({input: whole batch}, field)``."""
    if isinstance(inputs, dict) and not _is_b64(inputs):
        unknown = sorted(set(inputs) - set(names))
        if unknown:
            raise invalid(
                f"{where}: input {unknown[0]!r} is not an input of signature {sig.name!r}; "
                f"expected inputs: {names}"
            )
        return dict(inputs), "inputs.{}"
    return _only_input(inputs, sig, names, where, "inputs", "'inputs' must be an object")


def _only_input(
    value: Any, sig: Signature, names: list[str], where: str, field: str, form: str
) -> tuple[dict[str, Any], str]:
    """``({the signature's only input: value}, field)``; several inputs must be named."""
    if len(names) != 1:
        raise invalid(f"{where}: signature {sig.name!r} has inputs {names}; {form} naming them")
    return {names[0]: value}, field


def _to_array(name: str, values: Any, spec: tf.TensorSpec, where: str, field: str) -> np.ndarray:
    if spec.dtype == tf.string:
        flat: list[bytes] = []
        rank = MAX_RANK if spec.shape.rank is None else spec.shape.rank
        try:
            shape = _flatten_strings(values, flat, field, name, where, rank)
        except _TooDeep as e:
            raise invalid(
                f"{where}: input {name!r}: {e.path} is a list, nested deeper than the {rank} "
                f"dimension{'s' * (rank != 1)} of the input's shape {shape_str(spec.shape)}"
            ) from None
        return np.array(flat, dtype=object).reshape(shape)
    try:
        raw = np.asarray(values)
    except ValueError as e:
        raise invalid(
            f"{where}: input {name!r} ({field}) is not a regular nested list: {e}"
        ) from None
    if raw.dtype.kind not in "biuf" or (spec.dtype.is_integer and raw.dtype.kind == "f"):
        raise invalid(
            f"{where}: input {name!r} ({field}) has dtype {dtype_name(spec.dtype)}; got values "
            f"that are not {'integers' if spec.dtype.is_integer else 'numbers'} (numpy kind "
            f"{raw.dtype.kind!r}, e.g. strings or {{'b64': ...}} objects)"
        )
    return raw.astype(spec.dtype.as_numpy_dtype)


class _TooDeep(Exception):
    """A list where the input's shape has no dimension left (``path`` names it)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


def _flatten_strings(
    value: Any, out: list[bytes], path: str, name: str, where: str, dims_left: int
) -> tuple:
    """Appends the strings of ``value`` to ``out``; returns its shape (at most ``dims_left``
    dimensions, else :class:`_TooDeep`, so no nesting depth can exhaust the stack)."""
    if isinstance(value, list):
        if dims_left == 0:
            raise _TooDeep(path)
        shapes = [
            _flatten_strings(v, out, f"{path}[{i}]", name, where, dims_left - 1)
            for i, v in enumerate(value)
        ]
        if len(set(shapes)) > 1:
            raise invalid(f"{where}: input {name!r}: {path} is ragged (element shapes {shapes})")
        return (len(value),) + (shapes[0] if shapes else ())
    if isinstance(value, str):
        out.append(value.encode("utf-8"))
        return ()
    if _is_b64(value) and isinstance(value["b64"], str):
        try:
            out.append(base64.b64decode(value["b64"], validate=True))
        except (binascii.Error, ValueError) as e:
            raise invalid(f"{where}: input {name!r}: {path}.b64 is not valid base64: {e}") from None
        return ()
    raise invalid(
        f"{where}: input {name!r}: {path} is {json_type(value)}; a DT_STRING input takes strings "
        'or {"b64": "<base64>"} objects'
    )


def json_type(value: Any) -> str:
    if isinstance(value, dict):
        return f"an object with keys {sorted(value)}"
    return f"a JSON {type(value).__name__} ({value!r:.40})"


def _jsonable(name: str, array: np.ndarray) -> Any:
    if array.dtype.kind not in ("O", "S"):
        return array.tolist()
    as_b64 = name.endswith("_bytes")

    def conv(v: Any) -> Any:
        if isinstance(v, list):
            return [conv(x) for x in v]
        if isinstance(v, bytes):
            if not as_b64:
                try:
                    return v.decode("utf-8")
                except UnicodeDecodeError:
                    pass
            return {"b64": base64.b64encode(v).decode("ascii")}
        return v

    return conv(array.tolist())


def arrays_to_json(outputs: Mapping[str, np.ndarray], row_format: bool) -> dict[str, Any]:
    """The response body for ``outputs`` (``predictions`` in row format, else ``outputs``)."""
    converted = {k: _jsonable(k, v) for k, v in outputs.items()}
    if not row_format:
        return {"outputs": next(iter(converted.values())) if len(converted) == 1 else converted}
    if len(converted) == 1:
        return {"predictions": next(iter(converted.values()))}
    size = len(next(iter(converted.values())))
    return {"predictions": [{k: v[i] for k, v in converted.items()} for i in range(size)]}
