"""The serving module: a model's inference with one method per input type.

Shaped like TF Model Garden's ``official/vision/serving/export_base.py``: each input type has
one method that decodes/preprocesses it and calls the same output function, and
:meth:`ServingModule.endpoints` names them as SavedModel signatures:

- ``serving_default`` (:meth:`~ServingModule.predict_image_bytes`): ``image_bytes`` (tf.string,
  [None]): encoded JPEG/PNG/GIF/BMP/WebP bytes of whole photos, preprocessed by
  :func:`~fashion_keras.data.preprocess.preprocess_for_eval` (no garment box: the whole image,
  padded to square, resized, centre crop), exactly the evaluation view used in training.
- ``predict_images`` (:meth:`~ServingModule.predict_images`): ``images`` (float32,
  [None, S, S, 3]): RGB in [0, 255], already cropped, padded and resized to the model's input
  size S (the output of ``preprocess_for_eval``); the mean/std normalisation is inside the model.
- ``predict_examples`` (:meth:`~ServingModule.predict_examples`): ``examples`` (tf.string,
  [None]): serialized ``tf.train.Example`` protos (TFX / TFMA) with the encoded image in the
  bytes feature :data:`EXAMPLE_IMAGE_KEY` and, optionally, the garment box ``(ymin, xmin, ymax,
  xmax)`` normalised in the float feature :data:`EXAMPLE_BBOX_KEY` (the dataset builders' own
  feature names); the box crop is the one training evaluation applies.

Outputs, per softmax head: ``<head>_probs`` (float32 [None, num_classes], rows sum to 1),
``<head>_class`` (int64 [None], argmax), ``<head>_label`` (string [None], the class name read
from the head's class list, shipped as the asset ``assets/<head>.classes.txt``) and
``<head>_class_names`` (string [None, num_classes], every class name in ``<head>_probs`` column
order, so a remote client can name its top-k classes without a copy of the class list).

Per keypoint head (:class:`~fashion_keras.heads.KeypointHead`): ``<head>_keypoints`` (float32
[None, K, 2], ``(x, y)`` by the heatmaps' soft-argmax, in pixel-index coordinates of the input
photo: for ``serving_default`` and ``predict_examples`` the encoded photo's own pixels, mapped
back through the inverse of the evaluation view's geometry
(:func:`~fashion_keras.data.preprocess.eval_view`), for ``predict_images`` the given S x S
image's), ``<head>_scores`` (float32 [None, K], each keypoint's visibility probability) and
``<head>_keypoint_names`` (string [None, K], the keypoint names in ``<head>_keypoints`` order).
The values are those of :func:`fashion_keras.evaluation.keypoint_predictions.predict_keypoints`
(no test-time augmentation).

A model with region crops (``model.regions``) is exported with its first stage
(:class:`~fashion_keras.export.region_stage.RegionStage`): for ``serving_default`` and
``predict_examples`` a keypoint model finds each region's box, the region's view is cropped at
it, and ``<region>_box`` / ``<region>_found`` join the outputs; ``predict_images`` takes one
input per view (:meth:`ServingModule.image_inputs`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import tensorflow as tf

from fashion_keras.data import geometry
from fashion_keras.data.config import DEFAULT_BBOX_MARGIN
from fashion_keras.data.preprocess import eval_view
from fashion_keras.data.region_views import REGION_MARGIN
from fashion_keras.export.region_stage import RegionStage, region_output_names
from fashion_keras.heads import (
    AnyHead,
    Head,
    KeypointHead,
    heads_to_dict,
    keypoint_heads,
    softmax_heads,
    visibility_output,
)
from fashion_keras.heads.views import crop_input, model_views
from fashion_keras.models.keypoint_layers import expected_position, spatial_log_softmax

log = logging.getLogger("fashion_keras")

SERVING_INPUT = "image_bytes"
IMAGES_INPUT = "images"
EXAMPLES_INPUT = "examples"
#: tf.Example feature holding the encoded image (the TFDS builders' ``image`` feature).
EXAMPLE_IMAGE_KEY = "image"
#: Optional tf.Example float feature: normalised garment box (ymin, xmin, ymax, xmax).
EXAMPLE_BBOX_KEY = "bbox"
#: Signature name -> its one input name.
SIGNATURES = {
    "serving_default": SERVING_INPUT,
    "predict_images": IMAGES_INPUT,
    "predict_examples": EXAMPLES_INPUT,
}


def serialize_examples(image_bytes: Any, bboxes: Any | None = None) -> tf.Tensor:
    """The ``predict_examples`` input for encoded images and optional normalised garment
    boxes ``[N, 4]``: serialized ``tf.train.Example`` protos (eager)."""
    images = [bytes(b) for b in tf.convert_to_tensor(image_bytes).numpy()]
    boxes = None if bboxes is None else tf.convert_to_tensor(bboxes, tf.float32).numpy()
    out = []
    for i, image in enumerate(images):
        feature = {
            EXAMPLE_IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))
        }
        if boxes is not None:
            feature[EXAMPLE_BBOX_KEY] = tf.train.Feature(
                float_list=tf.train.FloatList(value=[float(v) for v in boxes[i]])
            )
        example = tf.train.Example(features=tf.train.Features(feature=feature))
        out.append(example.SerializeToString())
    return tf.constant(out, tf.string, shape=[len(out)])


def output_names(head: AnyHead) -> tuple[str, ...]:
    """The output names of a head: for a softmax head probabilities, class index, class name and
    all class names; for a keypoint head coordinates, scores and keypoint names."""
    n = head.name
    if isinstance(head, KeypointHead):
        return f"{n}_keypoints", f"{n}_scores", f"{n}_keypoint_names"
    return f"{n}_probs", f"{n}_class", f"{n}_label", f"{n}_class_names"


def _keypoint_stride(model: keras.Model, heads: Sequence[KeypointHead]) -> int:
    """Input pixels per heatmap cell of the keypoint heads (``model.keypoint_stride``)."""
    stride = getattr(model, "keypoint_stride", None)
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(
            f"keypoint heads {[h.name for h in heads]!r}: model.keypoint_stride = {stride!r} "
            "must be the heatmaps' stride (an int >= 1); export a MultiHeadClassifier, which "
            "records it"
        )
    return stride


def model_bbox_margin(model: keras.Model) -> float | None:
    """The garment-box margin a model was trained with (``model.preprocessing``), if recorded."""
    preprocessing = getattr(model, "preprocessing", None) or {}
    margin = preprocessing.get("bbox_margin")
    return None if margin is None else float(margin)


def _class_table(head: Head, asset_dir: str) -> tf.lookup.StaticHashTable:
    path = os.path.join(asset_dir, f"{head.name}.classes.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(head.classes) + "\n")
    init = tf.lookup.TextFileInitializer(
        path,
        key_dtype=tf.int64,
        key_index=tf.lookup.TextFileIndex.LINE_NUMBER,
        value_dtype=tf.string,
        value_index=tf.lookup.TextFileIndex.WHOLE_LINE,
    )
    return tf.lookup.StaticHashTable(init, default_value="")


class ServingModule:
    """A model's inference for each input type (see the module docstring).

    Args:
      model: a built model with a fixed square image input and, per head, its outputs: a
        softmax output named after a softmax head; heatmap logits named after a keypoint head
        and ``<head>_visibility`` probabilities (a ``MultiHeadClassifier``'s outputs).
      asset_dir: a folder for the class-list files the lookup tables read (they are copied into
        the SavedModel's ``assets/``).
      heads: defaults to ``model.heads``; softmax and keypoint heads in any mix.
      bbox_margin: the garment-box margin of the ``predict_examples`` crop; default: the one
        the model was trained with (``model.preprocessing``), else 0.1.
      training_data: the ``DataConfig`` (as a dict) the model was trained on, for the metadata.
      keypoint_model: for a model with region crops (``model.regions``), the keypoint model
        whose points give the regions' boxes (:class:`~.region_stage.RegionStage`); default:
        the model itself, when it has such keypoint heads.
    """

    def __init__(
        self,
        model: keras.Model,
        asset_dir: str,
        *,
        heads: Sequence[AnyHead] | None = None,
        bbox_margin: float | None = None,
        training_data: Mapping[str, Any] | None = None,
        keypoint_model: keras.Model | None = None,
    ) -> None:
        if keras.backend.backend() != "tensorflow":
            raise RuntimeError(
                f"SavedModel export needs KERAS_BACKEND=tensorflow, not {keras.backend.backend()!r}"
            )
        shape = model.inputs[0].shape
        if shape[1] is None or shape[2] != shape[1]:
            raise ValueError(f"the model's input shape {shape} is not a fixed square image size")
        self.model = model
        self.heads = tuple(heads if heads is not None else model.heads)
        self.image_size = int(shape[1])
        if bbox_margin is None:
            bbox_margin = model_bbox_margin(model)
        if bbox_margin is None:
            log.info(
                "the model records no garment-box margin; exporting with %s", DEFAULT_BBOX_MARGIN
            )
            bbox_margin = DEFAULT_BBOX_MARGIN
        self.bbox_margin = float(bbox_margin)
        self.training_data = dict(training_data) if training_data is not None else None
        self.softmax_heads = softmax_heads(self.heads)
        self.keypoint_heads = keypoint_heads(self.heads)
        self.keypoint_stride = (
            _keypoint_stride(model, self.keypoint_heads) if self.keypoint_heads else None
        )
        self.tables = {h.name: _class_table(h, asset_dir) for h in self.softmax_heads}
        self.regions = tuple(getattr(model, "regions", ()) or ())
        self.views = model_views(model.heads, self.regions)
        self.region_stage = None
        if self.regions:
            if keypoint_model is None and not keypoint_heads(model.heads):
                raise ValueError(
                    f"the model crops the regions {list(self.regions)!r}: exporting it needs "
                    "the keypoint model that finds them (keypoint_model=...; "
                    "python -m fashion_keras.export MODEL --keypoint-model KEYPOINT_MODEL)"
                )
            self.region_stage = RegionStage(keypoint_model or model, self.regions)

    def trackables(self) -> list[Any]:
        """What the SavedModel must hold: the model(s) and the class-name tables."""
        stage = self.region_stage.trackables() if self.region_stage else []
        return [self.model, *stage, *self.tables.values()]

    def outputs(
        self, images: tf.Tensor | Mapping[str | None, tf.Tensor], matrices: tf.Tensor | None = None
    ) -> dict[str, tf.Tensor]:
        """The named outputs of every head for a float32 image batch (the model's view; for a
        model with regions, ``{view: batch}`` keyed by :func:`~fashion_keras.heads.views.model_views`).

        ``matrices`` (``[N, 3, 3]``, photo -> garment view) take keypoints back to photo
        pixels; without them keypoints are in the pixels of ``images``.
        """
        if self.regions:
            first = images[self.views[0]]
            images = {crop_input(v): tf.cast(images[v], tf.float32) for v in self.views}
        else:
            first = images
        probs = self.model(images, training=False)
        batch = tf.shape(first, out_type=tf.int64)[0]
        out = {}
        for h in self.heads:
            if isinstance(h, KeypointHead):
                out.update(self._keypoint_outputs(h, probs, batch, matrices))
                continue
            p_name, c_name, l_name, n_name = output_names(h)
            table = self.tables[h.name]
            p = tf.cast(probs[h.name], tf.float32)
            cls = tf.argmax(p, axis=-1, output_type=tf.int64)
            names = table.lookup(tf.range(h.num_classes, dtype=tf.int64))
            out[p_name] = tf.identity(p, name=p_name)
            out[c_name] = tf.identity(cls, name=c_name)
            out[l_name] = tf.identity(table.lookup(cls), name=l_name)
            out[n_name] = tf.identity(tf.tile(names[None], [batch, 1]), name=n_name)
        return out

    def _keypoint_outputs(
        self,
        head: KeypointHead,
        model_out: Mapping[str, tf.Tensor],
        batch: tf.Tensor,
        matrices: tf.Tensor | None,
    ) -> dict[str, tf.Tensor]:
        k_name, s_name, n_name = output_names(head)
        probs = tf.exp(spatial_log_softmax(model_out[head.name]))
        coords = tf.convert_to_tensor(expected_position(probs, self.keypoint_stride))
        if matrices is not None:
            coords = geometry.to_photo(coords, matrices)
        scores = tf.cast(model_out[visibility_output(head.name)], tf.float32)
        names = tf.constant(head.keypoints, tf.string)
        return {
            k_name: tf.identity(coords, name=k_name),
            s_name: tf.identity(scores, name=s_name),
            n_name: tf.identity(tf.tile(names[None], [batch, 1]), name=n_name),
        }

    def _eval_views(
        self, image_bytes: tf.Tensor, bboxes: tf.Tensor | None
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """The evaluation views ``[N, S, S, 3]`` and their photo -> view matrices ``[N, 3, 3]``."""
        size, margin = self.image_size, self.bbox_margin
        spec = (tf.TensorSpec([size, size, 3], tf.float32), tf.TensorSpec([3, 3], tf.float32))
        if bboxes is None:
            return tf.map_fn(
                lambda b: eval_view(b, size, None, margin),
                image_bytes,
                fn_output_signature=spec,
            )
        return tf.map_fn(
            lambda x: eval_view(x[0], size, x[1], margin),
            (image_bytes, bboxes),
            fn_output_signature=spec,
        )

    def _photo_outputs(
        self, image_bytes: tf.Tensor, bboxes: tf.Tensor | None
    ) -> dict[str, tf.Tensor]:
        """The outputs for encoded photos: the garment view and, for a model with regions,
        the region stage's boxes, each region's view of its box, and the boxes."""
        if not self.regions:
            return self.outputs(*self._eval_views(image_bytes, bboxes))
        boxes = self.region_stage.boxes(image_bytes, bboxes)
        views, matrices = {}, None
        if None in self.views:
            views[None], matrices = self._eval_views(image_bytes, bboxes)
        size = self.image_size
        for region in self.regions:
            views[region] = tf.map_fn(
                lambda x: eval_view(x[0], size, x[1], REGION_MARGIN)[0],
                (image_bytes, boxes.normalized[region]),
                fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32),
            )
        out = self.outputs(views, matrices)
        for region in self.regions:
            box_name, found_name = region_output_names(region)
            out[box_name] = tf.identity(boxes.pixels[region], name=box_name)
            out[found_name] = tf.identity(boxes.found[region], name=found_name)
        return out

    def predict_images(self, *images: tf.Tensor) -> dict[str, tf.Tensor]:
        """Preprocessed float32 RGB 0-255 images of the model's input size, one batch per
        view (:meth:`image_inputs`; keypoints in their pixels)."""
        if not self.regions:
            return self.outputs(tf.cast(images[0], tf.float32))
        return self.outputs(dict(zip(self.views, images, strict=True)))

    def image_inputs(self) -> tuple[str, ...]:
        """The inputs of ``predict_images``: ``images`` (the garment view), then
        ``<region>_crop`` per cropped region."""
        return tuple(IMAGES_INPUT if v is None else crop_input(v) for v in self.views)

    def predict_image_bytes(self, image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        """Encoded whole photos (no garment box; keypoints in the photos' pixels)."""
        return self._photo_outputs(image_bytes, None)

    def predict_examples(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
        """Serialized ``tf.train.Example`` protos with the image and an optional box (keypoints
        in the photos' pixels)."""
        spec = {
            EXAMPLE_IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
            EXAMPLE_BBOX_KEY: tf.io.FixedLenFeature([4], tf.float32, [0.0, 0.0, 1.0, 1.0]),
        }
        parsed = tf.io.parse_example(examples, spec)
        return self._photo_outputs(parsed[EXAMPLE_IMAGE_KEY], parsed[EXAMPLE_BBOX_KEY])

    def endpoints(self) -> dict[str, tuple[Callable[[tf.Tensor], dict], list[tf.TensorSpec]]]:
        """Signature name -> (method, input signature), for ``ExportArchive.add_endpoint``."""
        size = self.image_size
        return {
            "serving_default": (
                self.predict_image_bytes,
                [tf.TensorSpec([None], tf.string, name=SERVING_INPUT)],
            ),
            "predict_images": (
                self.predict_images,
                [
                    tf.TensorSpec([None, size, size, 3], tf.float32, name=n)
                    for n in self.image_inputs()
                ],
            ),
            "predict_examples": (
                self.predict_examples,
                [tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)],
            ),
        }

    def metadata(self) -> dict[str, Any]:
        """The record every predictor reads back: heads, input size, inputs, outputs and the
        preprocessing (``assets.extra/fashion_keras.json``)."""
        size = self.image_size
        return {
            **heads_to_dict(self.heads),
            "image_size": size,
            "input": {
                "serving_default": {SERVING_INPUT: "encoded image bytes, tf.string [None]"},
                "predict_images": {
                    name: f"float32 RGB 0-255 [None, {size}, {size}, 3]"
                    for name in self.image_inputs()
                },
                "predict_examples": {
                    EXAMPLES_INPUT: "serialized tf.Example, tf.string [None]",
                    "features": {
                        EXAMPLE_IMAGE_KEY: "bytes: encoded image",
                        EXAMPLE_BBOX_KEY: "optional float[4]: ymin, xmin, ymax, xmax in [0, 1]",
                    },
                },
            },
            "outputs": {h.name: list(output_names(h)) for h in self.heads},
            "preprocessing": {
                "bbox_margin": self.bbox_margin,
                "pad_to_square": "mean colour",
                "resize_then_centre_crop": True,
            },
            **({"keypoints": self._keypoint_metadata()} if self.keypoint_heads else {}),
            **({"regions": self.region_stage.metadata()} if self.region_stage else {}),
            **({"training_data": self.training_data} if self.training_data else {}),
        }

    def _keypoint_metadata(self) -> dict[str, Any]:
        return {
            "heatmap_stride": self.keypoint_stride,
            "coordinates": "x, y pixel indices (integer x: the centre of pixel column x) of the "
            "input: the encoded photo (serving_default, predict_examples) or the S x S image "
            "(predict_images)",
            "scores": "visibility probability per keypoint",
        }
