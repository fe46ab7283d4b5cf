"""The first stage of a two-stage export: a keypoint model finds each region's box in the photo.

A model trained with region crops (``MultiHeadClassifier(regions=...)``) reads, besides the
garment view, the view of each region's box. In the exported model those boxes come from a
keypoint model inside the same SavedModel (:class:`RegionStage`): its evaluation view of the
photo (its own input size and garment-box margin), the heatmaps' soft-argmax taken back to photo
pixels, a keypoint counting as present when its visibility probability is at least
``min_score``, and the region's box from the present points by the rules of
:mod:`fashion_keras.heads.region_boxes` (:func:`~fashion_keras.data.region_views.keypoint_region_boxes`,
the same function training's ground-truth boxes use). A photo where fewer than two of a
region's keypoints are present falls back to the garment box, as in training.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import keras
import tensorflow as tf

from fashion_keras.data import geometry
from fashion_keras.data.config import DEFAULT_BBOX_MARGIN
from fashion_keras.data.preprocess import eval_view
from fashion_keras.data.region_lookup import FULL_IMAGE, photo_size
from fashion_keras.data.region_views import (
    keypoint_head_for,
    keypoint_region_boxes,
    to_normalized,
    to_pixels,
)
from fashion_keras.heads import KeypointHead, keypoint_heads, visibility_output
from fashion_keras.heads.views import IMAGE_INPUT
from fashion_keras.models.keypoint_layers import expected_position, spatial_log_softmax

#: The visibility probability from which a predicted keypoint counts as present.
MIN_SCORE = 0.5


def region_output_names(region: str) -> tuple[str, str]:
    """The outputs of a region in a two-stage export: its box (``<region>_box``, float32
    ``[N, 4]`` ``x1, y1, x2, y2`` pixel edges of the photo) and whether the keypoints found it
    (``<region>_found``, bool ``[N]``; False: the garment box was used)."""
    return f"{region}_box", f"{region}_found"


class RegionBoxes(NamedTuple):
    """Per region: the normalised box the view crops (``ymin, xmin, ymax, xmax``), the same
    box in photo pixels (``x1, y1, x2, y2``) and whether the keypoints gave it."""

    normalized: dict[str, tf.Tensor]
    pixels: dict[str, tf.Tensor]
    found: dict[str, tf.Tensor]


def keypoint_stage_model(model: keras.Model) -> keras.Model:
    """``model``'s keypoint heads on its garment view alone (its own layers and weights): the
    model itself when that is all it reads, else a model of the garment input, the
    normalisation, the backbone and the keypoint heads (in inference batch normalisation uses
    its moving statistics, so the outputs are the full model's)."""
    if not isinstance(model.input, dict):
        return model
    image = keras.Input(shape=model.input[IMAGE_INPUT].shape[1:], name=IMAGE_INPUT)
    maps = model.backbone(model.get_layer("normalize")(image))
    outputs = {}
    for head in keypoint_heads(model.heads):
        heatmaps, visibility = model.get_layer(head.name)(maps)
        outputs[head.name] = heatmaps
        outputs[visibility_output(head.name)] = visibility
    return keras.Model(image, outputs, name=f"{model.name}_keypoints")


class RegionStage:
    """Region boxes from a keypoint model (see the module docstring).

    Args:
      keypoint_model: a ``MultiHeadClassifier`` whose keypoint heads have every region's
        keypoints (e.g. trained with ``--heads fashionai_keypoints``; the attribute model
        itself when it was trained with that head too).
      regions: the region names.
      min_score: the visibility probability from which a keypoint is present.
    """

    def __init__(
        self, keypoint_model: keras.Model, regions: Sequence[str], min_score: float = MIN_SCORE
    ) -> None:
        heads = keypoint_heads(getattr(keypoint_model, "heads", ()))
        self.regions = tuple(regions)
        self.heads: dict[str, KeypointHead] = {r: keypoint_head_for(r, heads) for r in regions}
        self.model = keypoint_stage_model(keypoint_model)
        self.image_size = int(self.model.inputs[0].shape[1])
        margin = (getattr(keypoint_model, "preprocessing", None) or {}).get("bbox_margin")
        self.bbox_margin = DEFAULT_BBOX_MARGIN if margin is None else float(margin)
        self.stride = int(keypoint_model.keypoint_stride)
        self.min_score = float(min_score)

    def trackables(self) -> list[Any]:
        return [self.model]

    def keypoints(
        self, image_bytes: tf.Tensor, bboxes: tf.Tensor
    ) -> dict[str, tuple[tf.Tensor, tf.Tensor]]:
        """``{keypoint head: (coords [N, K, 2] photo pixels, scores [N, K])}``."""
        size, margin = self.image_size, self.bbox_margin
        spec = (tf.TensorSpec([size, size, 3], tf.float32), tf.TensorSpec([3, 3], tf.float32))
        views, matrices = tf.map_fn(
            lambda x: eval_view(x[0], size, x[1], margin),
            (image_bytes, bboxes),
            fn_output_signature=spec,
        )
        out = self.model(views, training=False)
        result = {}
        for head in dict.fromkeys(self.heads.values()):
            probs = tf.exp(spatial_log_softmax(out[head.name]))
            coords = geometry.to_photo(expected_position(probs, self.stride), matrices)
            scores = tf.cast(out[visibility_output(head.name)], tf.float32)
            result[head.name] = (coords, scores)
        return result

    def boxes(self, image_bytes: tf.Tensor, bboxes: tf.Tensor | None = None) -> RegionBoxes:
        """Each region's box in a batch of encoded photos (``bboxes``: their normalised garment
        boxes, the whole photo when ``None``); the garment box where not found."""
        if bboxes is None:
            bboxes = tf.tile(tf.constant([FULL_IMAGE], tf.float32), [tf.shape(image_bytes)[0], 1])
        bboxes = tf.cast(bboxes, tf.float32)
        sizes = tf.map_fn(
            lambda b: tf.stack(photo_size({"image": b})[::-1]),
            image_bytes,
            fn_output_signature=tf.TensorSpec([2], tf.float32),
        )
        points = self.keypoints(image_bytes, bboxes)
        out = RegionBoxes({}, {}, {})
        for region, head in self.heads.items():
            coords, scores = points[head.name]
            v = tf.where(scores >= self.min_score, 1.0, geometry.ABSENT)
            pixels, found = keypoint_region_boxes(
                region, tf.concat([coords, v[..., None]], axis=-1), head, sizes
            )
            out.normalized[region] = tf.where(found[:, None], to_normalized(pixels, sizes), bboxes)
            out.pixels[region] = tf.where(found[:, None], pixels, to_pixels(bboxes, sizes))
            out.found[region] = found
        return out

    def metadata(self) -> dict[str, Any]:
        return {
            "names": list(self.regions),
            "keypoint_heads": {r: h.name for r, h in self.heads.items()},
            "keypoint_model": {"image_size": self.image_size, "bbox_margin": self.bbox_margin},
            "min_score": self.min_score,
            "outputs": {r: list(region_output_names(r)) for r in self.regions},
            "box": "x1, y1, x2, y2 pixel edges of the photo; the garment box (the whole photo "
            "for serving_default) where fewer than two of the region's keypoints are present "
            "(<region>_found false)",
        }
