"""Per-head metrics that ignore masked examples, and their mean over heads.

Keras applies the per-head sample weights only to ``weighted_metrics`` (``metrics=`` ignores
them), so masked heads' accuracies are weighted metrics: an example with weight 0 for a head is
not counted in that head's accuracy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from fashion_keras.heads import Head

MEAN_ACCURACY = "mean_accuracy"


@keras.saving.register_keras_serializable(package="fashion_keras")
class BalancedAccuracy(keras.metrics.Metric):
    """Mean recall over the classes seen so far (weighted by the sample weights, so masked rows
    count for nothing): a head that always predicts its majority class scores 1 / classes.
    Targets may be soft; the true class is their argmax."""

    def __init__(self, num_classes: int, name: str = "balanced_accuracy", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.num_classes = int(num_classes)
        self.support = self.add_variable((self.num_classes,), "zeros", name="support")
        self.hits = self.add_variable((self.num_classes,), "zeros", name="hits")

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        true = ops.one_hot(ops.argmax(y_true, axis=-1), self.num_classes)
        predicted = ops.one_hot(ops.argmax(y_pred, axis=-1), self.num_classes)
        weight = ops.ones_like(true[:, :1]) if sample_weight is None else sample_weight
        weight = ops.reshape(ops.cast(weight, "float32"), (-1, 1))
        true = ops.cast(true, "float32") * weight
        self.support.assign_add(ops.sum(true, axis=0))
        self.hits.assign_add(ops.sum(true * ops.cast(predicted, "float32"), axis=0))

    def result(self) -> Any:
        seen = ops.cast(self.support > 0, "float32")
        recall = ops.divide_no_nan(self.hits, self.support)
        return ops.divide_no_nan(ops.sum(recall * seen), ops.sum(seen))

    def reset_state(self) -> None:
        self.support.assign(ops.zeros_like(self.support))
        self.hits.assign(ops.zeros_like(self.hits))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_classes": self.num_classes}


def head_metrics(heads: Sequence[Head]) -> dict[str, list[keras.metrics.Metric]]:
    """``weighted_metrics`` for ``compile``: accuracy and balanced accuracy per head (logged as
    ``<head>_accuracy``, ``<head>_balanced_accuracy``), and top-3/top-5 (``<head>_top3``,
    ``<head>_top5``) for heads with more than 10 classes."""
    # Keras prefixes metric names with the output name only when a model has several outputs;
    # a one-head model gets the prefix here, so the logs read the same for any number of heads.
    prefix = f"{heads[0].name}_" if len(heads) == 1 else ""
    metrics: dict[str, list[keras.metrics.Metric]] = {}
    for h in heads:
        metrics[h.name] = [
            keras.metrics.CategoricalAccuracy(name=f"{prefix}accuracy"),
            BalancedAccuracy(h.num_classes, name=f"{prefix}balanced_accuracy"),
        ]
        if h.num_classes > 10:
            metrics[h.name].append(keras.metrics.TopKCategoricalAccuracy(k=3, name=f"{prefix}top3"))
            metrics[h.name].append(keras.metrics.TopKCategoricalAccuracy(k=5, name=f"{prefix}top5"))
    return metrics


def per_head_accuracy(
    logs: Mapping[str, float], heads: Sequence[Head], prefix: str = ""
) -> dict[str, float]:
    """Picks ``<prefix><head>_accuracy`` out of Keras logs, keyed by head name."""
    out = {}
    for h in heads:
        key = f"{prefix}{h.name}_accuracy"
        if key in logs:
            out[h.name] = float(logs[key])
    return out


def mean_accuracy(
    logs: Mapping[str, float], heads: Sequence[Head], prefix: str = ""
) -> float | None:
    """Plain mean of the per-head accuracies present in ``logs`` (None when there are none)."""
    accs = per_head_accuracy(logs, heads, prefix)
    return float(np.mean(list(accs.values()))) if accs else None


class MeanHeadAccuracy(keras.callbacks.Callback):
    """Adds ``mean_accuracy`` and ``val_mean_accuracy`` (mean over heads) to the epoch logs.

    Put it before loggers and checkpoints in the callback list so they see the new entries.
    """

    def __init__(self, heads: Sequence[Head]) -> None:
        super().__init__()
        self.heads = tuple(heads)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is None:
            return
        for prefix in ("", "val_"):
            value = mean_accuracy(logs, self.heads, prefix)
            if value is not None:
                logs[prefix + MEAN_ACCURACY] = value

    def on_test_end(self, logs: dict | None = None) -> None:
        if logs is not None:
            value = mean_accuracy(logs, self.heads)
            if value is not None:
                logs[MEAN_ACCURACY] = value
