"""TFDS builder test for deepfashion_category on dummy_data/ (rows in
synthetic/deepfashion_dummy_data.py)."""

import tensorflow_datasets as tfds

from fashion_keras_datasets.deepfashion_category import deepfashion_category_dataset_builder
from fashion_keras_datasets.synthetic import deepfashion_dummy_data


class DeepfashionCategoryTest(tfds.testing.DatasetBuilderTestCase):
    """Builds dummy_data/ (Anno/ + Eval/ + img/, awkward images) with and without attributes."""

    DATASET_CLASS = deepfashion_category_dataset_builder.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["category", "attributes"]
    # After skipping a missing image and a box outside its image (train) and an image of each
    # evaluation split that duplicates a train image.
    SPLITS = deepfashion_dummy_data.DEEPFASHION_CATEGORY_SPLITS
    DL_EXTRACT_RESULT = {}
    SKIP_CHECKSUMS = True


if __name__ == "__main__":
    tfds.testing.test_main()
