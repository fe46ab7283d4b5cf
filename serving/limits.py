"""Per-request limits, checked before the server allocates or decodes what a request claims.

:class:`RequestLimits` holds the server's caps: examples per request
(``--max-examples-per-request``) and pixels per encoded image (``--max-image-pixels``, read
from the image header with PIL, which decodes nothing). Both answer INVALID_ARGUMENT with a
message naming the input, the example and the flag. The shape and element-count checks of
request tensors are in :mod:`serving.tensors` and :class:`serving.signature.Signature`.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterator, Mapping

import numpy as np
from google.protobuf.message import DecodeError
from PIL import Image
from tensorflow.core.example import example_pb2

from serving.errors import invalid

#: Examples one request may carry (the batching queue's ``max_batch_size`` is another thing:
#: it splits a request into model calls, this refuses the request).
DEFAULT_MAX_EXAMPLES_PER_REQUEST = 256
#: Pixels an encoded image may declare: the dataset builders' cap (a decompression-bomb guard
#: far above any garment photo; ``fashion_keras_datasets.common.images``, not imported here).
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
#: The formats the exported graph decodes (``tf.io.decode_image``); their headers are read.
IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP")


@dataclasses.dataclass(frozen=True)
class RequestLimits:
    """The caps every Predict request is checked against (see the module docstring)."""

    max_examples_per_request: int = DEFAULT_MAX_EXAMPLES_PER_REQUEST
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS

    def __post_init__(self) -> None:
        for field in ("max_examples_per_request", "max_image_pixels"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{field} = {value!r} must be an integer >= 1")

    def check_batch(self, name: str, size: int, where: str) -> None:
        """INVALID_ARGUMENT when input ``name`` carries more examples than the cap."""
        if size > self.max_examples_per_request:
            raise invalid(
                f"{where}: input {name!r} has a batch of {size} examples; the server accepts at "
                f"most {self.max_examples_per_request} per request (--max-examples-per-request); "
                "split the batch"
            )

    def check_images(self, arrays: Mapping[str, np.ndarray], where: str) -> None:
        """Refuses encoded images over the pixel cap in string inputs, from their headers.

        A value is an image when PIL reads its header (JPEG, PNG, GIF, BMP, WebP), or a
        serialized ``tf.Example`` whose bytes features hold such images; other values are left
        to the model.
        """
        for name, array in arrays.items():
            if array.dtype != object or array.size == 0:
                continue
            per_example = array.size // array.shape[0] if array.ndim else 1
            for i, value in enumerate(array.reshape(-1)):
                if isinstance(value, bytes):
                    what = f"{where}: input {name!r}: example {i // per_example}"
                    self._check_value(value, what)

    def _check_value(self, value: bytes, what: str) -> None:
        if self._check_image(value, what):
            return
        for feature, j, data in _example_bytes(value):
            self._check_image(data, f"{what}: tf.Example feature {feature!r} value {j}")

    def _check_image(self, data: bytes, what: str) -> bool:
        """Whether ``data`` is an image PIL reads; INVALID_ARGUMENT when it is over the cap."""
        try:
            with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
                width, height, fmt = image.width, image.height, image.format
        except Image.DecompressionBombError as e:
            raise invalid(
                f"{what} is an image too large for the server to open ({e}); the server "
                f"decodes at most {self.max_image_pixels} pixels per image (--max-image-pixels)"
            ) from None
        except Exception:  # noqa: BLE001 - not a header PIL reads: the model judges the bytes
            return False
        pixels = width * height
        if pixels > self.max_image_pixels:
            raise invalid(
                f"{what} is a {width} x {height} {fmt} image ({pixels} pixels); the server "
                f"decodes at most {self.max_image_pixels} pixels per image (--max-image-pixels)"
            )
        return True


def _example_bytes(value: bytes) -> Iterator[tuple[str, int, bytes]]:
    """``(feature, index, bytes)`` of every bytes feature, if ``value`` parses as a tf.Example."""
    try:
        example = example_pb2.Example.FromString(value)
    except (DecodeError, RuntimeWarning, ValueError):
        return
    for key in sorted(example.features.feature):
        for j, data in enumerate(example.features.feature[key].bytes_list.value):
            yield key, j, data
