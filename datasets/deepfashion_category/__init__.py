"""deepfashion_category: DeepFashion category benchmark (Anno/ + Eval/), TFDS builder.

Importing this package registers the builder, so ``tfds.builder("deepfashion_category")`` works.
"""

# Absolute import on purpose (see datasets/deepfashion_attributes/__init__.py).
from fashion_keras_datasets.deepfashion_category.deepfashion_category_dataset_builder import (  # noqa: E501
    Builder,
    CategoryConfig,
)

__all__ = ["Builder", "CategoryConfig"]
