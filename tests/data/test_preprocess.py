import numpy as np
import pytest
import tensorflow as tf
from conftest import boxed_image, encode

from fashion_keras.data import augment
from fashion_keras.data import preprocess as P

H, W = 120, 200
BOX = (30, 50, 90, 130)  # y0, x0, y1, x1 in pixels (end-exclusive)


def norm_box(box=BOX, h=H, w=W):
    y0, x0, y1, x1 = box
    return tf.constant([y0 / h, x0 / w, y1 / h, x1 / w], tf.float32)


def test_crop_window_margin_and_clamp():
    win = P.crop_window(tf.constant([H, W, 3]), norm_box(), margin=0.0).numpy()
    np.testing.assert_array_equal(win, [30, 50, 60, 80])
    win = P.crop_window(tf.constant([H, W, 3]), norm_box(), margin=0.25).numpy()
    # box 60x80 -> +15 px top/bottom, +20 px left/right
    np.testing.assert_array_equal(win, [15, 30, 90, 120])
    # a box at the image corner is clamped to the image
    corner = norm_box((0, 0, 60, 100))
    np.testing.assert_array_equal(
        P.crop_window(tf.constant([H, W, 3]), corner, 0.5).numpy(), [0, 0, 90, 150]
    )
    # no box: the whole image
    np.testing.assert_array_equal(P.crop_window(tf.constant([H, W, 3])).numpy(), [0, 0, H, W])


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_decode_and_crop_returns_exactly_the_box(fmt):
    data = encode(boxed_image(H, W, BOX), fmt)
    crop = P.decode_and_crop(tf.constant(data), norm_box(), margin=0.0).numpy()
    assert crop.shape == (60, 80, 3)
    inner = crop[2:-2, 2:-2].astype(int)  # JPEG blurs the edge a little
    assert (inner[..., 0] > 200).all() and (inner[..., 2] < 60).all(), "crop left the red box"
    with_margin = P.decode_and_crop(tf.constant(data), norm_box(), margin=0.25).numpy()
    assert with_margin.shape == (90, 120, 3)
    assert with_margin[2, 2, 2] > 200, "margin should include blue background"


def test_jpeg_and_png_paths_agree():
    img = boxed_image(H, W, BOX)
    a = P.decode_and_crop(tf.constant(encode(img, "PNG")), norm_box(), 0.1).numpy()
    b = P.decode_and_crop(
        tf.constant(encode(img, "JPEG", quality=100, subsampling=0)), norm_box(), 0.1
    ).numpy()
    assert a.shape == b.shape
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 3


def test_pad_to_square_centres_and_fills_with_mean_colour():
    img = np.zeros((20, 60, 3), np.float32)
    img[..., 0] = 200
    img[:, :30, 1] = 100  # mean green = 50
    out = P.pad_to_square(tf.constant(img)).numpy()
    assert out.shape == (60, 60, 3)
    np.testing.assert_allclose(out[20:40], img)
    np.testing.assert_allclose(out[0, 0], [200, 50, 0])
    np.testing.assert_allclose(out[-1, -1], [200, 50, 0])
    tall = P.pad_to_square(tf.zeros([7, 3, 3])).numpy()
    assert tall.shape == (7, 7, 3)


def test_eval_view_shape_range_and_content():
    data = tf.constant(encode(boxed_image(H, W, BOX)))
    out = P.preprocess_for_eval(data, 32, norm_box(), margin=0.0).numpy()
    assert out.shape == (32, 32, 3) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 255
    # the box crop (60x80) is padded top/bottom with its (red) mean colour: all red
    assert (out[..., 0] > 200).all() and (out[..., 2] < 60).all()
    again = P.preprocess_for_eval(data, 32, norm_box(), margin=0.0).numpy()
    np.testing.assert_array_equal(out, again)


def test_train_view_is_seeded():
    data = tf.constant(encode(np.random.default_rng(0).integers(0, 255, (H, W, 3))))
    a = augment.train_view(data, 48, seed=tf.constant([1, 2])).image.numpy()
    b = augment.train_view(data, 48, seed=tf.constant([1, 2])).image.numpy()
    c = augment.train_view(data, 48, seed=tf.constant([3, 4])).image.numpy()
    assert a.shape == (48, 48, 3)
    assert 0 <= a.min() and a.max() <= 255
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_resize_size_follows_234_over_224():
    assert P.resize_size(224) == 234
    assert P.resize_size(64) == 67


@pytest.mark.parametrize(
    "height, width", [(1, 1), (2, 7), (379, 214), (214, 379), (300, 300), (90, 600), (50, 30)]
)
@pytest.mark.parametrize("side", [234, 67])
def test_square_resize_equals_pad_then_resize(height, width, side):
    rng = np.random.default_rng(height * 1000 + width)
    image = tf.constant(rng.integers(0, 256, (height, width, 3)).astype(np.uint8))
    expected = P._resize(P.pad_to_square(image), side).numpy()
    np.testing.assert_allclose(P.square_resize(image, side).numpy(), expected, atol=0.01)
