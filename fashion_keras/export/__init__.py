"""SavedModel export in TF Serving layout (``<export_base>/<version>/``).

- :mod:`~fashion_keras.export.serving_module`: :class:`ServingModule`, a model's inference with
  one method per input type (encoded image bytes, preprocessed images, ``tf.Example`` records),
  each a signature, and the metadata record (heads, input size, preprocessing).
- :mod:`~fashion_keras.export.versions`: :func:`write_version` (staging folder, warm-up
  requests, metadata, rename into place) and :func:`export_saved_model` for a model.
"""

from fashion_keras.export.serving_module import (
    EXAMPLE_BBOX_KEY,
    EXAMPLE_IMAGE_KEY,
    EXAMPLES_INPUT,
    IMAGES_INPUT,
    SERVING_INPUT,
    SIGNATURES,
    ServingModule,
    output_names,
)
from fashion_keras.export.versions import (
    METADATA_FILE,
    WARMUP_FILE,
    export_saved_model,
    load_metadata,
    next_version,
    warmup_requests,
    write_version,
    write_warmup_requests,
)

__all__ = [
    "EXAMPLES_INPUT",
    "EXAMPLE_BBOX_KEY",
    "EXAMPLE_IMAGE_KEY",
    "IMAGES_INPUT",
    "METADATA_FILE",
    "SERVING_INPUT",
    "SIGNATURES",
    "WARMUP_FILE",
    "ServingModule",
    "export_saved_model",
    "load_metadata",
    "next_version",
    "output_names",
    "warmup_requests",
    "write_version",
    "write_warmup_requests",
]
