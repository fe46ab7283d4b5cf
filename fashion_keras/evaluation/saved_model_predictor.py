"""The :class:`~fashion_keras.evaluation.predictors.Predictor` of an exported SavedModel: its
``predict_images`` signature over the views its metadata describes, its keypoint outputs, and
for a two-stage export (region crops) its own first stage's region boxes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from fashion_keras.data.config import DEFAULT_BBOX_MARGIN
from fashion_keras.data.region_lookup import photo_size
from fashion_keras.data.region_views import REGION_MARGIN, to_normalized
from fashion_keras.evaluation.keypoint_predictions import KeypointOutputs
from fashion_keras.evaluation.predictors import ModelLoadError, Predictor
from fashion_keras.evaluation.region_inputs import BoxFunction
from fashion_keras.evaluation.views import InputSpec
from fashion_keras.export import load_metadata, output_names
from fashion_keras.export.region_stage import region_output_names
from fashion_keras.export.serving_module import IMAGES_INPUT, serialize_examples
from fashion_keras.heads import heads_from_dict
from fashion_keras.heads.views import crop_input


class SavedModelPredictor(Predictor):
    """An exported version folder, through its ``predict_images`` signature."""

    def __init__(self, version_dir: str) -> None:
        meta = load_metadata(version_dir)
        self.name = version_dir
        self.heads = tuple(
            heads_from_dict({"heads": meta["heads"]}, where=f"{version_dir} metadata")
        )
        margin = meta.get("preprocessing", {}).get("bbox_margin", DEFAULT_BBOX_MARGIN)
        size = int(meta["image_size"])
        self.regions = tuple(meta.get("regions", {}).get("names", ()))
        self._names = tuple(meta.get("input", {}).get("predict_images", {IMAGES_INPUT: ""}))
        region_of = {crop_input(r): r for r in self.regions}
        self.inputs = tuple(
            InputSpec(size, float(margin), "export metadata")
            if n == IMAGES_INPUT
            else InputSpec(size, REGION_MARGIN, "region box", region=region_of[n])
            for n in self._names
        )
        loaded = tf.saved_model.load(version_dir)
        if "predict_images" not in loaded.signatures:
            raise ModelLoadError(
                f"{version_dir}: no predict_images signature (has {sorted(loaded.signatures)})"
            )
        self._loaded = loaded  # keeps the variables alive
        self._fn = loaded.signatures["predict_images"]
        self._keys = {h.name: output_names(h)[0] for h in self.softmax_heads}
        self._points = {h.name: output_names(h)[:2] for h in self.keypoint_heads}
        have = set(self._fn.structured_outputs)
        missing = sorted(k for keys in self._points.values() for k in keys if k not in have)
        if missing:
            raise ModelLoadError(
                f"{version_dir}: the predict_images signature lacks the keypoint outputs "
                f"{missing} (it has {sorted(have)}); export the model again with this version"
            )

    def predict_batch(self, images: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        x = [tf.convert_to_tensor(i, tf.float32) for i in images]
        out = self._fn(**dict(zip(self._names, x, strict=True)))
        return {name: out[key].numpy() for name, key in self._keys.items()}

    def region_boxes_of(self) -> BoxFunction | None:
        """The export's own first stage (``predict_examples`` returns ``<region>_box`` in photo
        pixels and ``<region>_found``)."""
        if not self.regions:
            return None
        fn = self._loaded.signatures["predict_examples"]

        def boxes_of(image_bytes, bboxes):
            out = fn(examples=serialize_examples(image_bytes, bboxes))
            sizes = tf.map_fn(
                lambda b: tf.stack(photo_size({"image": b})[::-1]),
                image_bytes,
                fn_output_signature=tf.TensorSpec([2], tf.float32),
            )
            result = {}
            for r in self.regions:
                box_name, found_name = region_output_names(r)
                result[r] = (to_normalized(out[box_name], sizes), out[found_name])
            return result

        return boxes_of

    def keypoint_outputs(self, images: tf.Tensor, tta: str) -> KeypointOutputs:
        """The export's ``<head>_keypoints`` / ``<head>_scores`` (view pixels); ``flip``
        averages them with the mirrored view's, mirrored back (``x -> S - 1 - x``) and
        left/right swapped: the soft-argmax is linear in the heatmap probabilities, so this is
        the average of the two heatmaps, as for Keras models."""
        images = tf.convert_to_tensor(images, tf.float32)
        # the keypoint heads read the garment view only: every other input gets the same batch
        out = self._fn(**{n: images for n in self._names})
        mirrored = (
            self._fn(**{n: tf.reverse(images, [2]) for n in self._names}) if tta == "flip" else None
        )
        width = tf.cast(tf.shape(images)[2], tf.float32)
        result = {}
        for head in self.keypoint_heads:
            points, scores = self._points[head.name]
            coords, score = out[points], out[scores]
            if mirrored is not None:
                perm = list(head.flip_permutation())
                m_coords = tf.gather(mirrored[points], perm, axis=1)
                m_coords = tf.stack([width - 1.0 - m_coords[..., 0], m_coords[..., 1]], axis=-1)
                coords = (coords + m_coords) / 2.0
                score = (score + tf.gather(mirrored[scores], perm, axis=1)) / 2.0
            result[head.name] = (coords, score)
        return result
