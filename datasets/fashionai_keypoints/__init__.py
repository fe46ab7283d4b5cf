"""fashionai_keypoints: FashionAI 2018 garment keypoints (Annotations/*.csv), TFDS builder.

Importing this package registers the builder, so ``tfds.builder("fashionai_keypoints")`` works.
"""

# Absolute import on purpose (see datasets/deepfashion_attributes/__init__.py).
from fashion_keras_datasets.fashionai_keypoints.fashionai_keypoints_dataset_builder import (  # noqa: E501
    Builder,
    KeypointsConfig,
)

__all__ = ["Builder", "KeypointsConfig"]
