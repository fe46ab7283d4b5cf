"""TFDS builder test for fashionai_keypoints on dummy_data/ (see make_dummy_data.py)."""

import tensorflow_datasets as tfds

from fashion_keras_datasets.fashionai_keypoints import (
    fashionai_keypoints_dataset_builder,
    make_dummy_data,
)


class FashionaiKeypointsTest(tfds.testing.DatasetBuilderTestCase):
    """Builds dummy_data/ (three releases, awkward images, rows to skip)."""

    DATASET_CLASS = fashionai_keypoints_dataset_builder.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["default"]
    # After skipping a missing image and a point outside its image (train), a val and a test
    # image that duplicate train ones.
    SPLITS = make_dummy_data.SPLITS
    DL_EXTRACT_RESULT = {}
    SKIP_CHECKSUMS = True


if __name__ == "__main__":
    tfds.testing.test_main()
