"""Inference over trained models: loading, test-time augmentation, ensembles.

Every model kind a user has after training reads through one :class:`Predictor` interface:

- a Keras file (``model.keras``, ``checkpoints/best.keras``) or a training run folder;
- an exported SavedModel (a version folder, or the export base: its newest version), through
  its ``predict_images`` signature and the metadata in ``assets.extra/fashion_keras.json``;
- a feature-stacking model written by ``python -m fashion_keras.train_stack``.

:func:`predict_examples` runs a predictor over TFDS-format examples (image bytes + box) with
the views of a test-time-augmentation mode, averaging the views' probabilities. Several models'
probabilities are combined by :func:`combine` with weights given or found by
:func:`search_weights` on a validation split; the models may have different input sizes,
because each one preprocesses the encoded image at its own size.

Test-time augmentation (the crops are taken from the box-cropped, padded, resized square):

========================  =====  =====================================================
mode                      views  crops
========================  =====  =====================================================
``none``                  1      the evaluation view (``preprocess_for_eval``)
``flip``                  2      the evaluation view and its mirror image
``ten_crop``              10     4 corners + centre, each also mirrored
``eighteen_crop``         18     3 x 3 grid (top/middle/bottom x left/centre/right),
                                 each also mirrored
========================  =====  =====================================================

``none`` and ``flip`` crop ``image_size`` from the square resized to
``round(image_size * 234/224)`` exactly as evaluation does; the multi-crop modes resize to
``round(image_size * 256/224)`` (the usual resize-256-crop-224 convention of ten-crop) so the
crops differ meaningfully; ``resize_ratio`` overrides it.
"""

from __future__ import annotations

import abc
import dataclasses
import itertools
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from fashion_keras.data.preprocess import (
    DEFAULT_BBOX_MARGIN,
    RESIZE_RATIO,
    preprocess_square,
)
from fashion_keras.heads import Head, heads_from_dict

log = logging.getLogger("fashion_keras")

TTA_MODES = ("none", "flip", "ten_crop", "eighteen_crop")
#: Number of views per image for each TTA mode.
NUM_VIEWS = {"none": 1, "flip": 2, "ten_crop": 10, "eighteen_crop": 18}
#: Resize ratio of the multi-crop modes (resize 256, crop 224).
MULTI_CROP_RESIZE_RATIO = 256 / 224
#: File name of a feature-stacking model's description (see ``fashion_keras.train_stack``).
STACK_FILE = "stack.json"


class ModelLoadError(ValueError):
    """A model path that is not a Keras file, SavedModel, export base, run folder or stack."""


def _check_mode(mode: str) -> None:
    if mode not in TTA_MODES:
        raise ValueError(f"tta = {mode!r}: expected one of {', '.join(TTA_MODES)}")


def tta_side(image_size: int, mode: str, resize_ratio: float | None = None) -> int:
    """The side of the square the ``mode`` views are cropped from."""
    _check_mode(mode)
    if resize_ratio is None:
        resize_ratio = RESIZE_RATIO if mode in ("none", "flip") else MULTI_CROP_RESIZE_RATIO
    if resize_ratio < 1:
        raise ValueError(f"resize_ratio = {resize_ratio!r}: must be >= 1")
    return int(round(image_size * resize_ratio))


def tta_offsets(side: int, image_size: int, mode: str) -> list[tuple[int, int]]:
    """``(y, x)`` top-left corners of the crops of ``mode`` (before mirroring), in view order."""
    _check_mode(mode)
    if image_size > side:
        raise ValueError(f"crop size {image_size} is larger than the image side {side}")
    last = side - image_size
    mid = last // 2
    if mode in ("none", "flip"):
        return [(mid, mid)]
    if mode == "ten_crop":
        return [(0, 0), (0, last), (last, 0), (last, last), (mid, mid)]
    return [(y, x) for y in (0, mid, last) for x in (0, mid, last)]


def tta_views(square: tf.Tensor, image_size: int, mode: str) -> tf.Tensor:
    """The ``mode`` views of one padded, resized square image: ``(views, S, S, 3)``.

    Order: the crops of :func:`tta_offsets`, then (except for ``none``) the same crops mirrored
    left-right, in the same order.
    """
    side = int(square.shape[0])
    crops = [
        square[y : y + image_size, x : x + image_size, :]
        for y, x in tta_offsets(side, image_size, mode)
    ]
    views = tf.stack(crops)
    if mode != "none":
        views = tf.concat([views, tf.image.flip_left_right(views)], axis=0)
    return views


def preprocess_tta(
    image_bytes: tf.Tensor,
    image_size: int,
    mode: str = "none",
    bbox: tf.Tensor | None = None,
    margin: float = DEFAULT_BBOX_MARGIN,
    resize_ratio: float | None = None,
) -> tf.Tensor:
    """Encoded image -> its ``(NUM_VIEWS[mode], S, S, 3)`` float32 views (0-255 RGB)."""
    square = preprocess_square(image_bytes, tta_side(image_size, mode, resize_ratio), bbox, margin)
    return tta_views(square, image_size, mode)


# ----------------------------------------------------------------------------------------
# Predictors


class Predictor(abc.ABC):
    """A model that maps batches of images to per-head probabilities.

    Attributes:
      name: a short label (the path it was loaded from).
      heads: the heads it predicts.
      image_sizes: the square input size of each image input (one for a plain model; a stack
        of several backbones has one per member).
    """

    name: str
    heads: tuple[Head, ...]
    image_sizes: tuple[int, ...]

    @abc.abstractmethod
    def predict_batch(self, images: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """``images``: one float32 (B, S, S, 3) array per entry of ``image_sizes``."""


class KerasPredictor(Predictor):
    """A ``MultiHeadClassifier`` (or any dict-output Keras model with ``heads``)."""

    def __init__(self, model: keras.Model, name: str = "model") -> None:
        heads = getattr(model, "heads", None)
        if not heads:
            raise ModelLoadError(f"{name}: the Keras model has no `heads` attribute")
        size = model.inputs[0].shape[1]
        if size is None:
            raise ModelLoadError(f"{name}: the model's input shape {model.inputs[0].shape}")
        self.model = model
        self.name = name
        self.heads = tuple(heads)
        self.image_sizes = (int(size),)
        self._fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    def predict_batch(self, images: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        out = self._fn(tf.convert_to_tensor(images[0], tf.float32))
        return {h.name: np.asarray(out[h.name], np.float32) for h in self.heads}


class SavedModelPredictor(Predictor):
    """An exported version folder, through its ``predict_images`` signature."""

    def __init__(self, version_dir: str) -> None:
        from fashion_keras.export import load_metadata, output_names

        meta = load_metadata(version_dir)
        self.name = version_dir
        self.heads = tuple(
            heads_from_dict({"heads": meta["heads"]}, where=f"{version_dir} metadata")
        )
        self.image_sizes = (int(meta["image_size"]),)
        loaded = tf.saved_model.load(version_dir)
        if "predict_images" not in loaded.signatures:
            raise ModelLoadError(
                f"{version_dir}: no predict_images signature (has {sorted(loaded.signatures)})"
            )
        self._loaded = loaded  # keeps the variables alive
        self._fn = loaded.signatures["predict_images"]
        self._keys = {h.name: output_names(h)[0] for h in self.heads}

    def predict_batch(self, images: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        out = self._fn(tf.convert_to_tensor(images[0], tf.float32))
        return {name: out[key].numpy() for name, key in self._keys.items()}


def feature_extractor(model: keras.Model) -> keras.Model:
    """The image -> pooled-feature part of a ``MultiHeadClassifier`` (its ``pool`` layer)."""
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

    Each member sees the image at its own input size.
    """

    def __init__(self, models: Sequence[keras.Model]) -> None:
        if not models:
            raise ValueError("a feature stack needs at least one model")
        self.extractors = [feature_extractor(m) for m in models]
        self.image_sizes = tuple(int(m.inputs[0].shape[1]) for m in self.extractors)
        self.dims = tuple(int(m.outputs[0].shape[-1]) for m in self.extractors)
        self._fns = [
            tf.function(lambda x, m=m: m(x, training=False), reduce_retracing=True)
            for m in self.extractors
        ]

    def features(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(B, sum of dims) features for one image batch per member input size."""
        feats = [
            np.asarray(fn(tf.convert_to_tensor(x, tf.float32)))
            for fn, x in zip(self._fns, images, strict=True)
        ]
        return np.concatenate(feats, axis=-1)

    def example_features(
        self, examples: tf.data.Dataset, *, tta: str = "none", **kwargs: Any
    ) -> np.ndarray:
        """(N, sum of dims) features of encoded examples, averaged over TTA views
        (``kwargs``: the options of :func:`view_batches`)."""
        _check_mode(tta)
        views = NUM_VIEWS[tta]
        chunks = [
            self.features(images).reshape(n, views, -1).mean(axis=1)
            for n, images in view_batches(examples, self.image_sizes, tta=tta, **kwargs)
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
        self.image_sizes = stack.image_sizes
        self.name = name

    @classmethod
    def load(cls, stack_dir: str) -> StackPredictor:
        """Loads a ``train_stack`` output folder (its ``stack.json``)."""
        path = os.path.join(stack_dir, STACK_FILE)
        with open(path, encoding="utf-8") as f:
            spec = json.load(f)
        members = [
            load_keras_model(m if os.path.isabs(m) else os.path.join(stack_dir, m))
            for m in spec["members"]
        ]
        return cls(
            FeatureStack(members),
            load_keras_model(os.path.join(stack_dir, spec["head_model"])),
            heads_from_dict({"heads": spec["heads"]}, where=path),
            stack_dir,
        )

    def predict_batch(self, images: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        out = self.head_model(self.stack.features(images), training=False)
        return {h.name: np.asarray(out[h.name], np.float32) for h in self.heads}


def load_keras_model(path: str) -> keras.Model:
    """Loads a ``.keras`` file written by this package (registers its classes first)."""
    import fashion_keras.models  # noqa: F401  (registers the custom classes)

    if not os.path.isfile(path):
        raise ModelLoadError(f"no such Keras file: {path}")
    return keras.saving.load_model(path, compile=False)


def _latest_version(export_base: str) -> str | None:
    versions = [
        int(d)
        for d in os.listdir(export_base)
        if d.isdigit() and os.path.isfile(os.path.join(export_base, d, "saved_model.pb"))
    ]
    return os.path.join(export_base, str(max(versions))) if versions else None


def load_predictor(path: str) -> Predictor:
    """A :class:`Predictor` for any model path this package writes.

    Accepts a ``.keras`` file, a SavedModel version folder, an export base (its newest
    version), a training run folder (its ``model.keras``) or a ``train_stack`` folder.
    """
    if os.path.isfile(path):
        if not path.endswith(".keras"):
            raise ModelLoadError(f"{path}: a model file must be a .keras file")
        return KerasPredictor(load_keras_model(path), name=path)
    if not os.path.isdir(path):
        raise ModelLoadError(f"no such model file or folder: {path}")
    if os.path.isfile(os.path.join(path, STACK_FILE)):
        return StackPredictor.load(path)
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return SavedModelPredictor(path)
    latest = _latest_version(path)
    if latest:
        return SavedModelPredictor(latest)
    if os.path.isfile(os.path.join(path, "model.keras")):
        return KerasPredictor(load_keras_model(os.path.join(path, "model.keras")), name=path)
    raise ModelLoadError(
        f"{path}: not a model folder (expected saved_model.pb, numbered SavedModel versions, "
        f"model.keras or {STACK_FILE})"
    )


def split_model_paths(paths: Iterable[str]) -> list[str]:
    """Model paths given as several arguments and/or comma-separated lists."""
    out = [p for arg in paths for p in arg.split(",") if p]
    if not out:
        raise ValueError("no model path given")
    return out


# ----------------------------------------------------------------------------------------
# Running predictors over examples


def view_batches(
    examples: tf.data.Dataset,
    image_sizes: Sequence[int],
    *,
    tta: str = "none",
    batch_size: int = 32,
    bbox_margin: float = DEFAULT_BBOX_MARGIN,
    resize_ratio: float | None = None,
) -> Iterator[tuple[int, list[np.ndarray]]]:
    """Batches of TTA views of encoded examples, at each of ``image_sizes``.

    ``examples`` yield dicts with ``image`` (encoded bytes) and optionally ``bbox``
    (normalised ymin, xmin, ymax, xmax). Yields ``(n, views)``: ``n`` examples, and per image
    size a float32 ``(n * NUM_VIEWS[tta], S, S, 3)`` array, example-major (the views of one
    example are consecutive); row order is kept.
    """
    _check_mode(tta)
    sizes = tuple(int(s) for s in image_sizes)
    views = NUM_VIEWS[tta]

    def _views(example):
        bbox = example["bbox"] if "bbox" in example else None
        return tuple(
            preprocess_tta(example["image"], s, tta, bbox, bbox_margin, resize_ratio) for s in sizes
        )

    ds = examples.map(_views, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    for batch in ds:
        n = int(batch[0].shape[0])
        yield (
            n,
            [
                tf.reshape(b, (n * views, s, s, 3)).numpy()
                for b, s in zip(batch, sizes, strict=True)
            ],
        )


def predict_examples(
    predictor: Predictor,
    examples: tf.data.Dataset,
    *,
    tta: str = "none",
    batch_size: int = 32,
    bbox_margin: float = DEFAULT_BBOX_MARGIN,
    resize_ratio: float | None = None,
) -> dict[str, np.ndarray]:
    """Per-head probabilities ``(N, classes)`` for every example, averaged over TTA views
    (examples as in :func:`view_batches`; row order is kept)."""
    _check_mode(tta)
    views = NUM_VIEWS[tta]
    chunks: dict[str, list[np.ndarray]] = {h.name: [] for h in predictor.heads}
    batches = view_batches(
        examples,
        predictor.image_sizes,
        tta=tta,
        batch_size=batch_size,
        bbox_margin=bbox_margin,
        resize_ratio=resize_ratio,
    )
    for n, images in batches:
        probs = predictor.predict_batch(images)
        for h in predictor.heads:
            chunks[h.name].append(probs[h.name].reshape(n, views, -1).mean(axis=1))
    return {
        h.name: (
            np.concatenate(chunks[h.name])
            if chunks[h.name]
            else np.zeros((0, h.num_classes), np.float32)
        )
        for h in predictor.heads
    }


@dataclasses.dataclass
class Ensemble:
    """Several models with weights summing to 1 (one model: weight 1)."""

    predictors: list[Predictor]
    weights: list[float]

    @property
    def heads(self) -> tuple[Head, ...]:
        return union_heads(self.predictors)

    def member_probs(self, examples: tf.data.Dataset, **kwargs: Any) -> list[dict[str, np.ndarray]]:
        """Each model's :func:`predict_examples` output (``kwargs``: its options)."""
        return [predict_examples(p, examples, **kwargs) for p in self.predictors]

    def predict_examples(self, examples: tf.data.Dataset, **kwargs: Any) -> dict[str, np.ndarray]:
        """The weighted average of the models' probabilities (see :func:`combine`)."""
        return combine(self.member_probs(examples, **kwargs), self.weights)


def load_ensemble(models: Sequence[str], weights: str | Sequence[float] | None = None) -> Ensemble:
    """Loads ``models`` (paths, possibly comma-separated) with weights given as numbers, a
    ``--weights`` string or JSON file, or ``None`` (equal)."""
    paths = split_model_paths(models)
    if isinstance(weights, str):
        weights = load_weights_arg(weights, len(paths))
    predictors = [load_predictor(p) for p in paths]
    ensemble = Ensemble(predictors, normalize_weights(weights, len(paths)))
    union_heads(predictors)  # fails early on clashing class lists
    return ensemble


def union_heads(predictors: Sequence[Predictor]) -> tuple[Head, ...]:
    """The heads of several models, in order of first appearance; a head name shared by
    several models must have the same classes in each."""
    heads: dict[str, Head] = {}
    for p in predictors:
        for h in p.heads:
            if h.name in heads and heads[h.name].classes != h.classes:
                raise ValueError(
                    f"head {h.name!r} has classes {list(heads[h.name].classes)} in one model and "
                    f"{list(h.classes)} in {p.name}; an ensemble needs the same classes"
                )
            heads.setdefault(h.name, h)
    return tuple(heads.values())


def combine(
    member_probs: Sequence[Mapping[str, np.ndarray]], weights: Sequence[float] | None = None
) -> dict[str, np.ndarray]:
    """Weighted average of several models' per-head probabilities.

    A head is averaged over the models that predict it (their weights renormalised), so a
    model with fewer heads still contributes to the ones it has.
    """
    if not member_probs:
        raise ValueError("combine needs at least one model's probabilities")
    weights = normalize_weights(weights, len(member_probs))
    out: dict[str, np.ndarray] = {}
    names = dict.fromkeys(name for probs in member_probs for name in probs)
    for name in names:
        have = [(w, p[name]) for w, p in zip(weights, member_probs, strict=True) if name in p]
        total = sum(w for w, _ in have)
        if total <= 0:
            total, have = float(len(have)), [(1.0, p) for _, p in have]
        out[name] = sum(w * p for w, p in have) / total
    return out


def normalize_weights(weights: Sequence[float] | None, n: int) -> list[float]:
    """Ensemble weights summing to 1 (equal when ``None``); checks count and sign."""
    if weights is None:
        return [1.0 / n] * n
    weights = [float(w) for w in weights]
    if len(weights) != n or any(not w >= 0 for w in weights) or not sum(weights) > 0:
        raise ValueError(f"ensemble weights {weights}: expected {n} numbers >= 0, not all 0")
    return [w / sum(weights) for w in weights]


def weight_grid(n: int, step: float) -> list[tuple[float, ...]]:
    """Every weight vector on the simplex with coordinates that are multiples of ``step``."""
    units = int(round(1 / step))
    return [
        tuple(c / units for c in combo)
        for combo in itertools.product(range(units + 1), repeat=n)
        if sum(combo) == units
    ]


@dataclasses.dataclass
class WeightSearch:
    """Result of :func:`search_weights`."""

    weights: list[float]
    objective: str
    value: float
    equal_weights_value: float
    candidates: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def search_weights(
    member_probs: Sequence[Mapping[str, np.ndarray]],
    score: Callable[[Mapping[str, np.ndarray]], float],
    objective: str = "mean_accuracy",
    step: float | None = None,
    rounds: int = 25,
) -> WeightSearch:
    """Ensemble weights that maximise ``score`` (higher is better) on validation predictions.

    Up to 4 models (or when ``step`` is given): every point of the simplex grid with
    coordinates that are multiples of ``step`` (default 0.1). More models: greedy ensemble
    selection with replacement (Caruana et al., ICML 2004): start from the best single model,
    then ``rounds`` times add the model that scores best when added; weights are the counts.
    Ties keep the candidate closest to equal weights. Equal weights are always a candidate,
    so the result never scores below them.
    """
    n = len(member_probs)
    equal = normalize_weights(None, n)
    equal_value = float(score(combine(member_probs, equal)))
    if n == 1:
        return WeightSearch([1.0], objective, equal_value, equal_value, 1)

    def _key(weights, value):
        return (round(value, 12), -float(np.abs(np.asarray(weights) - equal).sum()))

    best, best_value, tried = list(equal), equal_value, 1
    if step is not None or n <= 4:
        scored: Iterable[tuple[Sequence[float], float]] = (
            (cand, float(score(combine(member_probs, cand))))
            for cand in weight_grid(n, step or 0.1)
        )
    else:
        scored = _greedy_selection(member_probs, score, rounds)
    for cand, value in scored:
        cand = normalize_weights(cand, n)
        tried += 1
        if _key(cand, value) > _key(best, best_value):
            best, best_value = cand, value
    return WeightSearch(best, objective, best_value, equal_value, tried)


def _greedy_selection(
    member_probs: Sequence[Mapping[str, np.ndarray]],
    score: Callable[[Mapping[str, np.ndarray]], float],
    rounds: int,
) -> Iterator[tuple[list[float], float]]:
    """Yields the count vectors visited by greedy selection with replacement, each with its
    score (already computed when it was chosen)."""
    n = len(member_probs)
    counts = [0] * n
    for _ in range(max(1, rounds)):
        best_i, best_value = 0, -np.inf
        for i in range(n):
            trial = list(counts)
            trial[i] += 1
            value = float(score(combine(member_probs, trial)))
            if value > best_value:
                best_i, best_value = i, value
        counts[best_i] += 1
        yield [float(c) for c in counts], best_value


def load_weights_arg(text: str | None, n: int) -> list[float] | None:
    """``--weights``: comma-separated numbers, or a JSON file with a ``weights`` list."""
    if not text:
        return None
    if os.path.isfile(text):
        with open(text, encoding="utf-8") as f:
            data = json.load(f)
        weights = data.get("weights") if isinstance(data, dict) else data
        where = text
    else:
        try:
            weights = [float(w) for w in text.split(",")]
        except ValueError:
            raise ValueError(
                f"--weights {text!r}: expected comma-separated numbers or a JSON file"
            ) from None
        where = "--weights"
    try:
        return normalize_weights(weights, n)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: {e}") from None
