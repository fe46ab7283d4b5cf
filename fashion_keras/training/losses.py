"""Per-head focal loss with masking.

Each head gets a ``keras.losses.CategoricalFocalCrossentropy`` weighted by the head's loss
weight. A head's sample weight is 0 on examples that carry no label for it.

What a masked head's loss means: the reduction is ``"mean_with_sample_weight"``, so each head's
loss is the (weighted) mean over the examples *labelled for that head* in the batch, and exactly
0 (with zero gradient) in a batch where no example is labelled for it. A head labelled on one row
in eight (FashionAI) therefore has a loss on the same scale as a fully labelled head, and its loss
weight means the same thing whatever the label rate. (Keras' default ``"sum_over_batch_size"``
would divide by the batch size and silently shrink rarely labelled heads.)

Imbalanced classes: each head may weight its classes (the focal loss's per-class ``alpha``,
``alpha * weight[c]``): explicitly in the head spec (``class_weights``), or from the training
split's label counts with ``--class-weights balanced`` (``N / (K n_c)``) or ``sqrt`` (its square
root, milder); either is scaled so the weight averages 1 over the training labels, which keeps
the loss on the scale of the unweighted one. Unlabelled (masked) rows are not counted.

Keypoint heads get :class:`~fashion_keras.training.keypoint_losses.KeypointHeatmapLoss` on
their heatmaps and :class:`~fashion_keras.training.keypoint_losses.KeypointVisibilityLoss` on
``<head>_visibility`` (:func:`keypoint_losses`), masked the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras
import numpy as np

from fashion_keras.heads import AnyHead, Head, keypoint_heads, softmax_heads, visibility_output
from fashion_keras.training.keypoint_losses import KeypointHeatmapLoss, KeypointVisibilityLoss

MASKED_REDUCTION = "mean_with_sample_weight"


#: ``--class-weights`` modes.
CLASS_WEIGHT_MODES = ("none", "balanced", "sqrt")


def class_weights(
    heads: Sequence[Head], counts: Mapping[str, np.ndarray] | None, mode: str = "none"
) -> dict[str, np.ndarray | None]:
    """Per-class loss weights of each head: the head spec's own ``class_weights`` where it has
    them, else from the training split's label counts per class (``counts``) by ``mode``
    (``none``: no weights), scaled so that their mean over the training labels is 1. A class
    without training labels gets weight 1."""
    if mode not in CLASS_WEIGHT_MODES:
        raise ValueError(f"class weights = {mode!r}; expected one of {list(CLASS_WEIGHT_MODES)}")
    out: dict[str, np.ndarray | None] = {}
    for h in heads:
        n = None if counts is None else np.asarray(counts[h.name], np.float64)
        if h.class_weights is not None:
            w = np.asarray(h.class_weights, np.float64)
        elif mode == "none" or n is None or n.sum() == 0:
            out[h.name] = None
            continue
        else:
            present = n > 0
            w = np.ones(h.num_classes)
            w[present] = n.sum() / (present.sum() * n[present])
            if mode == "sqrt":
                w = np.sqrt(w)
        if n is not None and n.sum() > 0:
            w = w / (np.dot(n, w) / n.sum())  # mean weight over the training labels = 1
        out[h.name] = w.astype(np.float32)
    return out


def focal_losses(
    heads: Sequence[Head],
    gamma: float = 2.0,
    alpha: float = 0.25,
    label_smoothing: float = 0.0,
    weights: Mapping[str, np.ndarray | None] | None = None,
) -> dict[str, keras.losses.Loss]:
    """One masked ``CategoricalFocalCrossentropy`` per head, keyed by head name; ``weights``
    (from :func:`class_weights`) scale ``alpha`` per class.

    ``gamma=0`` and ``alpha=1`` give plain (masked) categorical cross-entropy.
    """
    if gamma < 0:
        raise ValueError(f"focal gamma must be >= 0, got {gamma!r}")
    if not alpha > 0:
        raise ValueError(f"focal alpha must be > 0, got {alpha!r}")
    weights = weights or {}
    heads = softmax_heads(heads)

    def head_alpha(h: Head) -> float | list[float]:
        w = weights.get(h.name)
        return alpha if w is None else [float(alpha * x) for x in w]

    return {
        h.name: keras.losses.CategoricalFocalCrossentropy(
            alpha=head_alpha(h),
            gamma=gamma,
            label_smoothing=label_smoothing,
            reduction=MASKED_REDUCTION,
            name=f"{h.name}_focal",
        )
        for h in heads
    }


def keypoint_losses(
    heads: Sequence[AnyHead], stride: int, sigma: float = 2.0, count_occluded: bool = True
) -> dict[str, keras.losses.Loss]:
    """The heatmap and visibility losses of every keypoint head, keyed by model output."""
    out: dict[str, keras.losses.Loss] = {}
    for h in keypoint_heads(heads):
        out[h.name] = KeypointHeatmapLoss(
            stride=stride, sigma=sigma, count_occluded=count_occluded, name=f"{h.name}_heatmap"
        )
        out[visibility_output(h.name)] = KeypointVisibilityLoss(name=visibility_output(h.name))
    return out


def loss_weights(
    heads: Sequence[AnyHead], overrides: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Per-output loss weights: the taxonomy's defaults (a keypoint head's for both its
    outputs), optionally overridden by head name."""
    weights = {h.name: h.loss_weight for h in heads}
    for name, value in (overrides or {}).items():
        if name not in weights:
            raise ValueError(f"loss weight given for unknown head {name!r}; heads: {list(weights)}")
        if not value >= 0:
            raise ValueError(f"loss weight for head {name!r} must be >= 0, got {value!r}")
        weights[name] = float(value)
    for h in keypoint_heads(heads):
        weights[visibility_output(h.name)] = weights[h.name]
    return weights
