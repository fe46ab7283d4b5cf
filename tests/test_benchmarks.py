"""The input benchmark is fair only if its PIL loader makes the tensors the tf.data pipeline makes."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf

from benchmarks.input_bench import (
    pil_crop_window,
    pil_eval_view,
    pil_train_view,
)
from fashion_keras.data import preprocess as P
from fashion_keras_datasets.synthetic.demo import sample_example


def _garment_jpeg(index: int, side: int) -> tuple[bytes, np.ndarray]:
    """A drawn garment (demo generator) as JPEG bytes and its normalised box."""
    example = sample_example(seed=3, split="train", index=index, max_side=side)
    image = example["image"]
    x1, y1, x2, y2 = example["bbox"]
    w, h = image.size
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90)
    return buf.getvalue(), np.array([y1 / h, x1 / w, y2 / h, x2 / w], np.float32)


@pytest.mark.parametrize("index, side", [(0, 300), (1, 300), (2, 512)])
@pytest.mark.parametrize("image_size", [224, 64])
def test_pil_eval_view_matches_the_tf_pipeline(index, side, image_size):
    data, bbox = _garment_jpeg(index, side)
    shape = tf.image.extract_jpeg_shape(data).numpy()
    window = P.crop_window(shape, tf.constant(bbox), 0.1).numpy()
    assert tuple(window) == pil_crop_window(int(shape[0]), int(shape[1]), bbox, 0.1)

    ours = P.preprocess_for_eval(tf.constant(data), image_size, tf.constant(bbox)).numpy()
    theirs = pil_eval_view(data, image_size, bbox)
    assert ours.shape == theirs.shape == (image_size, image_size, 3)
    assert theirs.dtype == np.float32
    diff = np.abs(ours - theirs)
    # PIL rounds to uint8 (pad colour, resize output); libjpeg's cropped decode differs a little
    # at the crop's edge. A shifted or mis-scaled view would differ by tens of levels.
    assert diff.mean() < 1.0
    assert np.percentile(diff, 99) < 4.0


def test_pil_train_view_shape_range_and_seed():
    data, bbox = _garment_jpeg(4, 300)
    a = pil_train_view(data, 96, bbox, np.random.default_rng(1))
    b = pil_train_view(data, 96, bbox, np.random.default_rng(1))
    assert a.shape == (96, 96, 3) and a.dtype == np.float32
    assert 0 <= a.min() and a.max() <= 255
    np.testing.assert_array_equal(a, b)
