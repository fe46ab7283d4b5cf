"""Image preprocessing: decode with the garment-box crop fused in, pad to square, resize, augment.

All functions work on one image and are TF graph code (used inside ``tf.data`` and inside the
exported serving signature). Images come out as float32 RGB in [0, 255]; mean/std normalisation
happens inside the model, so the exported model and training see exactly the same tensors.

Geometry (as in the competition write-ups): crop the garment box with a margin, clamped to the
image; pad the crop to a square with its mean colour; resize to ``round(image_size * 234/224)``;
take an ``image_size`` crop (random for training, central for evaluation).
"""

from __future__ import annotations

import tensorflow as tf

#: Resize-then-crop ratio (resize 234 -> crop 224, scaled to the image size).
RESIZE_RATIO = 234 / 224
#: Default margin around the garment box, as a fraction of the box's height/width on each side.
DEFAULT_BBOX_MARGIN = 0.1
_FULL_IMAGE = (0.0, 0.0, 1.0, 1.0)


def resize_size(image_size: int) -> int:
    """The side the padded square is resized to before the ``image_size`` crop."""
    return int(round(image_size * RESIZE_RATIO))


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


def decode_and_crop(
    image_bytes: tf.Tensor, bbox: tf.Tensor | None = None, margin: float = DEFAULT_BBOX_MARGIN
) -> tf.Tensor:
    """Decodes an encoded image to uint8 RGB, cropped to the garment box (plus margin).

    JPEGs are decoded with ``tf.image.decode_and_crop_jpeg`` so only the window is decoded;
    PNG/GIF/BMP/WebP fall back to a full decode followed by the same crop.
    """

    def _jpeg() -> tf.Tensor:
        window = crop_window(tf.image.extract_jpeg_shape(image_bytes), bbox, margin)
        return tf.image.decode_and_crop_jpeg(
            image_bytes, window, channels=3, dct_method="INTEGER_ACCURATE"
        )

    def _other() -> tf.Tensor:
        image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
        window = crop_window(tf.shape(image), bbox, margin)
        return tf.image.crop_to_bounding_box(image, window[0], window[1], window[2], window[3])

    image = tf.cond(tf.io.is_jpeg(image_bytes), _jpeg, _other)
    image.set_shape([None, None, 3])
    return image


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
    image = pad_to_square(decode_and_crop(image_bytes, bbox, margin))
    side = resize_size(image_size)
    image = _resize(image, side)
    offset = (side - image_size) // 2
    image = image[offset : offset + image_size, offset : offset + image_size, :]
    image.set_shape([image_size, image_size, 3])
    return image


def preprocess_for_train(
    image_bytes: tf.Tensor,
    image_size: int,
    bbox: tf.Tensor | None = None,
    margin: float = DEFAULT_BBOX_MARGIN,
    seed: tf.Tensor | None = None,
    brightness: float = 0.1,
    contrast: float = 0.2,
    saturation: float = 0.2,
) -> tf.Tensor:
    """Training view: box crop, pad, resize, random ``image_size`` crop, flip and colour jitter.

    Args:
      seed: a stateless random seed, shape (2,) int; the same seed gives the same augmentation.
      brightness: maximum brightness shift as a fraction of the 0-255 range.
      contrast, saturation: maximum relative change (factor drawn from [1 - c, 1 + c]).
    """
    if seed is None:
        seed = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32)
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=5)
    image = pad_to_square(decode_and_crop(image_bytes, bbox, margin))
    image = _resize(image, resize_size(image_size))
    image = tf.image.stateless_random_crop(image, [image_size, image_size, 3], seed=seeds[0])
    image = tf.image.stateless_random_flip_left_right(image, seed=seeds[1])
    image = image / 255.0
    if brightness:
        image = tf.image.stateless_random_brightness(image, brightness, seed=seeds[2])
    if contrast:
        image = tf.image.stateless_random_contrast(image, 1 - contrast, 1 + contrast, seeds[3])
    if saturation:
        image = tf.image.stateless_random_saturation(
            image, 1 - saturation, 1 + saturation, seeds[4]
        )
    image = tf.clip_by_value(image, 0.0, 1.0) * 255.0
    image.set_shape([image_size, image_size, 3])
    return image
