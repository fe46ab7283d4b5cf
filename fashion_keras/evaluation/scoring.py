"""Evaluation scores on predicted probabilities (numpy only, no TensorFlow).

- :func:`masked_accuracy`, :func:`topk_accuracy`: accuracy over labelled rows (label -1 = none).
- :func:`task_ap`, :func:`fashionai_score`: the official FashionAI 2018 ranking metric
  (per-task AP over confidence thresholds, mAP, BasicPrecision), see ``formats.md`` §1.
- :func:`class_counts`, :func:`per_class_scores`, :func:`balanced_accuracy`,
  :func:`majority_baseline`, :func:`head_summary`: per-class truth, and the baseline a head must
  beat (always predicting the training split's most frequent class).
- :func:`confusion_matrix`, :func:`most_confused_pairs`, :func:`top_losses`: error analysis.

Ties in ``argmax`` resolve to the first (lowest) class index, as ``numpy.argmax`` does.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

# Truth for one FashionAI task: label strings ("nnymn", one per row) or (y index, m mask).
Truth = Sequence[str] | tuple[np.ndarray, np.ndarray]

_LOSS_FLOOR = 1e-12  # probabilities are clipped here so a cross-entropy stays finite


# --- validation helpers ------------------------------------------------------------------------


def _as_probs(probs: Any, name: str = "probs") -> np.ndarray:
    arr = np.asarray(probs, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise ValueError(f"{name} must have shape (N, C) with C >= 1, got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        row = int(np.argwhere(bad)[0, 0])
        raise ValueError(f"{name} has non-finite values, first at row {row}: {arr[row].tolist()}")
    return arr


def _as_labels(labels: Any, num_rows: int, num_classes: int, name: str = "labels") -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.shape[0] != num_rows:
        raise ValueError(f"{name} must have shape ({num_rows},), got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.floating) or np.any(arr != np.round(arr)):
            raise ValueError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    bad = (arr < -1) | (arr >= num_classes)
    if bad.any():
        raise ValueError(
            f"{name} must be in [0, {num_classes}) or -1 (unlabelled); "
            f"bad values {sorted(set(arr[bad].tolist()))[:10]}"
        )
    return arr


# --- accuracy ----------------------------------------------------------------------------------


def masked_accuracy(probs: Any, labels: Any) -> float | None:
    """Top-1 accuracy over rows with ``labels >= 0`` (-1 = unlabelled, ignored).

    Returns None when no row is labelled. Ties in ``argmax`` pick the first class index.
    """
    p = _as_probs(probs)
    y = _as_labels(labels, p.shape[0], p.shape[1])
    keep = y >= 0
    if not keep.any():
        return None
    return float(np.mean(np.argmax(p[keep], axis=1) == y[keep]))


def topk_accuracy(probs: Any, labels: Any, k: int) -> float | None:
    """Fraction of labelled rows whose true class is among the ``k`` most probable.

    Ties straddling the k-th place count as hits (like ``tf.math.in_top_k`` and Keras'
    ``TopKCategoricalAccuracy``): a row is a hit when fewer than ``k`` classes have a strictly
    higher probability than the true class. None when no row is labelled.
    """
    p = _as_probs(probs)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= p.shape[1]:
        raise ValueError(f"k must be an integer in [1, {p.shape[1]}] (the class count), got {k!r}")
    y = _as_labels(labels, p.shape[0], p.shape[1])
    keep = y >= 0
    if not keep.any():
        return None
    p, y = p[keep], y[keep]
    true_p = p[np.arange(len(y)), y]
    rank = np.sum(p > true_p[:, None], axis=1)
    return float(np.mean(rank < k))


# --- per-class truth and baselines --------------------------------------------------------------


def class_counts(labels: Any, num_classes: int) -> np.ndarray:
    """Labelled rows per class (int64, length ``num_classes``); rows labelled -1 are not
    counted."""
    y = np.asarray(labels)
    y = _as_labels(y, y.shape[0] if y.ndim == 1 else -1, num_classes)
    return np.bincount(y[y >= 0], minlength=num_classes).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class ClassScore:
    """One class of a head: labelled rows (support), predictions, recall and precision (None
    when undefined: no labelled row, or never predicted)."""

    name: str
    support: int
    predicted: int
    recall: float | None
    precision: float | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def per_class_scores(probs: Any, labels: Any, class_names: Sequence[str]) -> list[ClassScore]:
    """Recall and precision of each class over the labelled rows (argmax predictions)."""
    p = _as_probs(probs)
    if len(class_names) != p.shape[1]:
        raise ValueError(f"{len(class_names)} class names for {p.shape[1]} probability columns")
    y = _as_labels(labels, p.shape[0], p.shape[1])
    cm = confusion_matrix(y, np.argmax(p, axis=1), p.shape[1])
    support, predicted, hits = cm.sum(axis=1), cm.sum(axis=0), np.diag(cm)
    return [
        ClassScore(
            name,
            int(support[c]),
            int(predicted[c]),
            float(hits[c] / support[c]) if support[c] else None,
            float(hits[c] / predicted[c]) if predicted[c] else None,
        )
        for c, name in enumerate(class_names)
    ]


def balanced_accuracy(probs: Any, labels: Any) -> float | None:
    """Mean recall over the classes that have labelled rows (None when no row is labelled):
    a model that always predicts the majority class scores 1 / (classes present)."""
    p = _as_probs(probs)
    scores = per_class_scores(p, labels, [str(c) for c in range(p.shape[1])])
    recalls = [s.recall for s in scores if s.recall is not None]
    return float(np.mean(recalls)) if recalls else None


def majority_baseline(labels: Any, train_counts: Any) -> tuple[int, float | None]:
    """``(class, accuracy)`` of always predicting the class most frequent in the training
    split (``train_counts``: labelled rows per class there) on ``labels``."""
    counts = np.asarray(train_counts, dtype=np.int64)
    if counts.ndim != 1 or counts.size < 1:
        raise ValueError(f"train_counts must be a non-empty 1-D array, got shape {counts.shape}")
    y = np.asarray(labels)
    y = _as_labels(y, y.shape[0], counts.size)
    majority = int(np.argmax(counts))
    keep = y >= 0
    return majority, (float(np.mean(y[keep] == majority)) if keep.any() else None)


def head_summary(
    probs: Any, labels: Any, class_names: Sequence[str], train_counts: Any | None = None
) -> dict[str, Any]:
    """Everything a report says about one head: labelled rows, accuracy, balanced accuracy,
    the majority-class baseline (from ``train_counts``, else from ``labels`` themselves), whether
    the head beats it, and recall/precision per class."""
    y = np.asarray(labels)
    if train_counts is not None and np.shape(train_counts) != (len(class_names),):
        raise ValueError(
            f"train_counts has shape {np.shape(train_counts)}, expected ({len(class_names)},) "
            f"for the classes {list(class_names)}"
        )
    counts = class_counts(y, len(class_names)) if train_counts is None else train_counts
    majority, baseline = majority_baseline(y, counts)
    accuracy = masked_accuracy(probs, y)
    return {
        "num_labelled": int(np.sum(y >= 0)),
        "accuracy": accuracy,
        "balanced_accuracy": balanced_accuracy(probs, y),
        "majority_class": class_names[majority],
        "majority_baseline": baseline,
        "baseline_from": "the labels evaluated" if train_counts is None else "the training split",
        "beats_baseline": None if accuracy is None else accuracy > baseline,
        "per_class": [s.to_dict() for s in per_class_scores(probs, y, class_names)],
    }


# --- the official FashionAI metric -------------------------------------------------------------


def label_string_to_arrays(
    labels: Sequence[str], num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """FashionAI label strings (``"nnymn"``: one ``y``, any ``m``, rest ``n``) to arrays.

    Returns ``(y, m)``: ``y`` (N,) int64 index of the ``y`` character and ``m`` (N, C) bool mask
    of the ``m`` characters.
    """
    if isinstance(labels, str):
        raise TypeError(f"labels must be a sequence of label strings, got one string {labels!r}")
    y = np.empty(len(labels), np.int64)
    m = np.zeros((len(labels), num_classes), bool)
    for i, s in enumerate(labels):
        if not isinstance(s, str) or len(s) != num_classes or set(s) - set("ynm"):
            raise ValueError(
                f"label string {i} is {s!r}: expected {num_classes} characters of y/n/m"
            )
        if s.count("y") != 1:
            raise ValueError(f"label string {i} is {s!r}: expected exactly one 'y'")
        y[i] = s.index("y")
        m[i] = np.frombuffer(s.encode("ascii"), np.uint8) == ord("m")
    return y, m


def _truth_arrays(truth: Truth, num_rows: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    is_pair = (
        isinstance(truth, tuple) and len(truth) == 2 and not any(isinstance(t, str) for t in truth)
    )
    if not is_pair:
        if len(truth) != num_rows:
            raise ValueError(f"{len(truth)} label strings for {num_rows} rows of probs")
        return label_string_to_arrays(truth, num_classes)
    y = _as_labels(truth[0], num_rows, num_classes, name="y")
    m = np.asarray(truth[1])
    if m.shape != (num_rows, num_classes) or m.dtype != bool:
        raise ValueError(
            f"m must be a bool array of shape ({num_rows}, {num_classes}), "
            f"got {m.dtype} of shape {m.shape}"
        )
    labelled = np.flatnonzero(y >= 0)
    clash = labelled[m[labelled, y[labelled]]]
    if clash.size:
        raise ValueError(f"rows {clash[:10].tolist()} mark their y class as m too")
    return y, m


@dataclasses.dataclass(frozen=True)
class TaskAP:
    """The official score of one task.

    ``ap``: mean of P(t) over the thresholds where P(t) is defined, None when none is.
    ``basic_precision``: P(0), top-1 accuracy with ``m`` hits not counted (None if all are m).
    ``num_rows``: rows scored; ``num_counted``: rows whose top-1 class is not an ``m`` class.
    ``num_thresholds``: distinct confidence values (each one is a threshold).
    ``skipped_thresholds``: thresholds where every output row lands on ``m`` (P undefined).
    """

    task: str
    ap: float | None
    basic_precision: float | None
    num_rows: int
    num_counted: int
    num_thresholds: int
    skipped_thresholds: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class FashionAIScore:
    """The official FashionAI score over tasks.

    ``map``: plain mean of the defined per-task APs (None when none is defined).
    ``basic_precision``: plain mean of the defined per-task P(0).
    ``skipped_tasks``: tasks left out of ``map`` because their AP is undefined.
    """

    per_task: dict[str, TaskAP]
    map: float | None
    basic_precision: float | None
    skipped_tasks: tuple[str, ...]

    def notes(self) -> list[str]:
        """Human-readable lines for every skipped threshold or task (empty when none)."""
        lines = []
        for t in self.per_task.values():
            if t.skipped_thresholds:
                lines.append(
                    f"{t.task}: {t.skipped_thresholds} of {t.num_thresholds} thresholds skipped "
                    "(every row output at them has an 'm' top-1 class, so P is undefined)"
                )
        if self.skipped_tasks:
            lines.append(f"left out of mAP (AP undefined): {', '.join(self.skipped_tasks)}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "map": self.map,
            "basic_precision": self.basic_precision,
            "skipped_tasks": list(self.skipped_tasks),
            "per_task": {name: t.to_dict() for name, t in self.per_task.items()},
            "notes": self.notes(),
        }


def task_ap(probs: Any, truth: Truth, task: str = "") -> TaskAP:
    """The official AP of one FashionAI task (``formats.md`` §1).

    Per row, ``p = max(probs)`` and ``k = argmax(probs)`` (ties: the first index). A threshold
    ``t`` outputs every row with ``p >= t``; an output row whose true character at ``k`` is ``y``
    is counted and correct, ``n`` counted and wrong, ``m`` not counted. ``P(t)`` = correct /
    counted. AP = mean of P(t) over the distinct ``p`` values of the rows (exact float values),
    skipping (and counting) thresholds where counted = 0.

    Args:
      probs: (N, C) class probabilities of the task's rows.
      truth: N label strings (``"nnymn"``), or ``(y, m)``: (N,) int ``y`` index (rows with -1
        are dropped) and (N, C) bool ``m`` mask.
      task: a name carried into the result.
    """
    p_all = _as_probs(probs)
    y, m = _truth_arrays(truth, p_all.shape[0], p_all.shape[1])
    keep = y >= 0
    p_all, y, m = p_all[keep], y[keep], m[keep]
    n = len(y)
    if n == 0:
        return TaskAP(task, None, None, 0, 0, 0, 0)
    k = np.argmax(p_all, axis=1)
    p = p_all[np.arange(n), k]
    correct = k == y
    counted = ~m[np.arange(n), k]  # y and n rows; m rows count neither way
    order = np.argsort(-p, kind="stable")
    p_sorted = p[order]
    cum_correct = np.cumsum(correct[order])
    cum_counted = np.cumsum(counted[order])
    # threshold t = p_sorted[i] lets through every row with p >= t: the end of its tie group
    ends = np.flatnonzero(np.append(p_sorted[1:] != p_sorted[:-1], True))
    got, cnt = cum_correct[ends], cum_counted[ends]
    defined = cnt > 0
    ap = float(np.mean(got[defined] / cnt[defined])) if defined.any() else None
    bp = float(cum_correct[-1] / cum_counted[-1]) if cum_counted[-1] else None
    return TaskAP(
        task=task,
        ap=ap,
        basic_precision=bp,
        num_rows=n,
        num_counted=int(cum_counted[-1]),
        num_thresholds=len(ends),
        skipped_thresholds=int(np.sum(~defined)),
    )


def _mean_defined(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(vals)) if vals else None


def fashionai_score(probs: Mapping[str, Any], truth: Mapping[str, Truth]) -> FashionAIScore:
    """The official FashionAI score: per-task AP, mAP and BasicPrecision.

    ``probs`` and ``truth`` map task name to that task's (N, C) probabilities and truth (label
    strings or ``(y, m)``, see :func:`task_ap`); both must name the same tasks. mAP is the plain
    mean over tasks of the defined APs; BasicPrecision the plain mean of the defined P(0).
    """
    if set(probs) != set(truth):
        raise ValueError(
            f"probs and truth must name the same tasks: probs has {sorted(probs)}, "
            f"truth has {sorted(truth)}"
        )
    if not probs:
        raise ValueError("no tasks to score")
    per_task = {name: task_ap(probs[name], truth[name], task=name) for name in probs}
    return FashionAIScore(
        per_task=per_task,
        map=_mean_defined([t.ap for t in per_task.values()]),
        basic_precision=_mean_defined([t.basic_precision for t in per_task.values()]),
        skipped_tasks=tuple(name for name, t in per_task.items() if t.ap is None),
    )


# --- error analysis ----------------------------------------------------------------------------


def confusion_matrix(labels: Any, preds: Any, num_classes: int) -> np.ndarray:
    """(C, C) int64 counts: rows are true classes, columns predicted; rows with label -1 are
    ignored. ``preds`` are class indices (take ``argmax`` of probabilities first)."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise ValueError(f"num_classes must be an integer, got {num_classes!r}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D class indices, got shape {y.shape}")
    y = _as_labels(y, y.shape[0], num_classes)
    pr = _as_labels(preds, y.shape[0], num_classes, name="preds")
    keep = y >= 0
    if np.any(pr[keep] < 0):
        raise ValueError("preds must be class indices in [0, num_classes) on labelled rows")
    flat = y[keep] * num_classes + pr[keep]
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


class ConfusedPair(NamedTuple):
    """One off-diagonal confusion-matrix cell."""

    true: str
    predicted: str
    count: int
    fraction: float  # of the true class's rows


def most_confused_pairs(cm: Any, class_names: Sequence[str], top: int = 10) -> list[ConfusedPair]:
    """The ``top`` off-diagonal cells of a confusion matrix with a count > 0, by count (ties:
    larger fraction of the true class first, then row/column order)."""
    cm = np.asarray(cm)
    c = len(class_names)
    if cm.shape != (c, c):
        raise ValueError(f"cm has shape {cm.shape}, expected ({c}, {c}) for {c} class names")
    if top < 0:
        raise ValueError(f"top must be >= 0, got {top}")
    row_totals = cm.sum(axis=1)
    cells = [
        (int(cm[i, j]), float(cm[i, j] / row_totals[i]), i, j)
        for i in range(c)
        for j in range(c)
        if i != j and cm[i, j] > 0
    ]
    cells.sort(key=lambda t: (-t[0], -t[1], t[2], t[3]))
    return [ConfusedPair(class_names[i], class_names[j], n, f) for n, f, i, j in cells[:top]]


def top_losses(probs: Any, labels: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` labelled rows with the largest cross-entropy ``-log p[label]``.

    Returns ``(indices, losses)``, largest loss first (ties: lower row index first); indices
    point into ``probs``. Fewer than ``k`` when fewer rows are labelled. Probabilities are
    clipped at 1e-12 so losses stay finite.
    """
    p = _as_probs(probs)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"k must be an integer >= 0, got {k!r}")
    y = _as_labels(labels, p.shape[0], p.shape[1])
    rows = np.flatnonzero(y >= 0)
    losses = -np.log(np.clip(p[rows, y[rows]], _LOSS_FLOOR, None))
    order = np.argsort(-losses, kind="stable")[:k]
    return rows[order], losses[order]
