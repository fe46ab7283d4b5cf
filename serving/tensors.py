"""``TensorProto`` <-> numpy for the gRPC API: request tensors checked against the signature
before they are built."""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

from serving.errors import invalid
from serving.limits import RequestLimits
from serving.signature import Signature, dtype_name, shape_str

#: dtype -> (the TensorProto field holding its values, numbers per element).
_VALUE_FIELDS = {
    tf.float16: ("half_val", 1),
    tf.bfloat16: ("half_val", 1),
    tf.float32: ("float_val", 1),
    tf.float64: ("double_val", 1),
    **{t: ("int_val", 1) for t in (tf.int32, tf.int16, tf.int8, tf.uint8, tf.uint16)},
    tf.int64: ("int64_val", 1),
    tf.uint32: ("uint32_val", 1),
    tf.uint64: ("uint64_val", 1),
    tf.complex64: ("scomplex_val", 2),
    tf.complex128: ("dcomplex_val", 2),
    tf.bool: ("bool_val", 1),
    tf.string: ("string_val", 1),
}


def tensor_to_array(
    name: str,
    proto: tensor_pb2.TensorProto,
    sig: Signature,
    where: str,
    limits: RequestLimits | None = None,
) -> np.ndarray:
    """A request ``TensorProto`` as a numpy array, checked against the signature first.

    The dtype, the shape (and, with ``limits``, the batch cap) are checked from the proto's
    header, and the values it carries against that shape, before the array is built: a few
    bytes claiming a huge shape allocate nothing.
    """
    if name not in sig.inputs:
        raise invalid(
            f"{where}: input {name!r} is not an input of signature {sig.name!r}; expected "
            f"inputs: {sorted(sig.inputs)}"
        )
    expected = sig.inputs[name].dtype
    if proto.dtype != expected.as_datatype_enum:
        raise invalid(
            f"{where}: input {name!r} has dtype {dtype_name(proto.dtype)}; signature "
            f"{sig.name!r} expects {dtype_name(expected)}"
        )
    shape = _claimed_shape(name, proto, where)
    sig.check_shape(name, shape, where)
    if limits is not None and shape:
        limits.check_batch(name, shape[0], where)
    _check_values(name, proto, shape, sig, where)
    try:
        return tf.make_ndarray(proto)
    except (TypeError, ValueError) as e:
        raise invalid(f"{where}: input {name!r} is a malformed TensorProto: {e}") from None


def _claimed_shape(name: str, proto: tensor_pb2.TensorProto, where: str) -> list[int]:
    dims = [d.size for d in proto.tensor_shape.dim]
    if proto.tensor_shape.unknown_rank or any(d < 0 for d in dims):
        raise invalid(
            f"{where}: input {name!r} is a malformed TensorProto: tensor_shape {dims} "
            f"(unknown_rank={proto.tensor_shape.unknown_rank}) is not a concrete shape"
        )
    return dims


def _check_values(
    name: str, proto: tensor_pb2.TensorProto, shape: list[int], sig: Signature, where: str
) -> None:
    """The values ``proto`` carries must match its shape's element count.

    TensorFlow repeats the last value when fewer are sent (``make_tensor_proto(0.0,
    shape=...)``); that fill is accepted only where the signature fixes every non-batch
    dimension, so the (capped) batch size bounds it.
    """
    elements = math.prod(shape)
    dtype = tf.as_dtype(proto.dtype)
    if proto.tensor_content:
        needed = elements * dtype.size
        if dtype == tf.string or len(proto.tensor_content) != needed:
            raise invalid(
                f"{where}: input {name!r} is a malformed TensorProto: tensor_content holds "
                f"{len(proto.tensor_content)} bytes; shape {shape} of {dtype_name(dtype)} "
                f"needs {needed}"
            )
        return
    field, per_element = _VALUE_FIELDS.get(dtype, (None, 1))
    sent = len(getattr(proto, field)) // per_element if field else 0
    if sent > elements:
        raise invalid(
            f"{where}: input {name!r} is a malformed TensorProto: {sent} values for shape "
            f"{shape} ({elements} elements)"
        )
    if sent < elements and not sig.fixes_example_size(name):
        raise invalid(
            f"{where}: input {name!r} sends {sent} value{'s' * (sent != 1)} for shape {shape} "
            f"({elements} elements); signature {sig.name!r} expects "
            f"{shape_str(sig.inputs[name].shape)}, whose free dimensions the server does not "
            "fill: send every value"
        )


def array_to_tensor_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """A numpy array as a ``TensorProto`` (what ``tf.make_tensor_proto`` gives, built faster:
    numbers as ``tensor_content`` bytes, strings as ``string_val``)."""
    proto = tensor_pb2.TensorProto()
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    if array.dtype.kind in "OSU":
        proto.dtype = types_pb2.DT_STRING
        proto.string_val.extend(
            v if isinstance(v, bytes) else str(v).encode("utf-8") for v in array.ravel().tolist()
        )
    else:
        proto.dtype = tf.as_dtype(array.dtype).as_datatype_enum
        proto.tensor_content = np.ascontiguousarray(array).tobytes()
    return proto
