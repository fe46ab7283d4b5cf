"""A signature of a loaded version: its input specs and output names, and the request checks.

:meth:`Signature.check_inputs` gives INVALID_ARGUMENT errors that name the input, its shape and
what the signature expects; :func:`dtype_name` spells dtypes as TF Serving's messages do.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from serving.errors import invalid

#: The signature a request without ``signature_name`` calls.
DEFAULT_SIGNATURE = "serving_default"


def dtype_name(dtype: tf.DType | int) -> str:
    """``DT_FLOAT``-style name of a dtype (as TF Serving's messages spell it)."""
    enum = dtype if isinstance(dtype, int) else tf.as_dtype(dtype).as_datatype_enum
    try:
        return types_pb2.DataType.Name(enum)
    except ValueError:
        return f"dtype enum {enum}"


@dataclasses.dataclass(frozen=True)
class Signature:
    """One callable signature of a loaded version: its name, input specs and output names."""

    name: str
    inputs: Mapping[str, tf.TensorSpec]
    outputs: tuple[str, ...]
    function: object

    def check_inputs(self, arrays: Mapping[str, np.ndarray], where: str) -> int:
        """Validates names, dtypes, shapes and batch sizes; returns the batch size."""
        expected = sorted(self.inputs)
        if not arrays:
            raise invalid(f"{where}: the request has no inputs; signature expects {expected}")
        unknown = sorted(set(arrays) - set(self.inputs))
        if unknown:
            raise invalid(
                f"{where}: input {unknown[0]!r} is not an input of signature {self.name!r}; "
                f"expected inputs: {expected}"
            )
        missing = sorted(set(self.inputs) - set(arrays))
        if missing:
            raise invalid(f"{where}: input {missing[0]!r} is missing; expected inputs: {expected}")
        sizes = {}
        for name, array in arrays.items():
            shape = list(array.shape)
            self.check_shape(name, shape, where)
            if shape and shape[0] == 0:
                raise invalid(
                    f"{where}: input {name!r} is an empty batch (shape {shape}); send at least "
                    "one example"
                )
            sizes[name] = shape[0] if shape else None
        if len(set(sizes.values())) > 1:
            raise invalid(f"{where}: inputs have different batch sizes: {sizes}")
        size = next(iter(sizes.values()))
        if size is None:
            raise invalid(f"{where}: inputs must have a batch dimension; got scalars")
        return int(size)

    def check_shape(self, name: str, shape: list[int], where: str) -> None:
        """INVALID_ARGUMENT unless ``shape`` fits input ``name``'s rank and fixed sizes."""
        spec = self.inputs[name].shape
        if not spec.is_compatible_with(shape):
            raise invalid(
                f"{where}: input {name!r} has shape {shape}; signature {self.name!r} expects "
                f"{shape_str(spec)} (-1: any size)"
            )

    def fixes_example_size(self, name: str) -> bool:
        """Whether input ``name``'s shape fixes every dimension but the batch one, so the
        batch size alone bounds its element count."""
        spec = self.inputs[name].shape
        return spec.rank is not None and all(d is not None for d in spec.as_list()[1:])


def shape_str(shape: tf.TensorShape) -> str:
    """A signature shape as messages spell it: ``[-1, 224, 224, 3]`` (-1: any size)."""
    if shape.rank is None:
        return "any shape"
    return str([-1 if d is None else int(d) for d in shape.as_list()])
