"""Training views: garment-box crop, pad, resize, random crop, flip and colour jitter, made cheap.

The view is the one :mod:`.preprocess` describes (crop the garment box with its margin, pad to
a square with the crop's mean colour, resize to ``round(image_size * 234/224)``, take a random
``image_size`` crop, mirror half the views, jitter brightness, contrast and saturation), made
with as few passes over pixels as the geometry allows, since a CPU core feeds the accelerator:

1. the JPEG is decoded at the largest DCT scale (1, 1/2, 1/4, 1/8) that keeps the window at
   least the resized square's side (libjpeg's scaled decoding is a proper low-pass; at 1/2 a
   512 px window decodes in about 80 % of the time, and the resize has a quarter of the
   pixels to read);
2. only the window is decoded (``decode_and_crop_jpeg``) and it is resized once, from uint8,
   straight to its place in the square, bilinear; antialiased only where it shrinks the window
   by more than 1.25x;
3. the window is mirrored before the resize (uint8, smaller than the view), and the random crop
   cuts the resized window and pads it to the crop's size with the fill colour, the window's
   mean (no square is materialised);
4. brightness, contrast and saturation are one affine map of RGB (:func:`colour_transform`):
   one matrix multiply and a clip, not a pass over the pixels per step. This is the one
   deliberate change: saturation blends with the luma grey (PIL's ``ImageEnhance.Color``,
   torchvision's ``ColorJitter``) instead of scaling HSV saturation, which is not affine.

Measured inside ``tf.data`` on the development machines: a JPEG decode of a 300 px photo
costs about 0.4 ms, each elementwise pass over a 224 x 224 float view about 0.1 ms, and each
of the hundred-odd small ops that place the crop a few microseconds; the view costs about four
decodes (``benchmarks/README.md``, part 1).

The random draws are those of the first version (``tf.image.stateless_random_crop`` / ``_flip``
/ ``_contrast`` / ``_saturation`` on the same seeds); ``tests/data/test_training_view.py``
compares the views with that version's on the same seeds. The evaluation and serving view
(:func:`~.preprocess.eval_view`) is unchanged: antialiased, from the full-resolution decode.

With ``augment_on = accelerator`` the CPU stops after step 1: :func:`window_example` decodes
the window, the batch is padded to :func:`window_extent` and :func:`window_batch` adds each
view's draws (:func:`batch_draws`); the model's training step makes the same view from them
(:mod:`fashion_keras.models.batch_view`). :func:`check_batch_view` says which runs it serves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import tensorflow as tf

from fashion_keras.data import geometry
from fashion_keras.data.config import DEFAULT_BBOX_MARGIN
from fashion_keras.data.preprocess import crop_window, decode_whole_and_crop, resize_size
from fashion_keras.heads import AnyHead, keypoint_heads
from fashion_keras.models.batch_view import (
    ANTIALIAS_ABOVE,
    LUMA,
    PHOTO_KEY,
    PLAN_KEY,
    window_extent,
)

#: The DCT scales libjpeg decodes at: 1/1, 1/2, 1/4, 1/8.
DCT_RATIOS = (1, 2, 4, 8)


class TrainView(NamedTuple):
    """A training view: the image, its 3x3 photo -> view matrix and whether it is mirrored."""

    image: tf.Tensor
    matrix: tf.Tensor
    flipped: tf.Tensor


def decode_scaled_window(
    image_bytes: tf.Tensor,
    bbox: tf.Tensor | None,
    margin: float,
    min_side: int,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Decodes the garment window (box plus ``margin``) at the smallest DCT scale that keeps
    its long side at least ``min_side``.

    Returns ``(uint8 image, origin, ratio)``: decoded pixel ``(i, j)`` covers the photo pixels
    ``origin + ratio * (i, j)`` to ``origin + ratio * (i + 1, j + 1)`` (``origin``: float32
    ``[y, x]``). A scaled window is rounded out to whole scaled pixels, so it may show up to
    ``ratio - 1`` photo pixels more on each side. Non-JPEG images are decoded whole and cut.
    """

    def _jpeg() -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        shape = tf.image.extract_jpeg_shape(image_bytes)
        window = crop_window(shape, bbox, margin)
        long_side = tf.maximum(window[2], window[3])
        ratio, index = tf.constant(1, tf.int32), tf.constant(0, tf.int32)
        for i, r in enumerate(DCT_RATIOS[1:], 1):  # 2, 4, 8: the last that fits wins
            fits = long_side >= r * min_side
            ratio, index = tf.where(fits, r, ratio), tf.where(fits, i, index)
        top, left = window[0] // ratio, window[1] // ratio
        scaled_h, scaled_w = -(-shape[0] // ratio), -(-shape[1] // ratio)
        bottom = tf.minimum(-(-(window[0] + window[2]) // ratio), scaled_h)
        right = tf.minimum(-(-(window[1] + window[3]) // ratio), scaled_w)
        scaled = tf.stack([top, left, bottom - top, right - left])

        def decode(r: int):  # the ratio attribute is static: one branch per scale
            return lambda: tf.image.decode_and_crop_jpeg(
                image_bytes, scaled, channels=3, ratio=r, dct_method="INTEGER_ACCURATE"
            )

        image = tf.switch_case(index, [decode(r) for r in DCT_RATIOS])
        return image, tf.cast(tf.stack([top, left]) * ratio, tf.float32), ratio

    def _other() -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        image, window = decode_whole_and_crop(image_bytes, bbox, margin)
        return image, tf.cast(window[:2], tf.float32), tf.constant(1, tf.int32)

    image, origin, ratio = tf.cond(tf.io.is_jpeg(image_bytes), _jpeg, _other)
    image.set_shape([None, None, 3])
    origin.set_shape([2])
    return image, origin, ratio


def _resize_window(image: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
    """uint8 (h, w, 3) -> float32 ``size``: bilinear, antialiased only where it shrinks by more
    than :data:`ANTIALIAS_ABOVE` (below, the triangle filter's support is about one pixel)."""
    shrink = tf.cast(tf.shape(image)[:2], tf.float32) / tf.cast(size, tf.float32)
    return tf.cond(
        tf.reduce_any(shrink > ANTIALIAS_ABOVE),
        lambda: tf.image.resize(image, size, method="bilinear", antialias=True),
        lambda: tf.image.resize(image, size, method="bilinear"),
    )


def colour_params(
    seeds: tf.Tensor, brightness: float, contrast: float, saturation: float
) -> tf.Tensor:
    """``(brightness delta on 0-255, contrast factor, saturation factor)``, float32 [3], drawn
    as ``tf.image.stateless_random_brightness`` / ``_contrast`` / ``_saturation`` draw them
    from ``seeds[2]``, ``seeds[3]``, ``seeds[4]``; a range of 0 draws nothing (0, 1, 1)."""
    delta = tf.constant(0.0)
    c = s = tf.constant(1.0)
    if brightness:
        delta = tf.random.stateless_uniform([], seeds[2], -brightness, brightness) * 255.0
    if contrast:
        c = tf.random.stateless_uniform([], seeds[3], 1 - contrast, 1 + contrast)
    if saturation:
        s = tf.random.stateless_uniform([], seeds[4], 1 - saturation, 1 + saturation)
    return tf.stack([delta, c, s])


def colour_transform(params: tf.Tensor, mean: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The colour jitter as one affine map of RGB: ``(matrix [3, 3], bias [3])``, applied as
    ``pixels @ matrix + bias``.

    ``params`` from :func:`colour_params`, ``mean`` the image's per-channel mean. Brightness
    adds ``delta``; contrast scales each channel about its mean by ``c``
    (``tf.image.adjust_contrast``); saturation blends with the luma grey by ``s``
    (``grey + s * (rgb - grey)``, as PIL and torchvision). All three are affine, so their
    product is: one matrix multiply per pixel instead of a pass per step.
    """
    delta, c, s = params[0], params[1], params[2]
    luma = tf.constant(LUMA, tf.float32)
    # saturation: z = M y, M = s I + (1 - s) 1 luma^T; brightness and contrast (about the
    # brightened mean m + delta): y = c (x + delta - m - delta) + m + delta = c x + (1 - c) m + delta
    blend = s * tf.eye(3) + (1.0 - s) * tf.ones([3, 1]) * luma[None, :]
    matrix = tf.transpose(c * blend)
    bias = tf.linalg.matvec(blend, (1.0 - c) * mean + delta)
    return matrix, bias


def _crop_draws(seeds: tf.Tensor, image_size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """The crop offset in the resized square (int32 [2]) and the mirror (bool), drawn as
    ``tf.image.stateless_random_crop`` and ``stateless_random_flip_left_right`` draw them."""
    side = resize_size(image_size)
    crop = tf.constant([image_size, image_size, 3], tf.int32)
    offset = tf.random.stateless_uniform([3], seeds[0], maxval=crop.dtype.max, dtype=tf.int32)
    offset = (offset % (tf.constant([side, side, 3]) - crop + 1))[:2]
    flipped = tf.random.stateless_uniform([], seeds[1], 0, 1.0) < 0.5
    return offset, flipped


def view_draws(
    seed: tf.Tensor,
    image_size: int,
    brightness: float = 0.1,
    contrast: float = 0.2,
    saturation: float = 0.2,
) -> tf.Tensor:
    """The random draws :func:`train_view` makes from ``seed``, float32 ``[6]``: crop offset
    (y, x), mirror (1/0), brightness delta (0-255), contrast and saturation factors; the
    draw columns of :data:`fashion_keras.models.batch_view.PLAN_FIELDS`."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=7)
    offset, flipped = _crop_draws(seeds, image_size)
    colour = colour_params(seeds, brightness, contrast, saturation)
    return tf.concat([tf.cast(offset, tf.float32), [tf.cast(flipped, tf.float32)], colour], 0)


def batch_draws(
    seed: tf.Tensor,
    batch: tf.Tensor,
    image_size: int,
    brightness: float = 0.1,
    contrast: float = 0.2,
    saturation: float = 0.2,
) -> tf.Tensor:
    """:func:`view_draws` for a batch of ``batch`` views from one stateless ``seed`` in one
    op (the same distributions, not the same numbers), float32 ``[batch, 6]``."""
    u = tf.random.stateless_uniform([batch, 6], tf.cast(seed, tf.int64))
    room = float(resize_size(image_size) - image_size + 1)
    offset = tf.minimum(tf.floor(u[:, :2] * room), room - 1)
    flip = tf.cast(u[:, 2:3] < 0.5, tf.float32)
    low = tf.constant([-brightness, 1 - contrast, 1 - saturation])
    high = tf.constant([brightness, 1 + contrast, 1 + saturation])
    colour = low + u[:, 3:] * (high - low)
    return tf.concat([offset, flip, colour * tf.constant([255.0, 1.0, 1.0])], 1)


def photo_for_batch_view(
    image_bytes: tf.Tensor, image_size: int, bbox: tf.Tensor | None, margin: float
) -> tuple[tf.Tensor, tf.Tensor]:
    """The CPU's part of the accelerator-made view (:mod:`fashion_keras.models.batch_view`):
    the garment window decoded at the DCT scale that keeps it at least the resized side, and
    its ``[height, width]`` (float32) for the plan; the batch pads the windows with zeros to
    :func:`window_extent`. A window still larger (above 1/8 scale: photos over 16 times the
    resized side) is resized on the CPU to fit."""
    window, _, _ = decode_scaled_window(image_bytes, bbox, margin, resize_size(image_size))
    extent = window_extent(image_size)
    hw = tf.shape(window)[:2]

    def shrink() -> tf.Tensor:
        scale = extent / tf.cast(tf.reduce_max(hw), tf.float32)
        size = tf.minimum(tf.cast(tf.round(tf.cast(hw, tf.float32) * scale), tf.int32), extent)
        resized = tf.image.resize(window, tf.maximum(size, 1), antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)

    window = tf.cond(tf.reduce_max(hw) > extent, shrink, lambda: window)
    window.set_shape([None, None, 3])
    return window, tf.cast(tf.shape(window)[:2], tf.float32)


def window_example(
    example: Mapping[str, Any], image_size: int, margin: float, seed: tf.Tensor
) -> dict[str, tf.Tensor]:
    """One example's part of a :func:`window_batch`: its decoded garment window
    (:func:`photo_for_batch_view`), the window's size and the example's view seed."""
    bbox = example["bbox"] if "bbox" in example else None
    window, hw = photo_for_batch_view(example["image"], image_size, bbox, margin)
    return {"window": window, "hw": hw, "seed": tf.cast(seed, tf.int64)}


def window_batch(batch: Mapping[str, tf.Tensor], image_size: int) -> dict[str, tf.Tensor]:
    """A padded batch of :func:`window_example` -> the model input the training step makes
    views of (:data:`~fashion_keras.models.batch_view.PHOTO_KEY` / ``PLAN_KEY``); the draws
    of the whole batch come from its first example's seed (:func:`batch_draws`)."""
    hw = batch["hw"]
    draws = batch_draws(batch["seed"][0], tf.shape(hw)[0], image_size)
    return {PHOTO_KEY: batch["window"], PLAN_KEY: tf.concat([hw, draws], 1)}


def check_batch_view(
    heads: Sequence[AnyHead], views: Sequence[str | None], scale: float, rotation: float
) -> None:
    """Raises ``ValueError`` where the accelerator-made view cannot serve the run: it makes the
    garment view of softmax heads, without zoom or rotation."""
    reasons = []
    if keypoint_heads(heads):
        reasons.append("keypoint heads (their targets follow the view's geometry on the CPU)")
    if list(views) != [None]:
        reasons.append(f"region views {[v for v in views if v]}")
    if scale or rotation:
        reasons.append(f"augment_scale = {scale} / augment_rotation = {rotation}")
    if reasons:
        raise ValueError(
            "augment_on = 'accelerator' makes the garment view of softmax heads only; this run "
            f"has {' and '.join(reasons)}: use augment_on = 'cpu' (or 'auto')"
        )


def train_view(
    image_bytes: tf.Tensor,
    image_size: int,
    bbox: tf.Tensor | None = None,
    margin: float = DEFAULT_BBOX_MARGIN,
    seed: tf.Tensor | None = None,
    brightness: float = 0.1,
    contrast: float = 0.2,
    saturation: float = 0.2,
    scale: float = 0.0,
    rotation: float = 0.0,
) -> TrainView:
    """One training view, with its geometry so keypoints can follow the image.

    Args:
      seed: a stateless random seed, shape (2,) int; the same seed gives the same view.
      brightness: maximum brightness shift as a fraction of the 0-255 range.
      contrast, saturation: maximum relative change (factor drawn from [1 - c, 1 + c]).
      scale: when > 0, zoom the view by a factor drawn from [1 - scale, 1 + scale] about its
        centre (after the crop and flip; the border is reflected).
      rotation: when > 0, rotate the view by an angle drawn from [-rotation, rotation] degrees.
    """
    if seed is None:
        seed = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32)
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=7)
    side = resize_size(image_size)
    window, origin, ratio = decode_scaled_window(image_bytes, bbox, margin, side)
    # the resized window's size and place in the side x side square (the pad is centred)
    hw = tf.cast(tf.shape(window)[:2], tf.float32)
    size = tf.maximum(tf.cast(tf.round(hw * side / tf.reduce_max(hw)), tf.int32), 1)
    place = (side - size) // 2
    # the fill colour: the window's mean, from every 4th row and column
    fill = tf.reduce_mean(tf.cast(window[::4, ::4], tf.float32), axis=[0, 1])
    offset, flipped = _crop_draws(seeds, image_size)
    # the mirror of the crop at x of the square is the crop at side - image_size - x of the
    # mirrored square, whose window sits at side - width - left: mirror the small uint8 window
    mirror = tf.cast(flipped, tf.int32) * tf.constant([0, 1])
    cut = offset + mirror * (side - image_size - 2 * offset)
    at = place + mirror * (side - size - 2 * place)
    window = tf.cond(flipped, lambda: tf.reverse(window, [1]), lambda: window)
    resized = _resize_window(window, size)
    # the part of the resized window inside the crop, padded with the fill colour
    start = tf.clip_by_value(cut - at, 0, size)
    stop = tf.clip_by_value(cut + image_size - at, 0, size)
    before = tf.minimum(tf.maximum(at - cut, 0), image_size)
    after = image_size - before - (stop - start)
    pads = tf.stack([tf.stack([before[0], after[0]]), tf.stack([before[1], after[1]]), [0, 0]])
    image = tf.pad(resized[start[0] : stop[0], start[1] : stop[1]] - fill, pads)  # + fill
    # photo -> view: photo pixel centre x + 0.5 -> decoded (x + 0.5 - origin) / ratio -> resized
    k = tf.cast(size, tf.float32) / (hw * tf.cast(ratio, tf.float32))
    t = (0.5 - origin) * k - 0.5 + tf.cast(place - offset, tf.float32)
    zero = tf.zeros([], tf.float32)
    matrix = tf.stack(
        [tf.stack([k[1], zero, t[1]]), tf.stack([zero, k[0], t[0]]), tf.constant([0.0, 0.0, 1.0])]
    )
    matrix = tf.cond(flipped, lambda: geometry.flip_matrix(image_size) @ matrix, lambda: matrix)
    colour = colour_params(seeds, brightness, contrast, saturation)
    if scale or rotation:
        image = image + fill
        zoom = tf.random.stateless_uniform([], seeds[5], 1.0 - scale, 1.0 + scale)
        angle = tf.random.stateless_uniform([], seeds[6], -rotation, rotation)
        warp = geometry.scale_rotate_matrix(image_size, zoom, angle)
        image = geometry.warp_image(image, warp)
        matrix = warp @ matrix
        fill = tf.zeros([3])
    if brightness or contrast or saturation:
        # (image + fill) @ A + b = image @ A + (fill @ A + b), the mean likewise
        transform, bias = colour_transform(colour, tf.reduce_mean(image, axis=[0, 1]) + fill)
        flat = tf.reshape(image, [-1, 3]) @ transform + (
            tf.linalg.matvec(transform, fill, True) + bias
        )
        image = tf.clip_by_value(tf.reshape(flat, [image_size, image_size, 3]), 0.0, 255.0)
    else:
        image = image + fill
    image.set_shape([image_size, image_size, 3])
    return TrainView(image, matrix, flipped)
