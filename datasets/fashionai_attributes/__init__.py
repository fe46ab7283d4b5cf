"""fashionai_attributes: FashionAI 2018 attribute tasks (Annotations/label.csv), TFDS builder.

Importing this package registers the builder, so ``tfds.builder("fashionai_attributes")`` works.
"""

# Absolute import on purpose (see datasets/deepfashion_attributes/__init__.py).
from fashion_keras_datasets.fashionai_attributes.fashionai_attributes_dataset_builder import (  # noqa: E501
    Builder,
    FashionAIConfig,
)

__all__ = ["Builder", "FashionAIConfig"]
