"""Keypoints follow the image through every view: drawn points land on their pixels."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from fashion_keras.data import geometry
from fashion_keras.data.augment import train_view
from fashion_keras.data.preprocess import eval_view
from fashion_keras.heads import KeypointHead

HEAD = KeypointHead(
    "kp",
    ("a_left", "a_right", "top", "low_left", "low_right"),
    (("a_left", "a_right"), ("low_left", "low_right")),
    {"g": (("a_left", "a_right", "top", "low_left", "low_right"), None)},
)
#: (x, y) in a 150 x 110 (W x H) photo; the garment box leaves the last point outside.
POINTS = np.array([[40.0, 30.0], [95.0, 33.0], [70.0, 55.0], [52.0, 80.0], [20.0, 100.0]])
BOX = np.array([0.15, 0.2, 0.85, 0.75], np.float32)  # ymin, xmin, ymax, xmax
WIDTH, HEIGHT = 150, 110


def _blob_png(x: float, y: float, sigma: float = 2.5) -> bytes:
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    g = 255.0 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    buf = io.BytesIO()
    Image.fromarray(np.repeat(g[..., None], 3, axis=2).round().astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


BLOBS = [tf.constant(_blob_png(x, y)) for x, y in POINTS]
KEYPOINTS = tf.constant(np.column_stack([POINTS, np.ones(len(POINTS))]), tf.float32)


def _centre(view: np.ndarray) -> np.ndarray:
    """The intensity-weighted centre (x, y) of the bright blob in a view."""
    w = np.clip(view.mean(axis=2) - 40.0, 0.0, None)  # ignore the faint tail and the padding
    yy, xx = np.mgrid[0 : w.shape[0], 0 : w.shape[1]]
    return np.array([(w * xx).sum(), (w * yy).sum()]) / w.sum()


def _check(views: list[np.ndarray], moved: np.ndarray, size: int, flipped: bool) -> int:
    """Each present slot lands within a pixel of its (slot-swapped when mirrored) blob."""
    perm = HEAD.flip_permutation() if flipped else tuple(range(len(POINTS)))
    checked = 0
    for slot, source in enumerate(perm):
        x, y, v = moved[slot]
        if v < 0:
            continue
        assert -0.5 <= x <= size - 0.5 and -0.5 <= y <= size - 0.5
        if min(x, y, size - 1 - x, size - 1 - y) < 5:
            continue  # the border cuts the blob: its centre is not the point's
        np.testing.assert_allclose(_centre(views[source]), [x, y], atol=1.0)
        checked += 1
    return checked


@pytest.mark.parametrize("size", [32, 64])
def test_points_land_on_their_pixels_in_the_evaluation_view(size):
    views, matrix = [], None
    for blob in BLOBS:
        image, matrix = eval_view(blob, size, tf.constant(BOX), 0.1)
        views.append(image.numpy())
    moved = geometry.transform_keypoints(KEYPOINTS, matrix, size).numpy()
    assert moved[4, 2] == -1 and (moved[4] == -1).all()  # outside the garment box + margin
    assert _check(views, moved, size, flipped=False) == 4
    # and back: view coordinates -> photo pixels through the inverse
    back = geometry.to_photo(moved[:4, :2], matrix).numpy()
    np.testing.assert_allclose(back, POINTS[:4], atol=1e-3)


@pytest.mark.parametrize(
    "scale, rotation", [(0.0, 0.0), (0.2, 0.0), (0.0, 12.0), (0.15, 10.0)], ids=str
)
def test_points_land_on_their_pixels_in_every_training_view(scale, rotation):
    size, seen_flip, checked = 48, set(), 0
    for s in range(6):
        seed = tf.constant([s, 3])
        views = []
        for blob in BLOBS:
            view = train_view(
                blob,
                size,
                tf.constant(BOX),
                0.1,
                seed=seed,
                brightness=0.0,
                contrast=0.0,
                saturation=0.0,
                scale=scale,
                rotation=rotation,
            )
            views.append(view.image.numpy())
        flipped = bool(view.flipped.numpy())
        seen_flip.add(flipped)
        moved = geometry.transform_keypoints(
            KEYPOINTS, view.matrix, size, view.flipped, HEAD.flip_permutation()
        ).numpy()
        checked += _check(views, moved, size, flipped)
    assert seen_flip == {False, True}  # both branches ran
    assert checked >= 15


def test_a_point_leaving_the_view_becomes_absent_and_absent_points_stay_absent():
    matrix = tf.constant([[2.0, 0.0, -10.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0]])
    points = tf.constant([[4.0, 4.0, 1.0], [30.0, 5.0, 0.0], [-1.0, -1.0, -1.0], [5.0, 2.0, 0.0]])
    out = geometry.transform_keypoints(points, matrix, 32).numpy()
    np.testing.assert_array_equal(out[0], [-1, -1, -1])  # lands at x = -2: outside
    np.testing.assert_array_equal(out[1], [-1, -1, -1])  # x = 50 > 31.5
    np.testing.assert_array_equal(out[2], [-1, -1, -1])
    np.testing.assert_array_equal(out[3], [0.0, 4.0, 0.0])  # occluded stays occluded


def _blob_jpeg(x: float, y: float, scale: int) -> bytes:
    """The blob photo ``scale`` times larger, as a JPEG: decoded at a DCT scale in training."""
    yy, xx = np.mgrid[0 : HEIGHT * scale, 0 : WIDTH * scale]
    sigma = 2.5 * scale
    g = 255.0 * np.exp(-((xx - x * scale) ** 2 + (yy - y * scale) ** 2) / (2 * sigma**2))
    buf = io.BytesIO()
    image = np.repeat(g[..., None], 3, axis=2).round().astype(np.uint8)
    Image.fromarray(image).save(buf, "JPEG", quality=95)
    return buf.getvalue()


@pytest.mark.parametrize("scale, ratio", [(2, 2), (3, 4), (5, 8)])
def test_points_land_on_their_pixels_when_the_window_is_decoded_at_a_dct_scale(scale, ratio):
    """Issue 19: a large JPEG's window is decoded at 1/2, 1/4 or 1/8 scale in training; the
    photo -> view matrix accounts for it (and for the window rounded out to whole scaled
    pixels), so points in photo pixels still land on their pixels."""
    from fashion_keras.data.augment import decode_scaled_window
    from fashion_keras.data.preprocess import resize_size

    size = 48
    blobs = [tf.constant(_blob_jpeg(x, y, scale)) for x, y in POINTS]
    _, _, used = decode_scaled_window(blobs[0], tf.constant(BOX), 0.1, resize_size(size))
    assert int(used) == ratio
    points = tf.constant(np.column_stack([POINTS * scale, np.ones(len(POINTS))]), tf.float32)
    checked, seen_flip = 0, set()
    for s in range(4):
        seed = tf.constant([s, 11])
        views = [
            train_view(b, size, tf.constant(BOX), 0.1, seed, 0.0, 0.0, 0.0).image.numpy()
            for b in blobs
        ]
        view = train_view(blobs[0], size, tf.constant(BOX), 0.1, seed, 0.0, 0.0, 0.0)
        seen_flip.add(bool(view.flipped))
        moved = geometry.transform_keypoints(
            points, view.matrix, size, view.flipped, HEAD.flip_permutation()
        ).numpy()
        checked += _check(views, moved, size, bool(view.flipped))
    assert seen_flip == {False, True} and checked >= 8
