"""``TensorProto`` <-> numpy for the gRPC API: request tensors checked against the signature."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

from serving.errors import invalid
from serving.signature import Signature, dtype_name


def tensor_to_array(
    name: str, proto: tensor_pb2.TensorProto, sig: Signature, where: str
) -> np.ndarray:
    """A request ``TensorProto`` as a numpy array, checking its dtype against the signature."""
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
    try:
        return tf.make_ndarray(proto)
    except (TypeError, ValueError) as e:
        raise invalid(f"{where}: input {name!r} is a malformed TensorProto: {e}") from None


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
