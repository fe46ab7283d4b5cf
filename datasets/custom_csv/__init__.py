"""custom_csv: a shop's own labels in a CSV, for the heads of a user head spec; TFDS builder.

Importing this package registers the builder, so ``tfds.builder("custom_csv")`` works.
"""

# Absolute import on purpose (see datasets/deepfashion_attributes/__init__.py).
from fashion_keras_datasets.custom_csv.custom_csv_dataset_builder import (
    Builder,
    CustomCsvConfig,
    config_for_manual_dir,
)

__all__ = ["Builder", "CustomCsvConfig", "config_for_manual_dir"]
