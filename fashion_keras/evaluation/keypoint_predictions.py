"""Keypoint predictions over a split, in the photo's own pixels, with their NE scores.

A keypoint head's heatmaps are read with the soft-argmax (sub-pixel), taken from the view's
pixels back to the photo's through the inverse of the view's geometry
(:mod:`fashion_keras.data.geometry`), so scores and outputs are in original-image pixels
whatever the crop, padding and resize. TTA ``flip`` averages each keypoint's spatial softmax
with the mirrored view's, its heatmaps reversed and left/right channels swapped (a heatmap
cell ``j`` mirrors exactly onto cell ``W / s - 1 - j``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Literal

import keras
import numpy as np
import tensorflow as tf

from fashion_keras.data import geometry, pipeline
from fashion_keras.data.preprocess import DEFAULT_BBOX_MARGIN, eval_view
from fashion_keras.evaluation import keypoint_report, landmark_scoring
from fashion_keras.evaluation.keypoint_scoring import (
    KeypointScore,
    mean_position_baseline,
    normalized_error,
)
from fashion_keras.heads import AnyHead, KeypointHead, keypoint_heads, visibility_output
from fashion_keras.models.keypoint_layers import expected_position, spatial_log_softmax

KEYPOINT_TTA = ("none", "flip")


#: A batch of views' keypoints per head: ``{head: (coords (N, K, 2) in view pixels, scores)}``.
KeypointOutputs = dict[str, tuple[tf.Tensor, tf.Tensor]]


def keypoint_outputs(
    model: keras.Model,
    images: tf.Tensor,
    heads: Sequence[KeypointHead],
    stride: int,
    tta: Literal["none", "flip"] = "none",
) -> KeypointOutputs:
    """``{head: (coords (N, K, 2) in view pixels, scores (N, K))}`` for a batch of views, from
    one forward pass (two with ``flip``) whatever the number of heads.

    ``scores`` is the head's visibility probability (averaged with the mirror's for ``flip``).
    """
    if tta not in KEYPOINT_TTA:
        raise ValueError(f"keypoint TTA {tta!r}: expected one of {list(KEYPOINT_TTA)}")
    out = model(images, training=False)
    mirrored = model(tf.reverse(images, [2]), training=False) if tta == "flip" else None
    result = {}
    for head in heads:
        probs = tf.exp(spatial_log_softmax(out[head.name]))
        scores = tf.cast(out[visibility_output(head.name)], tf.float32)
        if mirrored is not None:
            perm = list(head.flip_permutation())
            m_probs = tf.exp(spatial_log_softmax(mirrored[head.name]))
            probs = (probs + tf.gather(tf.reverse(m_probs, [2]), perm, axis=3)) / 2.0
            m_scores = tf.cast(mirrored[visibility_output(head.name)], tf.float32)
            scores = (scores + tf.gather(m_scores, perm, axis=1)) / 2.0
        result[head.name] = (tf.convert_to_tensor(expected_position(probs, stride)), scores)
    return result


@dataclasses.dataclass
class KeypointPredictions:
    """One keypoint head's predictions over the labelled rows of a split (photo pixels)."""

    head: KeypointHead
    truth: np.ndarray  # [N, K, 3] (x, y, v)
    predicted: np.ndarray  # [N, K, 2]
    scores: np.ndarray  # [N, K] visibility probabilities
    categories: list[str | None]  # the head's category per row (None: unknown)
    image_sizes: np.ndarray  # [N, 2] photo (width, height)
    rows: np.ndarray  # [N] index of the row in the split

    def known(self) -> np.ndarray:
        """Rows whose category is known (the NE needs it for its normaliser)."""
        return np.array([c is not None for c in self.categories], bool)


def _photo_size(image_bytes: tf.Tensor) -> tf.Tensor:
    shape = tf.cond(
        tf.io.is_jpeg(image_bytes),
        lambda: tf.image.extract_jpeg_shape(image_bytes),
        lambda: tf.shape(tf.io.decode_image(image_bytes, channels=3, expand_animations=False)),
    )
    return tf.stack([shape[1], shape[0]])


def predict_keypoints(
    model: keras.Model | None,
    examples: tf.data.Dataset,
    heads: Sequence[AnyHead],
    image_size: int,
    *,
    bbox_margin: float = DEFAULT_BBOX_MARGIN,
    batch_size: int = 32,
    tta: Literal["none", "flip"] = "none",
    labelled_only: bool = True,
    outputs: Callable[[tf.Tensor], KeypointOutputs] | None = None,
) -> dict[str, KeypointPredictions]:
    """Each keypoint head's predictions over ``examples`` (any builder's, or normalised),
    keyed by head name; with ``labelled_only`` only the rows with some of the head's
    keypoints (rows of other sources in a joint split are not the head's).

    ``outputs(views)`` -> ``{head: (coords (N, K, 2) in view pixels, scores (N, K))}`` replaces
    :func:`keypoint_outputs` of ``model`` (e.g. an exported SavedModel's signature; ``tta``
    is then its business)."""
    heads = tuple(heads)
    points = keypoint_heads(heads)
    stride = int(getattr(model, "keypoint_stride", 4))
    if outputs is None:

        def outputs(images: tf.Tensor) -> KeypointOutputs:
            return keypoint_outputs(model, images, points, stride, tta)

    def _view(example):
        ex = pipeline.normalize_example(example, heads)
        image, matrix = eval_view(ex["image"], image_size, ex["bbox"], bbox_margin)
        return {
            "image": image,
            "matrix": matrix,
            "size": _photo_size(ex["image"]),
            "keypoints": ex["keypoints"],
            "categories": ex["keypoint_categories"],
        }

    batches = examples.map(_view, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)
    parts: dict[str, dict[str, list[np.ndarray]]] = {
        h.name: {k: [] for k in ("truth", "pred", "scores", "cats", "sizes")} for h in points
    }
    for batch in batches:
        predicted = outputs(batch["image"])
        for h in points:
            coords, scores = predicted[h.name]
            part = parts[h.name]
            part["pred"].append(geometry.to_photo(coords, batch["matrix"]).numpy())
            part["scores"].append(np.asarray(scores))
            part["truth"].append(batch["keypoints"][h.name].numpy())
            part["cats"].append(batch["categories"][h.name].numpy())
            part["sizes"].append(batch["size"].numpy())
    out = {}
    for h in points:
        part = parts[h.name]
        k = h.num_keypoints
        truth = np.concatenate(part["truth"]) if part["truth"] else np.zeros((0, k, 3))
        pred = np.concatenate(part["pred"]) if part["pred"] else np.zeros((0, k, 2))
        scores = np.concatenate(part["scores"]) if part["scores"] else np.zeros((0, k))
        cats = np.concatenate(part["cats"]) if part["cats"] else np.zeros((0,), int)
        sizes = np.concatenate(part["sizes"]) if part["sizes"] else np.zeros((0, 2))
        rows = np.arange(len(truth))
        if labelled_only:
            rows = rows[(truth[..., 2] > geometry.ABSENT).any(axis=1)]
        names = h.category_names
        out[h.name] = KeypointPredictions(
            h,
            truth[rows],
            pred[rows],
            scores[rows],
            [names[c] if 0 <= c < len(names) else None for c in cats[rows]],
            sizes[rows],
            rows,
        )
    return out


def ground_truth(
    examples: tf.data.Dataset, heads: Sequence[AnyHead]
) -> dict[str, tuple[np.ndarray, list[str | None]]]:
    """Each keypoint head's photo-pixel truth ``[N, K, 3]`` and categories over the labelled
    rows of ``examples`` (no model; e.g. the training split for the baseline)."""
    heads = tuple(heads)
    points = keypoint_heads(heads)

    def _truth(example):
        ex = pipeline.normalize_example(example, heads)
        return {"keypoints": ex["keypoints"], "categories": ex["keypoint_categories"]}

    truth: dict[str, list[np.ndarray]] = {h.name: [] for h in points}
    cats: dict[str, list[np.ndarray]] = {h.name: [] for h in points}
    for batch in examples.map(_truth).batch(1024).as_numpy_iterator():
        for h in points:
            truth[h.name].append(batch["keypoints"][h.name])
            cats[h.name].append(batch["categories"][h.name])
    out = {}
    for h in points:
        t = np.concatenate(truth[h.name]) if truth[h.name] else np.zeros((0, h.num_keypoints, 3))
        c = np.concatenate(cats[h.name]) if cats[h.name] else np.zeros((0,), int)
        keep = (t[..., 2] > geometry.ABSENT).any(axis=1)
        names = h.category_names
        out[h.name] = (
            t[keep],
            [names[i] if 0 <= i < len(names) else None for i in c[keep]],
        )
    return out


def uses_normalised_error(head: KeypointHead) -> bool:
    """Whether every category of ``head`` has a normalising pair (FashionAI NE); otherwise it
    is scored as DeepFashion landmarks (distance / image size)."""
    return all(c.normaliser is not None for c in head.categories)


@dataclasses.dataclass
class KeypointEvaluation:
    """A keypoint head's scores on a split: the model's and the mean-position baseline's."""

    head: KeypointHead
    score: KeypointScore | None  # FashionAI-style NE (heads with normalisers)
    baseline: KeypointScore | None
    landmarks: dict[str, float] | None  # DeepFashion-style (heads without normalisers)
    unknown_category: int  # labelled rows without a category (not scored)

    def table(self) -> str:
        """Markdown tables (:func:`keypoint_report.keypoint_tables`) or the landmark line."""
        note = ""
        if self.unknown_category:
            note = f"\n{self.unknown_category} labelled rows without a category: not scored\n"
        if self.score is not None:
            return keypoint_report.keypoint_tables(self.score, self.baseline) + note
        lm = self.landmarks or {}
        return (
            f"| landmark NE | baseline NE | detected within 10 px |\n|---|---|---|\n"
            f"| {lm.get('ne', float('nan')):.4f} | {lm.get('baseline_ne', float('nan')):.4f} "
            f"| {lm.get('detected_10px', float('nan')):.1f}% |\n" + note
        )

    def to_json(self) -> dict[str, Any]:
        if self.score is not None:
            out = keypoint_report.keypoint_metrics_json(self.score, self.baseline)
        else:
            out = {"landmarks": self.landmarks}
        out["unknown_category"] = self.unknown_category
        return out


def evaluate_keypoints(
    predictions: KeypointPredictions,
    train_truth: tuple[np.ndarray, list[str | None]] | None = None,
) -> KeypointEvaluation:
    """Scores ``predictions`` (NE and, with the training truth, the mean-position baseline)."""
    p, head = predictions, predictions.head
    known = p.known()
    cats = [c for c in p.categories if c is not None]
    truth, pred = p.truth[known], p.predicted[known]
    baseline_pred = None
    if train_truth is not None and len(train_truth[0]):
        t_true, t_cats = train_truth
        t_known = np.array([c is not None for c in t_cats], bool)
        base = mean_position_baseline(
            t_true[t_known][..., :2],
            t_true[t_known][..., 2] > geometry.ABSENT,
            [c for c in t_cats if c is not None],
            head,
        )
        baseline_pred = base.predict(cats)
    unknown = int((~known).sum())
    vis = truth[..., 2].round().astype(int)
    if uses_normalised_error(head):
        score = normalized_error(pred, truth[..., :2], vis, cats, head)
        baseline = None
        if baseline_pred is not None:
            baseline = normalized_error(baseline_pred, truth[..., :2], vis, cats, head)
        return KeypointEvaluation(head, score, baseline, None, unknown)
    visible = vis == 1
    sizes = p.image_sizes[known]
    lm = {
        "ne": landmark_scoring.landmark_error(pred, truth[..., :2], visible, sizes),
        "detected_10px": landmark_scoring.detected_within(pred, truth[..., :2], visible, 10.0),
    }
    if baseline_pred is not None:
        filled = np.where(np.isnan(baseline_pred), 0.0, baseline_pred)
        lm["baseline_ne"] = landmark_scoring.landmark_error(filled, truth[..., :2], visible, sizes)
    return KeypointEvaluation(head, None, None, lm, unknown)
