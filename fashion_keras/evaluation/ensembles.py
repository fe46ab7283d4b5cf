"""Ensembles: several models' probabilities combined with weights, and the weight search.

:func:`combine` averages per-head probabilities (:func:`predict_keypoints` keypoint heads'
points and scores) with weights given (``--weights``, numbers or a JSON file) or found by
:func:`search_weights` on a validation split; the models may have different input sizes and
margins, because each one preprocesses the encoded image in its own view
(:mod:`fashion_keras.evaluation.predictors`).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from fashion_keras.evaluation.keypoint_predictions import KeypointPredictions
from fashion_keras.evaluation.model_loading import load_predictor, split_model_paths
from fashion_keras.evaluation.predictors import Predictor, predict_examples, union_heads
from fashion_keras.heads import Head


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


def predict_keypoints(
    predictors: Sequence[Predictor],
    weights: Sequence[float],
    examples: tf.data.Dataset,
    **kwargs: Any,
) -> dict[str, KeypointPredictions]:
    """Each keypoint head's predictions over ``examples`` (photo pixels) by the models that
    have it: one model's :meth:`Predictor.predict_keypoints`, several models' points and
    scores averaged with their ``weights`` (renormalised over the models that have the head;
    each model sees the photo in its own view). ``kwargs``: ``predict_keypoints`` options."""
    found: dict[str, list[tuple[float, KeypointPredictions]]] = {}
    for p, w in zip(predictors, weights, strict=True):
        if p.keypoint_heads:
            for name, pred in p.predict_keypoints(examples, **kwargs).items():
                found.setdefault(name, []).append((float(w), pred))
    out = {}
    for name, members in found.items():
        total = sum(w for w, _ in members)
        if total <= 0:
            members, total = [(1.0, m) for _, m in members], float(len(members))
        first = members[0][1]
        out[name] = dataclasses.replace(
            first,
            predicted=sum(w * m.predicted for w, m in members) / total,
            scores=sum(w * m.scores for w, m in members) / total,
        )
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
