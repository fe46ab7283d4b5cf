"""Predictors: every saved model form behind one interface, and running one over examples.

Every model kind a user has after training reads through one :class:`Predictor` interface:

- a Keras file (``model.keras``, ``checkpoints/best.keras``) or a training run folder;
- an exported SavedModel (a version folder, or the export base: its newest version), through
  its ``predict_images`` signature and the metadata in ``assets.extra/fashion_keras.json``;
- a feature-stacking model written by ``python -m fashion_keras.train_stack``.

:func:`fashion_keras.evaluation.model_loading.load_predictor` picks the right one for a path.

Preprocessing travels with the model: each predictor's :attr:`Predictor.inputs` holds the input
size and garment-box margin the model was trained with, read from the model itself (a Keras
file's ``preprocessing``), the export metadata, a stack's ``stack.json``, or the training run's
``config.json`` for Keras files saved before models recorded it (else the default, with a
warning). :func:`predict_examples` runs a predictor over TFDS-format examples (image bytes +
box) with the views of a test-time-augmentation mode, averaging the views' probabilities.

Keypoint heads (:class:`~fashion_keras.heads.KeypointHead`) are not probabilities:
:meth:`Predictor.predict_keypoints` gives each one's points in the photo's own pixels
(:mod:`fashion_keras.evaluation.keypoint_predictions`), for Keras models and exports alike
(:func:`fashion_keras.evaluation.ensembles.predict_keypoints` averages several models');
:func:`predict_examples` and :meth:`Predictor.predict_batch` cover the softmax heads.
"""

from __future__ import annotations

import abc
import json
import logging
import os
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from fashion_keras.data.config import DEFAULT_BBOX_MARGIN
from fashion_keras.data.region_lookup import FallbackCounts
from fashion_keras.data.region_views import REGION_MARGIN
from fashion_keras.evaluation import keypoint_predictions
from fashion_keras.evaluation.keypoint_predictions import KeypointOutputs, KeypointPredictions
from fashion_keras.evaluation.region_inputs import BoxFunction, region_examples
from fashion_keras.evaluation.views import (
    KEYPOINT_TTA_MODES,
    NUM_VIEWS,
    InputSpec,
    check_tta_mode,
    override_margin,
    view_batches,
)
from fashion_keras.export.region_stage import (
    RegionStage,
    keypoint_stage_model,
)
from fashion_keras.heads import (
    AnyHead,
    Head,
    KeypointHead,
    heads_from_dict,
    keypoint_heads,
    softmax_heads,
)
from fashion_keras.heads.views import crop_input, model_views

log = logging.getLogger("fashion_keras")

#: File name of a feature-stacking model's description (see ``fashion_keras.train_stack``).
STACK_FILE = "stack.json"


class ModelLoadError(ValueError):
    """A model path that is not a Keras file, SavedModel, export base, run folder or stack."""


class Predictor(abc.ABC):
    """A model that maps batches of images to per-head probabilities (softmax heads) and
    photos to keypoints (keypoint heads).

    Attributes:
      name: a short label (the path it was loaded from).
      heads: the heads it predicts (softmax and keypoint heads).
      inputs: the view each image input expects (one for a plain model; a stack of several
        backbones has one per member).
    """

    name: str
    heads: tuple[AnyHead, ...]
    inputs: tuple[InputSpec, ...]
    #: the regions whose views the model reads (a model trained with region crops)
    regions: tuple[str, ...] = ()
    #: after :func:`predict_examples` on a model with regions: the garment-box fallbacks
    region_fallbacks: FallbackCounts | None = None

    def region_boxes_of(self) -> BoxFunction | None:
        """What finds the regions' boxes in photos for this model (its keypoint stage), or
        None (:mod:`~fashion_keras.evaluation.region_inputs`)."""
        return None

    @property
    def image_sizes(self) -> tuple[int, ...]:
        """The square input size of each image input."""
        return tuple(i.image_size for i in self.inputs)

    @property
    def softmax_heads(self) -> tuple[Head, ...]:
        return softmax_heads(self.heads)

    @property
    def keypoint_heads(self) -> tuple[KeypointHead, ...]:
        return keypoint_heads(self.heads)

    @abc.abstractmethod
    def predict_batch(self, images: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """The softmax heads' probabilities; ``images``: one float32 (B, S, S, 3) array per
        entry of ``inputs``."""

    def keypoint_outputs(self, images: tf.Tensor, tta: str) -> KeypointOutputs:
        """``{head: (coords (N, K, 2) in view pixels, scores (N, K))}`` of the keypoint heads
        for a batch of evaluation views, with keypoint TTA ``tta`` (``none`` or ``flip``)."""
        raise ValueError(
            f"{self.name}: {type(self).__name__} has no keypoint outputs (heads "
            f"{[h.name for h in self.keypoint_heads]!r}); use a .keras file, run folder or "
            "export of a model with keypoint heads"
        )

    def predict_keypoints(
        self,
        examples: tf.data.Dataset,
        *,
        tta: str = "none",
        batch_size: int = 32,
        bbox_margin: float | None = None,
        labelled_only: bool = True,
    ) -> dict[str, KeypointPredictions]:
        """Each keypoint head's predictions over ``examples`` in photo pixels
        (:func:`~fashion_keras.evaluation.keypoint_predictions.predict_keypoints` on the
        evaluation view at the model's size and margin, ``bbox_margin`` overriding it);
        ``tta``: ``none`` or ``flip``."""
        if tta not in KEYPOINT_TTA_MODES:
            raise ValueError(
                f"keypoint tta = {tta!r}: expected one of {', '.join(KEYPOINT_TTA_MODES)}"
            )
        if not self.keypoint_heads:
            return {}
        view = override_margin(self.inputs, bbox_margin)[0]
        return keypoint_predictions.predict_keypoints(
            getattr(self, "model", None),
            examples,
            self.heads,
            view.image_size,
            bbox_margin=view.bbox_margin,
            batch_size=batch_size,
            tta=tta,
            labelled_only=labelled_only,
            outputs=lambda images: self.keypoint_outputs(images, tta),
        )


def _run_config_margin(path: str) -> tuple[float, str] | None:
    """The margin in the ``config.json`` of the training run a Keras file belongs to
    (``RUN/model.keras``, ``RUN/checkpoints/best.keras``), if there is one."""
    from fashion_keras.training.config import TrainConfig  # only for files without a margin

    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    for candidate in (folder, os.path.dirname(folder)):
        config = os.path.join(candidate, "config.json")
        if os.path.isfile(config):
            margin = TrainConfig.load(config).preprocess.resolved_margin()
            return margin, config
    return None


def keras_input(model: keras.Model, path: str | None = None) -> InputSpec:
    """The view a Keras classifier expects: its input size, and the margin it records
    (``model.preprocessing``), else the one in its run's ``config.json``, else the default."""
    size = model.inputs[0].shape[1]
    if size is None:
        raise ModelLoadError(
            f"{path or model.name}: the model's input shape {model.inputs[0].shape}"
        )
    margin = (getattr(model, "preprocessing", None) or {}).get("bbox_margin")
    if margin is not None:
        return InputSpec(int(size), float(margin), "model")
    found = _run_config_margin(path) if path else None
    if found is not None:
        return InputSpec(int(size), found[0], found[1])
    log.warning(
        "%s records no garment-box margin: using the default %s (pass --bbox-margin if it was "
        "trained with another)",
        path or model.name,
        DEFAULT_BBOX_MARGIN,
    )
    return InputSpec(int(size), DEFAULT_BBOX_MARGIN, "default")


class KerasPredictor(Predictor):
    """A ``MultiHeadClassifier`` (or any dict-output Keras model with ``heads``).

    ``path``: the file or run folder it was loaded from (to find the run's ``config.json`` when
    the model records no preprocessing).
    """

    def __init__(
        self,
        model: keras.Model,
        name: str = "model",
        path: str | None = None,
        keypoint_model: keras.Model | None = None,
    ) -> None:
        heads = getattr(model, "heads", None)
        if not heads:
            raise ModelLoadError(f"{name}: the Keras model has no `heads` attribute")
        self.model = model
        self.name = name
        self.heads = tuple(heads)
        self.regions = tuple(getattr(model, "regions", ()) or ())
        garment = keras_input(model, path)
        views = model_views(self.heads, self.regions)
        self.inputs = tuple(
            garment
            if v is None
            else InputSpec(garment.image_size, REGION_MARGIN, "region box", region=v)
            for v in views
        )
        self._names = tuple(crop_input(v) for v in views)
        self.keypoint_model = keypoint_model
        self._fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    def predict_batch(self, images: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        x = [tf.convert_to_tensor(i, tf.float32) for i in images]
        out = self._fn(dict(zip(self._names, x, strict=True)) if self.regions else x[0])
        return {h.name: np.asarray(out[h.name], np.float32) for h in self.softmax_heads}

    def keypoint_outputs(self, images: tf.Tensor, tta: str) -> KeypointOutputs:
        stride = int(getattr(self.model, "keypoint_stride", 4))
        return keypoint_predictions.keypoint_outputs(
            keypoint_stage_model(self.model), images, self.keypoint_heads, stride, tta
        )

    def region_boxes_of(self) -> BoxFunction | None:
        """The keypoint model's boxes (``keypoint_model``, else the model's own keypoint
        head), as the two-stage export finds them."""
        source = self.keypoint_model
        if source is None and self.keypoint_heads:
            source = self.model
        if not self.regions or source is None:
            return None
        stage = RegionStage(source, self.regions)

        def boxes_of(image_bytes, bboxes):
            found = stage.boxes(image_bytes, bboxes)
            return {r: (found.normalized[r], found.found[r]) for r in self.regions}

        return boxes_of


def feature_extractor(model: keras.Model) -> keras.Model:
    """The image -> pooled-feature part of a ``MultiHeadClassifier`` (its ``pool`` layer)."""
    if getattr(model, "regions", ()):
        raise ModelLoadError(
            f"model {model.name!r} reads region crops {list(model.regions)!r}: its heads pool "
            "different views, so it has no one feature vector to stack; stack models trained "
            "without --region-crops"
        )
    try:
        pool = model.get_layer("pool")
    except ValueError:
        raise ModelLoadError(
            f"model {model.name!r} has no 'pool' layer; feature stacking needs "
            "MultiHeadClassifier Keras files"
        ) from None
    return keras.Model(model.inputs[0], pool.output, name=f"{model.name}_features")


class FeatureStack:
    """Several frozen ``MultiHeadClassifier`` backbones whose pooled features are concatenated.

    Each member sees the image in its own view (input size and garment-box margin).
    """

    def __init__(self, members: Sequence[KerasPredictor]) -> None:
        if not members:
            raise ValueError("a feature stack needs at least one model")
        self.extractors = [feature_extractor(m.model) for m in members]
        self.inputs = tuple(m.inputs[0] for m in members)
        self.dims = tuple(int(m.outputs[0].shape[-1]) for m in self.extractors)
        self._fns = [
            tf.function(lambda x, m=m: m(x, training=False), reduce_retracing=True)
            for m in self.extractors
        ]

    @property
    def image_sizes(self) -> tuple[int, ...]:
        return tuple(i.image_size for i in self.inputs)

    def features(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(B, sum of dims) features for one image batch per member input."""
        feats = [
            np.asarray(fn(tf.convert_to_tensor(x, tf.float32)))
            for fn, x in zip(self._fns, images, strict=True)
        ]
        return np.concatenate(feats, axis=-1)

    def example_features(
        self,
        examples: tf.data.Dataset,
        *,
        tta: str = "none",
        bbox_margin: float | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """(N, sum of dims) features of encoded examples, averaged over TTA views
        (``bbox_margin`` overrides the members' own; ``kwargs``: :func:`view_batches` options)."""
        check_tta_mode(tta)
        views = NUM_VIEWS[tta]
        inputs = override_margin(self.inputs, bbox_margin)
        chunks = [
            self.features(images).reshape(n, views, -1).mean(axis=1)
            for n, images in view_batches(examples, inputs, tta=tta, **kwargs)
        ]
        if not chunks:
            return np.zeros((0, sum(self.dims)), np.float32)
        return np.concatenate(chunks)


class StackPredictor(Predictor):
    """A :class:`FeatureStack` followed by a small MLP with one softmax per head
    (written by ``python -m fashion_keras.train_stack``)."""

    def __init__(
        self, stack: FeatureStack, head_model: keras.Model, heads: Sequence[Head], name: str
    ) -> None:
        self.stack = stack
        self.head_model = head_model
        self.heads = tuple(heads)
        self.inputs = stack.inputs
        self.name = name

    @classmethod
    def load(cls, stack_dir: str) -> StackPredictor:
        """Loads a ``train_stack`` output folder (its ``stack.json``)."""
        path = os.path.join(stack_dir, STACK_FILE)
        with open(path, encoding="utf-8") as f:
            spec = json.load(f)
        members = [
            load_keras_predictor(m if os.path.isabs(m) else os.path.join(stack_dir, m))
            for m in spec["members"]
        ]
        for member, saved in zip(members, spec.get("inputs", ()), strict=False):
            # the view the stack was trained with, whatever the member file records
            member.inputs = (InputSpec(saved["image_size"], saved["bbox_margin"], path),)
        return cls(
            FeatureStack(members),
            load_keras_model(os.path.join(stack_dir, spec["head_model"])),
            heads_from_dict({"heads": spec["heads"]}, where=path),
            stack_dir,
        )

    def predict_batch(self, images: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        out = self.head_model(self.stack.features(images), training=False)
        return {h.name: np.asarray(out[h.name], np.float32) for h in self.softmax_heads}


def load_keras_model(path: str) -> keras.Model:
    """Loads a ``.keras`` file written by this package (registers its classes first)."""
    import fashion_keras.models  # noqa: F401  (registers the custom classes)

    if not os.path.isfile(path):
        raise ModelLoadError(f"no such Keras file: {path}")
    return keras.saving.load_model(path, compile=False)


def keras_file(path: str) -> str:
    """A Keras model path: a ``.keras`` file or a training run folder (its ``model.keras``)."""
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "model.keras")):
        return os.path.join(path, "model.keras")
    if not (os.path.isfile(path) and path.endswith(".keras")):
        raise ModelLoadError(
            f"{path}: feature stacking needs Keras models (.keras files or training run "
            "folders); a SavedModel has no pooled-feature output"
        )
    return path


def load_keras_predictor(path: str) -> KerasPredictor:
    """A :class:`KerasPredictor` for a ``.keras`` file or a training run folder."""
    return KerasPredictor(load_keras_model(keras_file(path)), name=path, path=path)


def union_heads(predictors: Sequence[Predictor]) -> tuple[AnyHead, ...]:
    """The heads of several models, in order of first appearance; a head name shared by
    several models must have the same classes (a keypoint head: the same keypoints and
    categories) in each."""
    heads: dict[str, AnyHead] = {}
    for p in predictors:
        for h in p.heads:
            first = heads.get(h.name)
            if first is not None and (
                isinstance(first, KeypointHead) or isinstance(h, KeypointHead)
            ):
                if first != h:
                    raise ValueError(
                        f"head {h.name!r} differs between the models ({first.to_dict()} and "
                        f"{h.to_dict()} in {p.name}); an ensemble needs the same heads"
                    )
            elif first is not None and first.classes != h.classes:
                raise ValueError(
                    f"head {h.name!r} has classes {list(heads[h.name].classes)} in one model and "
                    f"{list(h.classes)} in {p.name}; an ensemble needs the same classes"
                )
            heads.setdefault(h.name, h)
    return tuple(heads.values())


def predict_examples(
    predictor: Predictor,
    examples: tf.data.Dataset,
    *,
    tta: str = "none",
    batch_size: int = 32,
    bbox_margin: float | None = None,
    resize_ratio: float | None = None,
) -> dict[str, np.ndarray]:
    """Per softmax head probabilities ``(N, classes)`` for every example, averaged over TTA views
    (examples as in :func:`~fashion_keras.evaluation.views.view_batches`; row order is kept).

    Each input is cropped with the predictor's own margin unless ``bbox_margin`` overrides it.
    """
    check_tta_mode(tta)
    views = NUM_VIEWS[tta]
    heads = predictor.softmax_heads
    if not heads:
        return {}
    if predictor.regions:
        examples, predictor.region_fallbacks = region_examples(
            examples, predictor.regions, predictor.region_boxes_of(), predictor.name, batch_size
        )
    chunks: dict[str, list[np.ndarray]] = {h.name: [] for h in heads}
    batches = view_batches(
        examples,
        override_margin(predictor.inputs, bbox_margin),
        tta=tta,
        batch_size=batch_size,
        resize_ratio=resize_ratio,
    )
    for n, images in batches:
        probs = predictor.predict_batch(images)
        for h in heads:
            chunks[h.name].append(probs[h.name].reshape(n, views, -1).mean(axis=1))
    return {
        h.name: (
            np.concatenate(chunks[h.name])
            if chunks[h.name]
            else np.zeros((0, h.num_classes), np.float32)
        )
        for h in heads
    }
