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

from fashion_keras.heads import AnyHead, Head, keypoint_heads, softmax_heads
from fashion_keras.models.keypoint_layers import heatmap_to_image, soft_argmax

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
        # ops.zeros, not zeros_like: under JAX a Variable is not an array zeros_like takes
        self.support.assign(ops.zeros(self.support.shape))
        self.hits.assign(ops.zeros(self.hits.shape))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_classes": self.num_classes}


@keras.saving.register_keras_serializable(package="fashion_keras")
class KeypointDistance(keras.metrics.Metric):
    """Mean distance, in input pixels, between the soft-argmax of a keypoint head's heatmaps and
    the visible (v = 1) true keypoints ``(N, K, 3)``, over the rows the sample weight keeps."""

    def __init__(self, stride: int, name: str = "distance", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.stride = int(stride)
        self.total = self.add_variable((), "zeros", name="total")
        self.count = self.add_variable((), "zeros", name="count")

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        y_true = ops.cast(y_true, "float32")
        x, y, _ = soft_argmax(y_pred)
        dx = heatmap_to_image(x, self.stride) - y_true[..., 0]
        dy = heatmap_to_image(y, self.stride) - y_true[..., 1]
        mask = ops.cast(ops.round(y_true[..., 2]) == 1.0, "float32")
        if sample_weight is not None:
            mask = mask * ops.reshape(ops.cast(sample_weight, "float32"), (-1, 1))
        self.total.assign_add(ops.sum(ops.sqrt(dx * dx + dy * dy) * mask))
        self.count.assign_add(ops.sum(mask))

    def result(self) -> Any:
        return ops.divide_no_nan(self.total, self.count)

    def reset_state(self) -> None:
        self.total.assign(0.0)
        self.count.assign(0.0)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "stride": self.stride}


def distance_metric(head_name: str) -> str:
    """The log key of a keypoint head's :class:`KeypointDistance` (``<head>_distance``)."""
    return f"{head_name}_distance"


def head_metrics(
    heads: Sequence[AnyHead], keypoint_stride: int = 4
) -> dict[str, list[keras.metrics.Metric]]:
    """``weighted_metrics`` for ``compile``: accuracy and balanced accuracy per head (logged as
    ``<head>_accuracy``, ``<head>_balanced_accuracy``), and top-3/top-5 (``<head>_top3``,
    ``<head>_top5``) for heads with more than 10 classes; per keypoint head the mean distance
    of its visible points in input pixels (``<head>_distance``)."""
    # Keras prefixes metric names with the output name only when a model has several outputs;
    # a one-head model gets the prefix here, so the logs read the same for any number of heads.
    prefix = f"{heads[0].name}_" if len(heads) == 1 and not keypoint_heads(heads) else ""
    metrics: dict[str, list[keras.metrics.Metric]] = {}
    for h in keypoint_heads(heads):
        metrics[h.name] = [KeypointDistance(keypoint_stride, name="distance")]
    for h in softmax_heads(heads):
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
    for h in softmax_heads(heads):
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
