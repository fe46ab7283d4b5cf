"""Per-head focal loss with masking.

Each head gets a ``keras.losses.CategoricalFocalCrossentropy`` weighted by the head's loss
weight. A head's sample weight is 0 on examples that carry no label for it.

What a masked head's loss means: the reduction is ``"mean_with_sample_weight"``, so each head's
loss is the (weighted) mean over the examples *labelled for that head* in the batch, and exactly
0 (with zero gradient) in a batch where no example is labelled for it. A head labelled on one row
in eight (FashionAI) therefore has a loss on the same scale as a fully labelled head, and its loss
weight means the same thing whatever the label rate. (Keras' default ``"sum_over_batch_size"``
would divide by the batch size and silently shrink rarely labelled heads.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras

from fashion_keras.heads import Head

MASKED_REDUCTION = "mean_with_sample_weight"


def focal_losses(
    heads: Sequence[Head], gamma: float = 2.0, alpha: float = 0.25, label_smoothing: float = 0.0
) -> dict[str, keras.losses.Loss]:
    """One masked ``CategoricalFocalCrossentropy`` per head, keyed by head name.

    ``gamma=0`` and ``alpha=1`` give plain (masked) categorical cross-entropy.
    """
    if gamma < 0:
        raise ValueError(f"focal gamma must be >= 0, got {gamma!r}")
    if not alpha > 0:
        raise ValueError(f"focal alpha must be > 0, got {alpha!r}")
    return {
        h.name: keras.losses.CategoricalFocalCrossentropy(
            alpha=alpha,
            gamma=gamma,
            label_smoothing=label_smoothing,
            reduction=MASKED_REDUCTION,
            name=f"{h.name}_focal",
        )
        for h in heads
    }


def loss_weights(
    heads: Sequence[Head], overrides: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Per-head loss weights: the taxonomy's defaults, optionally overridden by head name."""
    weights = {h.name: h.loss_weight for h in heads}
    for name, value in (overrides or {}).items():
        if name not in weights:
            raise ValueError(f"loss weight given for unknown head {name!r}; heads: {list(weights)}")
        if not value >= 0:
            raise ValueError(f"loss weight for head {name!r} must be >= 0, got {value!r}")
        weights[name] = float(value)
    return weights
