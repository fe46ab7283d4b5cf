"""Region views: the TF region boxes (equal to the numpy ones), box conversions, and the views a
region model reads (each region's view is the crop of its box, drawn with the garment view's
seed)."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import encode

from fashion_keras.data.augment import train_view
from fashion_keras.data.preprocess import eval_view
from fashion_keras.data.region_views import (
    FULL_IMAGE,
    REGION_MARGIN,
    eval_views,
    keypoint_head_for,
    keypoint_region_boxes,
    region_box,
    to_normalized,
    to_pixels,
    train_views,
)
from fashion_keras.heads import REGIONS, HeadSpecError, KeypointHead, get_heads, region_boxes

(FASHIONAI,) = get_heads("fashionai_keypoints")


def _random_rows(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows of FashionAI keypoints and photo sizes: integer pixels reaching past the photo
    (boxes clamped at its edges), some rows with fewer than two present points, some NaNs."""
    sizes = rng.integers(24, 400, size=(n, 2)).astype(np.float64)
    k = FASHIONAI.num_keypoints
    # each row's points scattered about a centre, some near or past the photo's edges
    centre = rng.uniform(-0.15, 1.15, size=(n, 2)) * sizes
    spread = rng.uniform(0.005, 0.4, size=(n, 2)) * sizes
    xy = np.round(centre[:, None] + rng.normal(size=(n, k, 2)) * spread[:, None])
    x, y = xy[..., 0], xy[..., 1]
    v = rng.choice([-1.0, 0.0, 1.0], size=(n, k), p=[0.3, 0.2, 0.5])
    # a quarter of the rows: at most one present point
    few = rng.random(n) < 0.25
    keep = rng.integers(0, k, size=n)
    v[few] = -1.0
    rows = np.flatnonzero(few)[::2]
    v[rows, keep[rows]] = 1.0
    # a few present points with a NaN coordinate (not present for either)
    nan = rng.random((n, k)) < 0.02
    x[nan] = np.nan
    return np.stack([x, y, v], axis=-1), sizes


@pytest.mark.parametrize("region", list(REGIONS))
def test_tf_boxes_equal_the_numpy_boxes(region):
    rng = np.random.default_rng(sum(map(ord, region)))
    points, sizes = _random_rows(rng, 300)
    expected, expected_found = region_boxes(region, points, FASHIONAI, sizes)
    boxes, found = keypoint_region_boxes(
        region, tf.constant(points, tf.float32), FASHIONAI, tf.constant(sizes, tf.float32)
    )
    boxes, found = boxes.numpy(), found.numpy()
    assert boxes.dtype == np.float32 and boxes.shape == (300, 4) and found.dtype == bool
    np.testing.assert_array_equal(found, expected_found)
    np.testing.assert_allclose(boxes[found], expected[found], rtol=0, atol=1e-4)
    assert (boxes[~found] == 0).all()
    # the rows cover what they should: found and not, boxes clamped at every photo edge
    assert 20 < found.sum() < 290
    assert 10 < (~found).sum()
    kept = expected[expected_found]
    edges = sizes[expected_found]
    assert (kept[:, 0] == 0).any() and (kept[:, 1] == 0).any()
    assert (kept[:, 2] == edges[:, 0]).any() and (kept[:, 3] == edges[:, 1]).any()


def test_tf_boxes_of_too_few_points_and_in_a_graph():
    region = REGIONS["collar"]
    points = np.full((3, FASHIONAI.num_keypoints, 3), -1.0)
    ids = [FASHIONAI.index(k) for k in region.keypoints]
    points[1, ids[0]] = (10, 10, 1)  # one point: no box
    points[2, ids[0]] = (10, 10, 1)
    points[2, ids[1]] = (30, 12, 0)  # two (one occluded): a box
    fn = tf.function(lambda p, s: keypoint_region_boxes("collar", p, FASHIONAI, s))
    boxes, found = fn(tf.constant(points, tf.float32), tf.constant([[100.0, 80.0]] * 3))
    np.testing.assert_array_equal(found.numpy(), [False, False, True])
    np.testing.assert_array_equal(boxes.numpy()[:2], 0.0)
    expected, _ = region_boxes("collar", points, FASHIONAI, (100, 80))
    np.testing.assert_allclose(boxes.numpy()[2], expected[2], atol=1e-4)


def test_keypoint_head_for_picks_the_head_with_the_region_keypoints():
    small = KeypointHead("small", ("a", "b"), (), {"g": (("a", "b"), None)})
    assert keypoint_head_for("collar", (small, FASHIONAI)) is FASHIONAI
    with pytest.raises(HeadSpecError, match="region 'collar' needs the keypoints"):
        keypoint_head_for("collar", (small,))


def test_normalized_and_pixel_boxes_round_trip():
    sizes = tf.constant([[200.0, 100.0], [64.0, 48.0]])
    pixels = tf.constant([[20.0, 10.0, 120.0, 60.0], [0.0, 0.0, 64.0, 48.0]])
    normal = to_normalized(pixels, sizes)
    # (x1, y1, x2, y2) pixels -> (ymin, xmin, ymax, xmax) fractions
    np.testing.assert_allclose(normal.numpy(), [[0.1, 0.1, 0.6, 0.6], [0, 0, 1, 1]], atol=1e-7)
    np.testing.assert_allclose(to_pixels(normal, sizes).numpy(), pixels.numpy(), atol=1e-4)
    rng = np.random.default_rng(0)
    many = tf.constant(rng.uniform(0, 500, size=(5, 7, 4)), tf.float32)
    many_sizes = tf.constant(rng.uniform(10, 500, size=(5, 7, 2)), tf.float32)
    back = to_pixels(to_normalized(many, many_sizes), many_sizes)
    np.testing.assert_allclose(back.numpy(), many.numpy(), rtol=1e-5, atol=1e-3)


# --- views ------------------------------------------------------------------------------------

H, W = 80, 120
#: the collar box in pixels (y0, x0, y1, x1), end-exclusive, a 40 x 40 square whose edges are
#: exact binary fractions of the photo: normalised (0.125, 0.25, 0.625, 7 / 12)
Y0, X0, Y1, X1 = 10, 30, 50, 70
COLLAR = np.array([Y0 / H, X0 / W, Y1 / H, X1 / W], np.float32)
GARMENT = np.array([0.125, 0.125, 0.875, 0.875], np.float32)
RED, GREEN, BLUE = 0, 1, 2


def _photo() -> np.ndarray:
    """Left half red, right half blue; the collar box green on its left half (the photo's
    x < 50) and blue on its right: a picture whose mirror image is told apart in both views."""
    img = np.zeros((H, W, 3), np.uint8)
    img[:, : W // 2, RED] = 255
    img[:, W // 2 :, BLUE] = 255
    img[Y0:Y1, X0:X1] = 0
    img[Y0:Y1, X0 : (X0 + X1) // 2, GREEN] = 255
    img[Y0:Y1, (X0 + X1) // 2 : X1, BLUE] = 255
    return img


def _solid_photo() -> np.ndarray:
    """Red and blue halves with the collar box solid green."""
    img = np.zeros((H, W, 3), np.uint8)
    img[:, : W // 2, RED] = 255
    img[:, W // 2 :, BLUE] = 255
    img[Y0:Y1, X0:X1] = (0, 255, 0)
    return img


def _example(img: np.ndarray, **boxes) -> dict:
    return {
        "image": tf.constant(encode(img, fmt="PNG")),
        "bbox": tf.constant(GARMENT),
        "region_boxes": {k: tf.constant(v, tf.float32) for k, v in boxes.items()},
        "region_found": {k: tf.constant(True) for k in boxes},
    }


def _dominant(image: np.ndarray, channel: int) -> float:
    """The fraction of pixels whose largest channel is ``channel``."""
    image = np.asarray(image)
    return float((image.argmax(axis=-1) == channel).mean())


def test_eval_views_crop_the_region_box():
    example = _example(_solid_photo(), collar=COLLAR)
    images, matrix = eval_views(example, (None, "collar"), 32, bbox_margin=0.0)
    assert set(images) == {"image", "collar_crop"}
    collar = images["collar_crop"].numpy()
    assert collar.shape == (32, 32, 3) and collar.dtype == np.float32
    assert collar[..., GREEN].min() > 250 and collar[..., [RED, BLUE]].max() < 5
    garment = images["image"].numpy()
    assert _dominant(garment, GREEN) < 0.4 and _dominant(garment, RED) > 0.2
    # the matrix is the garment view's, as eval_view's
    _, expected = eval_view(example["image"], 32, example["bbox"], 0.0)
    np.testing.assert_allclose(matrix.numpy(), expected.numpy())
    # the region view is eval_view of the box with no margin, whatever the garment margin
    again, _ = eval_views(example, (None, "collar"), 32, bbox_margin=0.3)
    direct, _ = eval_view(example["image"], 32, tf.constant(COLLAR), REGION_MARGIN)
    np.testing.assert_array_equal(again["collar_crop"].numpy(), direct.numpy())
    assert not np.array_equal(again["image"].numpy(), garment)


def test_only_region_views_give_no_garment_matrix_and_one_view_a_plain_tensor():
    example = _example(_solid_photo(), collar=COLLAR)
    images, matrix = eval_views(example, ("collar",), 32, bbox_margin=0.0)
    assert list(images) == ["collar_crop"] and matrix is None
    images, flipped_matrix, flipped = train_views(
        example, ("collar",), 32, 0.0, tf.constant([1, 2])
    )
    assert list(images) == ["collar_crop"] and flipped_matrix is None and flipped is False
    image, _ = eval_views(example, (None,), 32, bbox_margin=0.1)
    assert isinstance(image, tf.Tensor)
    np.testing.assert_array_equal(
        image.numpy(), eval_view(example["image"], 32, example["bbox"], 0.1)[0].numpy()
    )
    seed = tf.constant([5, 6])
    image, matrix, flipped = train_views(example, (None,), 32, 0.1, seed)
    view = train_view(example["image"], 32, example["bbox"], 0.1, seed=seed)
    assert isinstance(image, tf.Tensor)
    np.testing.assert_array_equal(image.numpy(), view.image.numpy())
    np.testing.assert_array_equal(matrix.numpy(), view.matrix.numpy())
    assert bool(flipped) == bool(view.flipped)


@pytest.mark.parametrize("scale, rotation", [(0.0, 0.0), (0.1, 8.0)], ids=str)
def test_train_views_crop_the_region_box(scale, rotation):
    example = _example(_solid_photo(), collar=COLLAR)
    for s in range(3):
        images, _, _ = train_views(
            example, (None, "collar"), 32, 0.0, tf.constant([s, 9]), scale, rotation
        )
        assert _dominant(images["collar_crop"].numpy(), GREEN) > 0.97
        assert _dominant(images["image"].numpy(), GREEN) < 0.4


def _mirrored(view: np.ndarray) -> bool:
    """Whether the view shows the photo's right (blue) side on its left."""
    quarter = view.shape[1] // 4
    return _dominant(view[:, :quarter], BLUE) > _dominant(view[:, -quarter:], BLUE)


def test_all_views_of_an_example_share_the_mirror_decision():
    example = _example(_photo(), collar=COLLAR)
    seen = set()
    for s in range(12):
        images, matrix, flipped = train_views(
            example, (None, "collar"), 32, 0.0, tf.constant([s, 3])
        )
        flipped = bool(flipped)
        garment, collar = images["image"].numpy(), images["collar_crop"].numpy()
        # the collar view: green left, blue right unless mirrored
        assert _mirrored(collar) == flipped
        assert _dominant(collar[:, :8], GREEN if flipped else BLUE) < 0.05
        # the garment view: red (and the collar's green) left, blue right unless mirrored
        assert _mirrored(garment) == flipped
        # the garment matrix mirrors with the view: the photo's left edge lands on the right
        x_view = (matrix.numpy() @ [0.0, H / 2, 1.0])[0]
        assert (x_view > 16) == flipped
        seen.add(flipped)
    assert seen == {True, False}


def test_same_seed_same_views_other_seed_other_views():
    example = _example(_photo(), collar=COLLAR)
    views = (None, "collar")
    first = train_views(example, views, 32, 0.0, tf.constant([4, 4]), 0.1, 5.0)[0]
    again = train_views(example, views, 32, 0.0, tf.constant([4, 4]), 0.1, 5.0)[0]
    other = train_views(example, views, 32, 0.0, tf.constant([4, 5]), 0.1, 5.0)[0]
    for name in ("image", "collar_crop"):
        np.testing.assert_array_equal(first[name].numpy(), again[name].numpy())
        assert not np.array_equal(first[name].numpy(), other[name].numpy())


def test_a_region_missing_from_region_boxes_falls_back_to_the_garment_box():
    example = _example(_solid_photo(), lower=COLLAR)  # no collar box
    example["bbox"] = tf.constant([0.1, 0.2, 0.9, 0.8], tf.float32)
    assert region_box(example, "collar") is example["bbox"]
    images, _ = eval_views(example, (None, "collar"), 32, bbox_margin=0.0)
    np.testing.assert_array_equal(images["collar_crop"].numpy(), images["image"].numpy())
    # with a garment margin the garment view grows, the region view (no margin) does not
    images, _ = eval_views(example, (None, "collar"), 32, bbox_margin=0.2)
    direct, _ = eval_view(example["image"], 32, example["bbox"], 0.0)
    np.testing.assert_array_equal(images["collar_crop"].numpy(), direct.numpy())
    # without region_boxes or bbox: the whole photo
    bare = {"image": example["image"]}
    np.testing.assert_array_equal(region_box(bare, "collar").numpy(), FULL_IMAGE)
    images, _ = eval_views(bare, (None, "collar"), 32, bbox_margin=0.0)
    np.testing.assert_array_equal(images["collar_crop"].numpy(), images["image"].numpy())
    assert region_box(example, "lower") is example["region_boxes"]["lower"]
