"""TFDS builder test for fashionai_attributes on dummy_data/ (see synthetic/dummy_data.py)."""

import tensorflow_datasets as tfds

from fashion_keras_datasets.fashionai_attributes import fashionai_attributes_dataset_builder
from fashion_keras_datasets.synthetic import dummy_data


class FashionaiAttributesTest(tfds.testing.DatasetBuilderTestCase):
    """Builds dummy_data/ (three releases, awkward images) with both m policies."""

    DATASET_CLASS = fashionai_attributes_dataset_builder.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["m_ignore", "m_half"]
    # After skipping 5 broken images (train), a val and a test image that duplicate train ones.
    SPLITS = dummy_data.FASHIONAI_SPLITS
    DL_EXTRACT_RESULT = {}
    SKIP_CHECKSUMS = True


if __name__ == "__main__":
    tfds.testing.test_main()
