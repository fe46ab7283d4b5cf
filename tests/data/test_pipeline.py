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


# --- region crops ------------------------------------------------------------------------------

NECKLINE = DEEPFASHION6[3]
#: a 60 x 40 (W x H) photo: blue, a red garment, and a green 16 x 16 collar square
COLLAR_PX = (4, 22, 20, 38)  # (y0, x0, y1, x1), end-exclusive
COLLAR_BOX = [4 / 40, 22 / 60, 20 / 40, 38 / 60]
RED_BOX = [0.5, 0.25, 1.0, 0.75]  # the garment box: the red bottom half, no green


def region_examples(n=4):
    img = boxed_image(40, 60, (20, 15, 40, 45))
    y0, x0, y1, x1 = COLLAR_PX
    img[y0:y1, x0:x1] = (0, 255, 0)
    png = encode(img, fmt="PNG")
    return tf.data.Dataset.from_tensor_slices(
        {
            "image": [png] * n,
            "bbox": [RED_BOX] * n,
            "labels": {
                "sleeve": np.array([0, 1, 2, 0], "int64")[:n],
                "neckline": np.array([1, 0, -1, 2], "int64")[:n],
            },
            "region_boxes": {"collar": np.array([COLLAR_BOX] * n, np.float32)},
            "region_found": {"collar": np.ones(n, bool)},
        }
    )


@pytest.mark.parametrize("training", [True, False])
def test_make_dataset_with_regions_yields_the_region_view(training):
    heads = (SLEEVE, NECKLINE)
    ds = pipeline.make_dataset(
        region_examples(),
        heads,
        32,
        2,
        training=training,
        seed=1,
        bbox_margin=0.0,
        regions=("collar",),
    )
    assert set(ds.element_spec[0]) == {"image", "collar_crop"}
    batches = list(ds)
    assert len(batches) == 2
    for images, targets, weights in batches:
        assert set(images) == {"image", "collar_crop"}
        for view in images.values():
            assert view.shape == (2, 32, 32, 3) and view.dtype == tf.float32
        assert set(targets) == set(weights) == {"sleeve", "neckline"}
        collar = images["collar_crop"].numpy()
        garment = images["image"].numpy()
        # the collar view: green; the garment view: red, with no green
        assert (collar.argmax(-1) == 1).mean() > 0.97
        assert (garment.argmax(-1) == 0).mean() > 0.97
    if not training:
        from fashion_keras.data.preprocess import eval_view

        (png,) = {ex["image"] for ex in region_examples().as_numpy_iterator()}
        crop, _ = eval_view(tf.constant(png), 32, tf.constant(COLLAR_BOX), 0.0)
        for images, _, _ in batches:
            for row in images["collar_crop"].numpy():
                np.testing.assert_array_equal(row, crop.numpy())
        np.testing.assert_array_equal(batches[1][2]["neckline"].numpy(), [0, 1])


def test_make_dataset_with_regions_is_repeatable_and_plain_without():
    def first(seed, regions=("collar",)):
        ds = pipeline.make_dataset(
            region_examples(), (SLEEVE, NECKLINE), 32, 4, True, seed=seed, regions=regions
        )
        return next(iter(ds))[0]

    a, b = first(5), first(5)
    for name in ("image", "collar_crop"):
        np.testing.assert_array_equal(a[name].numpy(), b[name].numpy())
    # without regions the input is the plain image tensor, even with region boxes present
    plain = first(5, regions=())
    assert isinstance(plain, tf.Tensor) and plain.shape == (4, 32, 32, 3)


def test_normalize_example_passes_region_boxes_through():
    ex = next(iter(region_examples()))
    out = pipeline.normalize_example(ex, (SLEEVE, NECKLINE))
    np.testing.assert_allclose(out["region_boxes"]["collar"].numpy(), COLLAR_BOX)
    assert out["region_found"]["collar"].numpy()
    again = pipeline.normalize_example(out, (SLEEVE, NECKLINE))
    np.testing.assert_allclose(again["region_boxes"]["collar"].numpy(), COLLAR_BOX)
    bare = {k: v for k, v in ex.items() if not k.startswith("region_")}
    out = pipeline.normalize_example(bare, (SLEEVE, NECKLINE))
    assert "region_boxes" not in out and "region_found" not in out


def test_only_region_heads_give_only_region_views():
    ds = pipeline.make_dataset(
        region_examples(), (NECKLINE,), 32, 2, False, bbox_margin=0.0, regions=("collar",)
    )
    images, targets, _ = next(iter(ds))
    assert list(images) == ["collar_crop"] and list(targets) == ["neckline"]
    assert (images["collar_crop"].numpy().argmax(-1) == 1).mean() > 0.97
