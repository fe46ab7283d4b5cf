import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from conftest import boxed_image, encode

from fashion_keras.data import pipeline
from fashion_keras.heads import DEEPFASHION6, Head, get_heads

SLEEVE, FIT = DEEPFASHION6[1], DEEPFASHION6[5]


def features(heads=(SLEEVE, FIT)):
    return tfds.features.FeaturesDict(
        {
            "image": tfds.features.Image(encoding_format="jpeg"),
            "bbox": tfds.features.BBoxFeature(),
            "labels": {h.name: tfds.features.ClassLabel(names=h.classes) for h in heads},
            "category": tfds.features.ClassLabel(names=["Tee", "Dress"]),
        }
    )


def examples(n=6):
    img = encode(boxed_image(40, 60, (10, 10, 30, 50)), subsampling=0)
    return tf.data.Dataset.from_tensor_slices(
        {
            "image": [img] * n,
            "bbox": [[0.25, 1 / 6, 0.75, 5 / 6]] * n,
            "labels": {
                "sleeve": np.array([0, 1, -1, 2, -1, 0], "int64")[:n],
                "fit": np.array([2, 2, 1, -1, 0, 1], "int64")[:n],
            },
            "category": np.array([0, 1, 0, 1, 0, 1], "int64")[:n],
        }
    )


def test_targets_one_hot_and_masks():
    heads = (SLEEVE, FIT, Head("category", ("Tee", "Dress")), DEEPFASHION6[0])
    ex = next(iter(examples().skip(2)))
    targets, weights = pipeline.targets_from_example(ex, heads)
    # sleeve is -1 on this row: masked, all-zero target
    assert weights["sleeve"].numpy() == 0.0
    np.testing.assert_array_equal(targets["sleeve"].numpy(), [0, 0, 0])
    np.testing.assert_array_equal(targets["fit"].numpy(), [0, 1, 0])
    assert weights["fit"].numpy() == 1.0
    # a top-level ClassLabel (category) can feed a head
    np.testing.assert_array_equal(targets["category"].numpy(), [1, 0])
    # texture is not in the dataset at all: masked
    assert weights["texture"].numpy() == 0.0 and targets["texture"].shape == (7,)


@pytest.mark.parametrize("training", [True, False])
def test_make_dataset_batches_dicts_keyed_by_head(training):
    ds = pipeline.make_dataset(
        examples(), (SLEEVE, FIT), 32, 4, training=training, seed=3, bbox_margin=0.0
    )
    batches = list(ds)
    assert len(batches) == (1 if training else 2)  # drop_remainder only when training
    images, targets, weights = batches[0]
    assert images.shape == (4, 32, 32, 3) and images.dtype == tf.float32
    assert set(targets) == set(weights) == {"sleeve", "fit"}
    assert targets["sleeve"].shape == (4, 3) and weights["sleeve"].shape == (4,)
    if not training:
        np.testing.assert_array_equal(weights["sleeve"].numpy(), [1, 1, 0, 1])
        np.testing.assert_array_equal(weights["fit"].numpy(), [1, 1, 1, 0])
        # the eval view is the garment box: red
        assert images.numpy()[..., 0].min() > 180 and images.numpy()[..., 2].max() < 80


def test_training_pipeline_is_repeatable_with_a_seed():
    def first(seed):
        ds = pipeline.make_dataset(examples(), (SLEEVE,), 32, 6, training=True, seed=seed)
        return next(iter(ds))[0].numpy()

    np.testing.assert_array_equal(first(7), first(7))
    assert not np.array_equal(first(7), first(8))


def test_check_heads_accepts_partial_and_rejects_mismatch():
    feats = features()
    assert pipeline.check_heads(get_heads("deepfashion6"), feats, "demo") == ["sleeve", "fit"]
    wrong = Head("sleeve", ("long", "short", "none"))
    with pytest.raises(pipeline.DatasetHeadsError, match="head 'sleeve': classes"):
        pipeline.check_heads([wrong], feats, "demo")
    with pytest.raises(pipeline.DatasetHeadsError, match="labels none of the heads"):
        pipeline.check_heads(get_heads("fashionai8"), feats, "demo")
