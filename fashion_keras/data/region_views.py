"""Region boxes in TF graphs, and the region views a region model reads.

:func:`keypoint_region_boxes` is :func:`fashion_keras.heads.region_boxes.region_boxes` as TF ops
(the same rules, pixel edges and clamping; tested equal), so the boxes can come from keypoints
inside ``tf.data`` (a dataset's ground-truth keypoints, :func:`boxes_from_keypoints`) and inside
the exported two-stage model (a keypoint model's predictions). :func:`to_normalized` turns pixel
boxes into the ``(ymin, xmin, ymax, xmax)`` form of ``bbox`` that the views crop with.

A region view is the evaluation or training view (:mod:`.preprocess`, :mod:`.augment`) of the
region's box with no further margin (:data:`REGION_MARGIN`: a region grows its own, see
:class:`~fashion_keras.heads.regions.Region`); a model with regions reads it in the input
:func:`crop_input` names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import tensorflow as tf

from fashion_keras.data.augment import train_view
from fashion_keras.data.preprocess import eval_view
from fashion_keras.heads import AnyHead, KeypointHead, keypoint_heads
from fashion_keras.heads.names import HeadSpecError
from fashion_keras.heads.region_boxes import region_indices
from fashion_keras.heads.regions import Region, get_region
from fashion_keras.heads.views import crop_input

#: The garment box of an example without one: the whole photo.
FULL_IMAGE = (0.0, 0.0, 1.0, 1.0)

#: The garment-box margin of a region's view: none, the region's box has its own.
REGION_MARGIN = 0.0


def keypoint_head_for(region: Region | str, heads: Sequence[AnyHead]) -> KeypointHead:
    """The first keypoint head of ``heads`` that has all of ``region``'s keypoints."""
    region = get_region(region)
    for head in keypoint_heads(heads):
        if all(k in head.keypoints for k in region.keypoints):
            return head
    raise HeadSpecError(
        f"region {region.name!r} needs the keypoints {list(region.keypoints)!r}; none of the "
        f"keypoint heads {[h.name for h in keypoint_heads(heads)]!r} has them all (use "
        "fashionai_keypoints, or give the boxes in a region file)"
    )


def keypoint_region_boxes(
    region: Region | str, keypoints: tf.Tensor, head: KeypointHead, image_sizes: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """:func:`~fashion_keras.heads.region_boxes.region_boxes` in TF.

    Args:
      keypoints: float ``[N, K, 3]`` ``(x, y, v)`` in photo pixels, ``head.keypoints`` order
        (``v >= 0``: present).
      image_sizes: float ``[N, 2]`` ``(width, height)``.

    Returns:
      ``(boxes, found)``: float32 ``[N, 4]`` ``(x1, y1, x2, y2)`` pixel edges (zeros where not
      found) and bool ``[N]``.
    """
    region = get_region(region)
    points = tf.gather(tf.cast(keypoints, tf.float32), list(region_indices(region, head)), axis=1)
    sizes = tf.cast(image_sizes, tf.float32)
    width, height = sizes[:, 0], sizes[:, 1]
    x, y, v = points[..., 0], points[..., 1], points[..., 2]
    present = (v >= 0) & tf.math.is_finite(x) & tf.math.is_finite(y)
    found = tf.reduce_sum(tf.cast(present, tf.int32), axis=1) >= 2
    inf = tf.constant(float("inf"))

    def _edge(values: tf.Tensor, fill: tf.Tensor, reduce: Any) -> tf.Tensor:
        return tf.where(found, reduce(tf.where(present, values, fill), axis=1), 0.0)

    x1, x2 = _edge(x, inf, tf.reduce_min), _edge(x, -inf, tf.reduce_max) + 1.0
    y1, y2 = _edge(y, inf, tf.reduce_min), _edge(y, -inf, tf.reduce_max) + 1.0
    y1 = y1 - region.extend_up * (y2 - y1)
    w, h = x2 - x1, y2 - y1
    x1, x2 = x1 - region.margin * w, x2 + region.margin * w
    y1, y2 = y1 - region.margin * h, y2 + region.margin * h
    if region.square:
        side = tf.maximum(x2 - x1, y2 - y1)
        x1, x2 = _grow(x1, x2, side)
        y1, y2 = _grow(y1, y2, side)
    least = region.min_size * tf.minimum(width, height)
    x1, x2 = _grow(x1, x2, least)
    y1, y2 = _grow(y1, y2, least)
    x1, x2 = tf.clip_by_value(x1, 0.0, width), tf.clip_by_value(x2, 0.0, width)
    y1, y2 = tf.clip_by_value(y1, 0.0, height), tf.clip_by_value(y2, 0.0, height)
    found = found & (x2 > x1) & (y2 > y1)
    boxes = tf.stack([x1, y1, x2, y2], axis=1)
    return tf.where(found[:, None], boxes, 0.0), found


def _grow(a: tf.Tensor, b: tf.Tensor, length: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    short = b - a < length
    centre = (a + b) / 2
    return tf.where(short, centre - length / 2, a), tf.where(short, centre + length / 2, b)


def to_normalized(boxes: tf.Tensor, image_sizes: tf.Tensor) -> tf.Tensor:
    """Pixel ``(x1, y1, x2, y2)`` ``[..., 4]`` -> normalised ``(ymin, xmin, ymax, xmax)`` (the
    ``bbox`` form) for ``image_sizes`` ``[..., 2]`` ``(width, height)``."""
    sizes = tf.cast(image_sizes, tf.float32)
    x1, y1, x2, y2 = tf.unstack(tf.cast(boxes, tf.float32), axis=-1)
    width, height = sizes[..., 0], sizes[..., 1]
    return tf.stack([y1 / height, x1 / width, y2 / height, x2 / width], axis=-1)


def to_pixels(boxes: tf.Tensor, image_sizes: tf.Tensor) -> tf.Tensor:
    """The inverse of :func:`to_normalized`."""
    sizes = tf.cast(image_sizes, tf.float32)
    ymin, xmin, ymax, xmax = tf.unstack(tf.cast(boxes, tf.float32), axis=-1)
    width, height = sizes[..., 0], sizes[..., 1]
    return tf.stack([xmin * width, ymin * height, xmax * width, ymax * height], axis=-1)


def region_box(example: Mapping[str, Any], region: str) -> tf.Tensor:
    """The normalised box of ``region`` in an example: its ``region_boxes`` entry (a region
    file's or its keypoints', :mod:`.region_lookup`), else the garment ``bbox`` (the whole
    photo without one)."""
    boxes = example.get("region_boxes", {})
    if region in boxes:
        return boxes[region]
    return example["bbox"] if "bbox" in example else tf.constant(FULL_IMAGE, tf.float32)


def _view_box(
    example: Mapping[str, Any], view: str | None, bbox_margin: float
) -> tuple[tf.Tensor | None, float]:
    """The box and margin a view crops: the region's box with no margin, or the garment box."""
    if view is not None:
        return region_box(example, view), REGION_MARGIN
    return (example["bbox"] if "bbox" in example else None), bbox_margin


def _model_inputs(images: dict[str | None, tf.Tensor]) -> tf.Tensor | dict[str, tf.Tensor]:
    """A model's input: the garment view alone, or a dict of views keyed by input name."""
    if list(images) == [None]:
        return images[None]
    return {crop_input(v): image for v, image in images.items()}


def train_views(
    example: Mapping[str, Any],
    views: Sequence[str | None],
    image_size: int,
    bbox_margin: float,
    seed: tf.Tensor,
    scale: float = 0.0,
    rotation: float = 0.0,
) -> tuple[Any, tf.Tensor | None, tf.Tensor | bool]:
    """The training views of one example (:func:`~.augment.train_view`), each view with the
    same ``seed`` (the same flip and offset draws): ``(model input, the garment view's photo ->
    view matrix or None, whether it is mirrored)``."""
    made = {
        v: train_view(
            example["image"],
            image_size,
            *_view_box(example, v, bbox_margin),
            seed=seed,
            scale=scale,
            rotation=rotation,
        )
        for v in views
    }
    garment = made.get(None)
    images = _model_inputs({v: view.image for v, view in made.items()})
    if garment is None:
        return images, None, False
    return images, garment.matrix, garment.flipped


def eval_views(
    example: Mapping[str, Any], views: Sequence[str | None], image_size: int, bbox_margin: float
) -> tuple[Any, tf.Tensor | None]:
    """The evaluation views of one example (:func:`~.preprocess.eval_view`): ``(model input,
    the garment view's photo -> view matrix or None)``."""
    made = {
        v: eval_view(example["image"], image_size, *_view_box(example, v, bbox_margin))
        for v in views
    }
    matrix = made[None][1] if None in made else None
    return _model_inputs({v: image for v, (image, _) in made.items()}), matrix
