"""TFDS builder test for deepfashion_attributes on dummy_data/ (made by synthetic/demo.py)."""

import tensorflow_datasets as tfds

from fashion_keras_datasets.deepfashion_attributes import deepfashion_attributes_dataset_builder


class DeepfashionAttributesTest(tfds.testing.DatasetBuilderTestCase):
    """Builds dummy_data/ through the builder (manual_dir = dummy_data/)."""

    DATASET_CLASS = deepfashion_attributes_dataset_builder.Builder
    SPLITS = {
        "train": 4,  # Anno_fine/train.txt
        "val": 2,  # Anno_fine/val.txt
        "test": 2,  # Anno_fine/test.txt
    }
    # No downloads: everything is read from manual_dir, which the test case points at dummy_data/.
    DL_EXTRACT_RESULT = {}
    SKIP_CHECKSUMS = True


if __name__ == "__main__":
    tfds.testing.test_main()
