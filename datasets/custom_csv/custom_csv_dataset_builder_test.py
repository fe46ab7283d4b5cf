"""TFDS builder test for custom_csv on dummy_data/ (see synthetic/dummy_data.py)."""

import tensorflow_datasets as tfds

from fashion_keras_datasets.custom_csv import custom_csv_dataset_builder
from fashion_keras_datasets.synthetic import dummy_data


class CustomCsvTest(tfds.testing.DatasetBuilderTestCase):
    """Builds dummy_data/ (labels.csv with a BOM, CRLF, quoting, empty cells) as `example`."""

    DATASET_CLASS = custom_csv_dataset_builder.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["example"]
    # After skipping a missing image (train) and a val image that duplicates a train image.
    SPLITS = dummy_data.CUSTOM_CSV_SPLITS
    DL_EXTRACT_RESULT = {}
    SKIP_CHECKSUMS = True


if __name__ == "__main__":
    tfds.testing.test_main()
