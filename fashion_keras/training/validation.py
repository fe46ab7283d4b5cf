"""The end-of-training validation report: honest numbers per head.

After training, the final model predicts the validation split once, and each head gets (through
:func:`fashion_keras.evaluation.scoring.head_summary`, the same numbers ``evaluate`` reports):
accuracy, balanced accuracy, the majority-class baseline (always predicting the class most
frequent in the training split), per-class recall and precision, and the labelled count. A head
whose accuracy does not beat its baseline is flagged in words. The report goes to the console
(:func:`format_table`), ``metrics.json`` and TensorBoard (:func:`write_tensorboard`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from fashion_keras.evaluation import scoring
from fashion_keras.heads import Head


def predict_split(
    model: keras.Model, batches: tf.data.Dataset, heads: Sequence[Head]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(probs, labels)`` per head over ``(image, targets, weights)`` batches; label -1 where a
    row is masked (weight 0) for that head."""
    probs: dict[str, list[np.ndarray]] = {h.name: [] for h in heads}
    labels: dict[str, list[np.ndarray]] = {h.name: [] for h in heads}
    for images, targets, weights in batches:
        out = model(images, training=False)
        for h in heads:
            probs[h.name].append(np.asarray(out[h.name], np.float32))
            y = np.argmax(np.asarray(targets[h.name]), axis=1)
            labels[h.name].append(np.where(np.asarray(weights[h.name]) > 0, y, -1))
    return (
        {k: np.concatenate(v) for k, v in probs.items()},
        {k: np.concatenate(v) for k, v in labels.items()},
    )


def validation_report(
    model: keras.Model,
    batches: tf.data.Dataset,
    heads: Sequence[Head],
    train_counts: Mapping[str, np.ndarray] | None,
) -> dict[str, dict[str, Any]]:
    """:func:`~fashion_keras.evaluation.scoring.head_summary` of every head the validation
    split labels, keyed by head name."""
    probs, labels = predict_split(model, batches, heads)
    report = {}
    for h in heads:
        if not np.any(labels[h.name] >= 0):
            continue
        counts = None if train_counts is None else train_counts[h.name]
        report[h.name] = scoring.head_summary(probs[h.name], labels[h.name], h.classes, counts)
    return report


def _fmt(x: float | None) -> str:
    return "   n/a" if x is None else f"{x:6.3f}"


def format_table(report: Mapping[str, Mapping[str, Any]], heads: Sequence[Head] = ()) -> str:
    """The console table: per head labelled rows, accuracy, the majority baseline (and its
    class), balanced accuracy; a line naming the ``heads`` the validation split does not
    label; then a line per head that does not beat its baseline and per class it never
    finds."""
    lines = [
        f"{'head':<26} {'labelled':>8} {'accuracy':>8} {'majority':>8} {'balanced':>8}  "
        "majority class"
    ]
    for name, m in report.items():
        lines.append(
            f"{name:<26} {m['num_labelled']:>8} {_fmt(m['accuracy']):>8} "
            f"{_fmt(m['majority_baseline']):>8} {_fmt(m['balanced_accuracy']):>8}  "
            f"{m['majority_class']}"
        )
    scored = [m for m in report.values() if m["accuracy"] is not None]
    if scored:
        mean = {
            key: sum(m[key] for m in scored) / len(scored)
            for key in ("accuracy", "majority_baseline", "balanced_accuracy")
        }
        lines.append(
            f"{'mean over heads':<26} {'':>8} {_fmt(mean['accuracy']):>8} "
            f"{_fmt(mean['majority_baseline']):>8} {_fmt(mean['balanced_accuracy']):>8}"
        )
    missing = [h.name for h in heads if h.name not in report]
    if missing:
        lines.append(f"not validated (no labelled validation rows): {', '.join(missing)}")
    lines += [f"  {line}" for line in warnings(report)]
    return "\n".join(lines)


def warnings(report: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """What the numbers hide, in words: heads that do not beat the majority baseline, and
    classes with validation rows that are never predicted right."""
    out = []
    for name, m in report.items():
        if m["beats_baseline"] is False:
            out.append(
                f"{name}: accuracy {m['accuracy']:.3f} does not beat the majority baseline "
                f"{m['majority_baseline']:.3f} (always {m['majority_class']!r}, from "
                f"{m['baseline_from']}): the head has learnt nothing useful yet"
            )
        missed = [c["name"] for c in m["per_class"] if c["support"] and not c["recall"]]
        if missed:
            out.append(f"{name}: never right on {', '.join(missed)} (recall 0)")
    return out


def write_tensorboard(report: Mapping[str, Mapping[str, Any]], logdir: str, step: int) -> None:
    """The report as TensorBoard scalars (``logs/summary``): per head accuracy, balanced
    accuracy, majority baseline, and recall/precision per class."""
    writer = tf.summary.create_file_writer(os.path.join(logdir, "summary"))
    with writer.as_default():
        for name, m in report.items():
            for key in ("accuracy", "balanced_accuracy", "majority_baseline"):
                if m[key] is not None:
                    tf.summary.scalar(f"{name}/{key}", m[key], step=step)
            for c in m["per_class"]:
                for key in ("recall", "precision"):
                    if c[key] is not None:
                        tf.summary.scalar(f"{name}/{key}/{c['name']}", c[key], step=step)
    writer.flush()
    writer.close()
