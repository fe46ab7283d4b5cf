"""Image preprocessing: decode with the garment-box crop fused in, pad to square, resize.

All functions work on one image and are TF graph code (used inside ``tf.data`` and inside the
exported serving signature). Images come out as float32 RGB in [0, 255]; mean/std normalisation
happens inside the model, so the exported model and training see exactly the same tensors.

Geometry (as in the competition write-ups): crop the garment box with a margin, clamped to the
image; pad the crop to a square with its mean colour; resize to ``round(image_size * 234/224)``;
take an ``image_size`` crop (central here, for evaluation and serving; the training view, a
random crop of the same square with flip and colour jitter, is :mod:`.augment`).
"""

from __future__ import annotations

import tensorflow as tf

from fashion_keras.data import geometry
from fashion_keras.data.config import DEFAULT_BBOX_MARGIN, resize_size

_FULL_IMAGE = (0.0, 0.0, 1.0, 1.0)


def crop_window(
    image_shape: tf.Tensor, bbox: tf.Tensor | None = None, margin: float = DEFAULT_BBOX_MARGIN
) -> tf.Tensor:
    """Pixel crop window ``[y, x, h, w]`` (int32) for a normalised ``(ymin, xmin, ymax, xmax)`` box.

    The box is widened by ``margin`` times its height/width on each side and clamped to the
    image; the window is at least 1x1 pixel. ``bbox=None`` means the whole image.
    """
    height = tf.cast(image_shape[0], tf.float32)
    width = tf.cast(image_shape[1], tf.float32)
    if bbox is None:
        bbox = tf.constant(_FULL_IMAGE, tf.float32)
    bbox = tf.cast(tf.reshape(bbox, [4]), tf.float32)
    ymin, xmin, ymax, xmax = bbox[0] * height, bbox[1] * width, bbox[2] * height, bbox[3] * width
    dy = (ymax - ymin) * margin
    dx = (xmax - xmin) * margin
    y0 = tf.clip_by_value(tf.floor(ymin - dy), 0.0, height - 1.0)
    x0 = tf.clip_by_value(tf.floor(xmin - dx), 0.0, width - 1.0)
    y1 = tf.clip_by_value(tf.math.ceil(ymax + dy), y0 + 1.0, height)
    x1 = tf.clip_by_value(tf.math.ceil(xmax + dx), x0 + 1.0, width)
    return tf.cast(tf.stack([y0, x0, y1 - y0, x1 - x0]), tf.int32)


def decode_window(
    image_bytes: tf.Tensor, bbox: tf.Tensor | None = None, margin: float = DEFAULT_BBOX_MARGIN
) -> tuple[tf.Tensor, tf.Tensor]:
    """:func:`decode_and_crop` plus the pixel window ``[y, x, h, w]`` it cut from the photo."""

    def _jpeg() -> tuple[tf.Tensor, tf.Tensor]:
        window = crop_window(tf.image.extract_jpeg_shape(image_bytes), bbox, margin)
        image = tf.image.decode_and_crop_jpeg(
            image_bytes, window, channels=3, dct_method="INTEGER_ACCURATE"
        )
        return image, window

    image, window = tf.cond(
        tf.io.is_jpeg(image_bytes), _jpeg, lambda: decode_whole_and_crop(image_bytes, bbox, margin)
    )
    image.set_shape([None, None, 3])
    window.set_shape([4])
    return image, window


def decode_whole_and_crop(
    image_bytes: tf.Tensor, bbox: tf.Tensor | None, margin: float
) -> tuple[tf.Tensor, tf.Tensor]:
    """Any format (PNG, GIF, BMP, WebP, JPEG): a full decode, then the cut of the garment
    window; returns the uint8 window and its ``[y, x, h, w]`` in the photo."""
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    window = crop_window(tf.shape(image), bbox, margin)
    image = tf.image.crop_to_bounding_box(image, window[0], window[1], window[2], window[3])
    return image, window


def decode_and_crop(
    image_bytes: tf.Tensor, bbox: tf.Tensor | None = None, margin: float = DEFAULT_BBOX_MARGIN
) -> tf.Tensor:
    """Decodes an encoded image to uint8 RGB, cropped to the garment box (plus margin).

    JPEGs are decoded with ``tf.image.decode_and_crop_jpeg`` so only the window is decoded;
    PNG/GIF/BMP/WebP fall back to a full decode followed by the same crop.
    """
    return decode_window(image_bytes, bbox, margin)[0]


def pad_to_square(image: tf.Tensor) -> tf.Tensor:
    """Pads an image (H, W, 3) to a centred square, filling with the image's mean colour."""
    image = tf.cast(image, tf.float32)
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    side = tf.maximum(height, width)
    top = (side - height) // 2
    left = (side - width) // 2
    mean = tf.reduce_mean(image, axis=[0, 1], keepdims=True)
    padded = tf.pad(image - mean, [[top, side - height - top], [left, side - width - left], [0, 0]])
    return padded + mean


def _resize(image: tf.Tensor, side: int) -> tf.Tensor:
    image = tf.image.resize(image, [side, side], method="bilinear", antialias=True)
    return tf.clip_by_value(image, 0.0, 255.0)


def _scale_and_translate(
    images: tf.Tensor, size: tf.Tensor, scale: tf.Tensor, translation: tf.Tensor
) -> tf.Tensor:
    # the kernel behind tf.image.resize(method="bilinear", antialias=True)
    return tf.raw_ops.ScaleAndTranslate(
        images=images,
        size=size,
        scale=scale,
        translation=translation,
        kernel_type="triangle",
        antialias=True,
    )


def square_resize(image: tf.Tensor, side: int) -> tf.Tensor:
    """``pad_to_square`` then the antialiased bilinear resize to ``side``, without the padding.

    Equal (to float rounding) to ``_resize(pad_to_square(image), side)``: the filter is linear,
    so resizing the mean-padded square is resizing the image padded with zeros, plus the mean
    colour times the resized "not image" mask (an outer product of two 1-D resizes). Only a
    border of zeros as wide as the filter's support is materialised, and the resize reads the
    integer image directly. About 1.5x faster for a square twice the output size (CPU time,
    512 px photos to 234); no faster near the output size, where its fixed cost (three passes
    over the output) matches what it saves.
    """
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    square = tf.maximum(height, width)
    mean = tf.reduce_mean(tf.cast(image, tf.float32), axis=[0, 1])
    scale = tf.cast(side, tf.float32) / tf.cast(square, tf.float32)
    # pixels of zeros that any output pixel whose filter reaches the image can see
    support = tf.cast(tf.math.ceil(2.0 * tf.maximum(1.0 / scale, 1.0)), tf.int32) + 2
    top, left = (square - height) // 2, (square - width) // 2
    pads = tf.minimum(tf.stack([top, square - height - top, left, square - width - left]), support)
    shift = tf.cast(tf.stack([top - pads[0], left - pads[2]]), tf.float32) * scale
    scales = tf.stack([scale, scale])
    pad_image = tf.stack([pads[:2], pads[2:], [0, 0]])
    out = _scale_and_translate(tf.pad(image, pad_image)[None], [side, side], scales, shift)[0]
    rows = tf.pad(tf.ones([1, height, 1, 1]), [[0, 0], pads[:2], [0, 0], [0, 0]])
    cols = tf.pad(tf.ones([1, 1, width, 1]), [[0, 0], [0, 0], pads[2:], [0, 0]])
    rows = _scale_and_translate(
        rows, [side, 1], scales * [1.0, 0.0] + [0.0, 1.0], shift * [1.0, 0.0]
    )
    cols = _scale_and_translate(
        cols, [1, side], scales * [0.0, 1.0] + [1.0, 0.0], shift * [0.0, 1.0]
    )
    uncovered = 1.0 - tf.reshape(rows, [side, 1]) * tf.reshape(cols, [1, side])
    out = out + uncovered[..., None] * mean
    return tf.clip_by_value(out, 0.0, 255.0)


def preprocess_square(
    image_bytes: tf.Tensor,
    side: int,
    bbox: tf.Tensor | None = None,
    margin: float = DEFAULT_BBOX_MARGIN,
) -> tf.Tensor:
    """Box crop, pad to square with the mean colour, resize to ``side`` x ``side``.

    The common first half of every view: evaluation takes its central crop, test-time
    augmentation (``fashion_keras.evaluation.views.tta_views``) its corner/grid crops.
    """
    return square_view(image_bytes, side, bbox, margin)[0]


def square_view(
    image_bytes: tf.Tensor,
    side: int,
    bbox: tf.Tensor | None = None,
    margin: float = DEFAULT_BBOX_MARGIN,
) -> tuple[tf.Tensor, tf.Tensor]:
    """:func:`preprocess_square` plus the photo window ``[y, x, h, w]`` it shows
    (``geometry.crop_resize_matrix(window, side)`` maps photo pixels into it)."""
    image, window = decode_window(image_bytes, bbox, margin)
    shape = tf.shape(image)
    # the fused path pays off once the square is well above the output size (see square_resize)
    image = tf.cond(
        2 * tf.maximum(shape[0], shape[1]) > 3 * side,
        lambda: square_resize(image, side),
        lambda: _resize(pad_to_square(image), side),
    )
    image.set_shape([side, side, 3])
    return image, window


def preprocess_for_eval(
    image_bytes: tf.Tensor,
    image_size: int,
    bbox: tf.Tensor | None = None,
    margin: float = DEFAULT_BBOX_MARGIN,
) -> tf.Tensor:
    """Evaluation/serving view: box crop, pad to square, resize, central ``image_size`` crop.

    Returns float32 RGB in [0, 255] of shape (image_size, image_size, 3). Training evaluation,
    prediction and the exported ``serving_default`` signature all call this function.
    """
    return eval_view(image_bytes, image_size, bbox, margin)[0]


def eval_view(
    image_bytes: tf.Tensor,
    image_size: int,
    bbox: tf.Tensor | None = None,
    margin: float = DEFAULT_BBOX_MARGIN,
) -> tuple[tf.Tensor, tf.Tensor]:
    """:func:`preprocess_for_eval` plus its 3x3 photo -> view matrix (:mod:`geometry`)."""
    side = resize_size(image_size)
    image, window = square_view(image_bytes, side, bbox, margin)
    offset = (side - image_size) // 2
    image = image[offset : offset + image_size, offset : offset + image_size, :]
    image.set_shape([image_size, image_size, 3])
    return image, geometry.crop_resize_matrix(window, side, tf.constant([offset, offset]))
