"""View geometry: where a point of the original photo lands in a training or evaluation view.

Every view (:mod:`fashion_keras.data.preprocess`) is the photo cropped to the garment box plus
margin, padded to a centred square, resized and cropped to the model's input, optionally
mirrored and (in training, when enabled) scaled and rotated about the view's centre. Each step
is affine, so a view is one 3x3 matrix ``M`` acting on homogeneous pixel-index coordinates
``(x, y, 1)`` of the photo (the convention of the annotations: integer ``x`` is the centre of
pixel column ``x``; see :mod:`fashion_keras.models.keypoint_layers`).

Keypoints follow the image through ``M``; a mirrored view also swaps the left and right slots
(``KeypointHead.flip_permutation``). A point that leaves the view becomes absent (v = -1), so
the loss masks it. Predictions go back to photo pixels through ``M``'s inverse.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import tensorflow as tf

#: Keypoint rows are ``(x, y, v)``; ``v = ABSENT`` (with x = y = -1) masks the point.
ABSENT = -1.0


def crop_resize_matrix(
    window: tf.Tensor, side: int | tf.Tensor, offset: tf.Tensor | None = None
) -> tf.Tensor:
    """Photo -> view for the crop of ``window`` (``[y, x, h, w]``, as ``crop_window`` gives),
    the pad to a centred square of side ``max(h, w)``, the resize to ``side`` (half-pixel
    centres, as ``tf.image.resize``) and the crop at ``offset`` (``[y, x]`` in the resized
    square; none: no crop). Returns float32 [3, 3]."""
    window = tf.cast(window, tf.float32)
    y0, x0, h, w = window[0], window[1], window[2], window[3]
    square = tf.maximum(h, w)
    # pad offsets are integers, as pad_to_square / square_resize place the crop
    top = tf.floor((square - h) / 2.0)
    left = tf.floor((square - w) / 2.0)
    r = tf.cast(side, tf.float32) / square
    oy, ox = (0.0, 0.0) if offset is None else tf.unstack(tf.cast(offset[:2], tf.float32))
    tx = (left - x0 + 0.5) * r - 0.5 - ox
    ty = (top - y0 + 0.5) * r - 0.5 - oy
    zero = tf.zeros([], tf.float32)
    return tf.stack(
        [tf.stack([r, zero, tx]), tf.stack([zero, r, ty]), tf.constant([0.0, 0.0, 1.0])]
    )


def flip_matrix(size: int) -> tf.Tensor:
    """The left-right mirror of a ``size`` wide view: ``x -> size - 1 - x``."""
    return tf.constant([[-1.0, 0.0, size - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def scale_rotate_matrix(size: int, scale: tf.Tensor, degrees: tf.Tensor) -> tf.Tensor:
    """Zoom by ``scale`` and rotate by ``degrees`` (counter-clockwise as seen on the image)
    about the centre of a ``size`` x ``size`` view."""
    c = (size - 1) / 2.0
    theta = tf.cast(degrees, tf.float32) * (math.pi / 180.0)
    s = tf.cast(scale, tf.float32)
    cos, sin = s * tf.cos(theta), s * tf.sin(theta)
    # y points down, so a counter-clockwise turn on screen is (x, y) -> (x cos + y sin, ...)
    tx = c - cos * c - sin * c
    ty = c + sin * c - cos * c
    return tf.stack([tf.stack([cos, sin, tx]), tf.stack([-sin, cos, ty]), [0.0, 0.0, 1.0]])


def warp_image(image: tf.Tensor, matrix: tf.Tensor) -> tf.Tensor:
    """``image`` (H, W, C float) resampled so that input pixel ``p`` lands at ``matrix @ p``
    (bilinear; outside the input: reflected, as ``keras.layers.RandomRotation`` fills)."""
    inverse = tf.linalg.inv(matrix)
    transform = tf.reshape(inverse, [9])[:8] / inverse[2, 2]
    shape = tf.shape(image)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None],
        transforms=transform[None],
        output_shape=shape[:2],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )[0]
    out.set_shape(image.shape)
    return out


def transform_keypoints(
    points: tf.Tensor,
    matrix: tf.Tensor,
    size: int,
    flipped: tf.Tensor | bool = False,
    flip_permutation: Sequence[int] | None = None,
) -> tf.Tensor:
    """Keypoints ``(K, 3)`` ``(x, y, v)`` of the photo -> the same in a ``size`` x ``size`` view.

    Absent points (v = -1) stay absent; a point the view does not contain (beyond the outer
    half pixel) becomes absent. When ``flipped``, slot ``i`` takes the point of slot
    ``flip_permutation[i]`` (left and right swap names in a mirror image).
    """
    points = tf.cast(tf.reshape(points, [-1, 3]), tf.float32)
    present = points[:, 2] > ABSENT
    xy1 = tf.concat([points[:, :2], tf.ones_like(points[:, :1])], axis=1)
    xy = tf.matmul(xy1, matrix, transpose_b=True)[:, :2]
    inside = tf.reduce_all((xy >= -0.5) & (xy <= size - 0.5), axis=1)
    keep = present & inside
    out = tf.where(
        keep[:, None], tf.concat([xy, points[:, 2:]], axis=1), tf.fill(tf.shape(points), ABSENT)
    )
    if flip_permutation is not None:
        permuted = tf.gather(out, list(flip_permutation))
        out = tf.where(tf.cast(flipped, tf.bool), permuted, out)
    return out


def to_photo(coords: tf.Tensor, matrix: tf.Tensor) -> tf.Tensor:
    """View coordinates ``(..., 2)`` -> photo pixels through the inverse of the view's
    ``matrix`` (``(3, 3)``, or ``(N, 3, 3)`` for a batch ``(N, K, 2)``)."""
    coords = tf.cast(coords, tf.float32)
    inverse = tf.linalg.inv(tf.cast(matrix, tf.float32))
    ones = tf.ones_like(coords[..., :1])
    xy1 = tf.concat([coords, ones], axis=-1)
    return tf.linalg.matvec(inverse[..., None, :, :], xy1)[..., :2]
