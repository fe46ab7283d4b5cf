"""The training view, the images the model learns from: geometry (garment-box crop, pad, resize,
a random crop inside the padded square), the random flip, and the colour jitter's ranges on the
0-255 scale, checked against an independent PIL + NumPy reference and through the training
pipeline itself (``make_dataset(training=True)``, as ``train`` builds it)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from benchmarks.input_bench import pil_resized_square
from fashion_keras.data import pipeline
from fashion_keras.data import preprocess as P
from fashion_keras.heads import Head
from fashion_keras_datasets.synthetic.demo import sample_example

SIZE = 64  # the crop; the square it is cut from is round(64 * 234 / 224) = 67
MARGIN = 0.1
#: The training defaults (``preprocess_for_train``): brightness +-0.1 of 255, x[0.8, 1.2].
BRIGHTNESS, CONTRAST, SATURATION = 0.1, 0.2, 0.2
VIEWS = 96  # views per check: enough that a range or a rate shows, few enough to be fast


def _garment(index: int = 3) -> tuple[bytes, np.ndarray]:
    """A drawn garment (the demo generator) as JPEG bytes, and its normalised box."""
    example = sample_example(seed=5, split="train", index=index, max_side=300)
    image = example["image"]
    x1, y1, x2, y2 = example["bbox"]
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=92)
    w, h = image.size
    return buf.getvalue(), np.array([y1 / h, x1 / w, y2 / h, x2 / w], np.float32)


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _locate(view: np.ndarray, square: np.ndarray) -> tuple[int, int, bool] | None:
    """``(y, x, mirrored)`` of the crop of ``square`` that ``view`` is, or None."""
    last = square.shape[0] - SIZE
    for y in range(last + 1):
        for x in range(last + 1):
            crop = square[y : y + SIZE, x : x + SIZE]
            for mirrored, candidate in ((False, crop), (True, crop[:, ::-1])):
                if np.allclose(view, candidate, atol=1e-3):
                    return y, x, mirrored
    return None


def test_box_crop_pad_and_resize_match_the_pil_reference():
    data, box = _garment()
    ours = P.preprocess_square(tf.constant(data), P.resize_size(SIZE), tf.constant(box), MARGIN)
    theirs = np.asarray(pil_resized_square(data, SIZE, box, MARGIN), np.float32)
    diff = np.abs(ours.numpy() - theirs)
    # PIL rounds to uint8; a shifted box, a wrong pad colour or scale differs by tens of levels
    assert ours.shape == theirs.shape == (67, 67, 3)
    assert diff.mean() < 1.0 and np.percentile(diff, 99) < 4.0


def test_random_crop_stays_inside_the_square_and_half_the_views_are_mirrored():
    """Without colour jitter every training view is one of the 4 x 4 crops of the padded,
    resized square (or its mirror image): the crop never leaves the square, moves from seed to
    seed, and about half the views are mirrored, each equal to the flipped crop."""
    data, box = _garment()
    square = P.preprocess_square(
        tf.constant(data), P.resize_size(SIZE), tf.constant(box), MARGIN
    ).numpy()
    found = []
    for seed in range(VIEWS):
        view = P.preprocess_for_train(
            tf.constant(data),
            SIZE,
            tf.constant(box),
            MARGIN,
            seed=tf.constant([seed, 7]),
            brightness=0.0,
            contrast=0.0,
            saturation=0.0,
        ).numpy()
        where = _locate(view, square)
        assert where is not None, f"seed {seed}: the view is no crop of the padded square"
        found.append(where)
    offsets = {(y, x) for y, x, _ in found}
    mirrored = np.mean([m for _, _, m in found])
    assert len(offsets) >= 8, offsets  # a random crop, not a fixed one
    assert 0.3 <= mirrored <= 0.7, mirrored


def _training_views(image: np.ndarray, seed: int = 0) -> np.ndarray:
    """``VIEWS`` training views of one image through ``make_dataset(training=True)``."""
    head = Head("h", ("a", "b"))
    examples = tf.data.Dataset.from_tensor_slices(
        {
            "image": [_png(image)] * VIEWS,
            "bbox": np.tile(np.float32([0, 0, 1, 1]), (VIEWS, 1)),
            "labels": {"h": np.zeros(VIEWS, np.int64)},
        }
    )
    ds = pipeline.make_dataset(examples, (head,), SIZE, VIEWS, training=True, seed=seed)
    images, _, _ = next(iter(ds))
    return images.numpy()


def test_brightness_shifts_by_up_to_a_tenth_of_the_255_scale():
    """A flat grey photo stays flat: contrast and saturation leave it alone, so each view is
    the grey shifted by the brightness delta, uniform in +-0.1 x 255."""
    views = _training_views(np.full((80, 60, 3), 128, np.uint8))
    flat = views.reshape(VIEWS, -1)
    assert np.ptp(flat, axis=1).max() < 1e-3
    delta = flat.mean(axis=1) - 128.0
    assert np.abs(delta).max() <= BRIGHTNESS * 255 + 0.01
    assert np.abs(delta).max() > 0.75 * BRIGHTNESS * 255 and delta.std() > 8.0


def test_contrast_scales_around_the_mean_by_a_factor_in_0_8_to_1_2_and_flips_mirror():
    """Left half 96, right half 160 (grey): brightness moves both alike, saturation leaves grey
    alone, so the step between the halves scales by the contrast factor; its sign shows which
    views are mirrored."""
    image = np.full((64, 64, 3), 96, np.uint8)
    image[:, 32:] = 160
    views = _training_views(image, seed=1)
    step = views[:, :, 44:, :].mean(axis=(1, 2, 3)) - views[:, :, :20, :].mean(axis=(1, 2, 3))
    factor = np.abs(step) / 64.0
    assert factor.min() >= 1 - CONTRAST - 0.02 and factor.max() <= 1 + CONTRAST + 0.02
    assert factor.std() > 0.06  # uniform on [0.8, 1.2]: about 0.115
    assert 0.3 <= np.mean(step < 0) <= 0.7


def test_saturation_scales_the_chroma_by_a_factor_in_0_8_to_1_2():
    """A flat colour (150, 100, 100): brightness shifts every channel alike and contrast leaves
    a flat image alone, so the chroma (max - min channel) scales by the saturation factor."""
    views = _training_views(np.tile(np.uint8([150, 100, 100]), (48, 48, 1)), seed=2)
    colour = views.reshape(VIEWS, -1, 3).mean(axis=1)
    factor = (colour.max(axis=1) - colour.min(axis=1)) / 50.0
    assert factor.min() >= 1 - SATURATION - 0.02 and factor.max() <= 1 + SATURATION + 0.02
    assert factor.std() > 0.06


@pytest.mark.parametrize("seed", [0, 1])
def test_the_training_view_stays_in_the_0_255_range(seed):
    data, box = _garment(seed)
    view = P.preprocess_for_train(tf.constant(data), SIZE, tf.constant(box), seed=[seed, 1])
    assert view.shape == (SIZE, SIZE, 3)
    assert 0.0 <= float(tf.reduce_min(view)) and float(tf.reduce_max(view)) <= 255.0
