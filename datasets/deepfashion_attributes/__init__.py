"""deepfashion_attributes: DeepFashion fine-grained attributes (Anno_fine/), TFDS builder.

Importing this package registers the builder, so ``tfds.builder("deepfashion_attributes")`` works.
"""

# Absolute import on purpose: if this folder is ever imported under another package name (pytest
# rootdir imports, the `tfds build <folder>` CLI), the builder module is still imported only once
# under its canonical name, and TFDS does not see the dataset registered twice.
from fashion_keras_datasets.deepfashion_attributes.deepfashion_attributes_dataset_builder import (  # noqa: E501
    Builder,
)

__all__ = ["Builder"]
