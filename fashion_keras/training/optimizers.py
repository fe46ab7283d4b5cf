"""The optimizer of a run: its learning-rate schedule and per-layer learning rates.

:func:`build_optimizer` makes the configured optimizer (AdamW, Adam or SGD) with its schedule
(cosine decay after a linear warm-up, constant, or fastai's one-cycle, :class:`OneCycle`).
``--lr-multipliers 'stem=0.01,stages=0.1'``
gives layer groups (:func:`layer_groups`: the backbone's stem and stages, the heads) their own
learning-rate factors (:func:`lr_multiplier_patterns`).

Keras 3 optimizers have one learning rate for every variable, and neither Keras nor KerasHub
ships per-layer rates. Scaling the gradients would not do: Adam(W) normalises the gradient
scale away. :class:`LayerwiseLR` therefore scales the learning rate itself inside
``update_step``: variable ``v`` is updated with ``lr(step) * multiplier(v)``, where the
multiplier is the first ``(regex, factor)`` pair whose regex matches ``v.path`` (1.0 when none
does). Decoupled weight decay (AdamW, SGD) is scaled the same way, as PyTorch parameter groups
do. Only ``keras.ops`` and Keras' public optimizer hooks are used, so it runs on every backend.

``LayerwiseAdamW``, ``LayerwiseAdam`` and ``LayerwiseSGD`` are registered for serialisation
(``model.save`` / ``load_model`` keep the multipliers).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import keras
from keras import ops

from fashion_keras.training.config import OptimizationConfig, parse_lr_multipliers


class LayerwiseLR:
    """Mixin for a Keras optimizer class: per-variable learning-rate multipliers.

    Args:
      lr_multipliers: ``(regex, factor)`` pairs matched (``re.search``) against each trainable
        variable's ``path``; the first match wins, unmatched variables use 1.0. Factors are
        >= 0 (0 freezes a variable's weights, though BatchNorm statistics still update).
      *args, **kwargs: the wrapped optimizer's arguments.
    """

    def __init__(
        self, *args: Any, lr_multipliers: Sequence[Sequence[Any]] = (), **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        pairs = []
        for item in lr_multipliers:
            if len(item) != 2:
                raise ValueError(f"lr_multipliers entry {item!r} must be a (regex, factor) pair")
            pattern, factor = str(item[0]), float(item[1])
            if not factor >= 0:
                raise ValueError(f"lr_multipliers: factor for {pattern!r} is {factor!r}, not >= 0")
            try:
                re.compile(pattern)
            except re.error as e:
                raise ValueError(f"lr_multipliers: bad regex {pattern!r}: {e}") from e
            pairs.append((pattern, factor))
        self.lr_multipliers = pairs
        self._lr_patterns = [(re.compile(p), f) for p, f in pairs]

    def multiplier_for(self, variable: Any) -> float:
        """The learning-rate factor of ``variable`` (a Keras variable)."""
        path = getattr(variable, "path", variable.name)
        for pattern, factor in self._lr_patterns:
            if pattern.search(path):
                return factor
        return 1.0

    def build(self, variables: Sequence[Any]) -> None:
        super().build(variables)
        # Per-index tables: update_step may get backend variables (tf.Variable) on TensorFlow,
        # which _get_variable_index resolves but which have no Keras path.
        self._lr_factor = [self.multiplier_for(v) for v in variables]
        self._decays = [self._use_weight_decay(v) for v in variables]

    def _apply_weight_decay(self, variables: Sequence[Any]) -> None:
        # Done per variable in update_step, with the variable's own learning rate.
        return None

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        index = self._get_variable_index(variable)
        lr = ops.multiply(ops.cast(learning_rate, variable.dtype), self._lr_factor[index])
        if self.weight_decay and self._decays[index]:
            wd = ops.cast(self.weight_decay, variable.dtype)
            self.assign_sub(variable, ops.multiply(variable, ops.multiply(wd, lr)))
        super().update_step(gradient, variable, lr)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["lr_multipliers"] = [[p, f] for p, f in self.lr_multipliers]
        return config


@keras.saving.register_keras_serializable(package="fashion_keras")
class LayerwiseAdamW(LayerwiseLR, keras.optimizers.AdamW):
    """``keras.optimizers.AdamW`` with per-variable learning-rate multipliers."""


@keras.saving.register_keras_serializable(package="fashion_keras")
class LayerwiseAdam(LayerwiseLR, keras.optimizers.Adam):
    """``keras.optimizers.Adam`` with per-variable learning-rate multipliers."""


@keras.saving.register_keras_serializable(package="fashion_keras")
class LayerwiseSGD(LayerwiseLR, keras.optimizers.SGD):
    """``keras.optimizers.SGD`` with per-variable learning-rate multipliers."""


#: Optimizer classes by ``TrainConfig.optimizer`` name: (plain, with multipliers).
OPTIMIZER_CLASSES: dict[str, tuple[type, type]] = {
    "adamw": (keras.optimizers.AdamW, LayerwiseAdamW),
    "adam": (keras.optimizers.Adam, LayerwiseAdam),
    "sgd": (keras.optimizers.SGD, LayerwiseSGD),
}


def make_optimizer(
    name: str, lr_multipliers: Sequence[Sequence[Any]] = (), **kwargs: Any
) -> keras.optimizers.Optimizer:
    """``adamw``/``adam``/``sgd`` with ``kwargs``; the layerwise class when multipliers are set."""
    if name not in OPTIMIZER_CLASSES:
        raise ValueError(f"unknown optimizer {name!r}; expected {', '.join(OPTIMIZER_CLASSES)}")
    plain, layerwise = OPTIMIZER_CLASSES[name]
    if lr_multipliers:
        return layerwise(lr_multipliers=lr_multipliers, **kwargs)
    return plain(**kwargs)


@keras.saving.register_keras_serializable(package="fashion_keras")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """fastai's one-cycle learning rate (``fit_one_cycle``; momentum is not cycled).

    At step ``s`` of ``total_steps``, with ``p = s / total_steps``: a cosine rise from
    ``max_learning_rate / div`` to ``max_learning_rate`` while ``p < pct_start``, then a cosine
    fall to ``max_learning_rate / div_final`` (fastai's ``combined_cos``); steps past the end
    stay at the final rate.
    """

    def __init__(
        self,
        max_learning_rate: float,
        total_steps: int,
        pct_start: float = 0.25,
        div: float = 25.0,
        div_final: float = 1e5,
        name: str = "OneCycle",
    ) -> None:
        super().__init__()
        checks = [
            ("max_learning_rate", max_learning_rate, max_learning_rate > 0, "> 0"),
            ("total_steps", total_steps, int(total_steps) == total_steps >= 1, "an integer >= 1"),
            ("pct_start", pct_start, 0 <= pct_start < 1, "in [0, 1)"),
            ("div", div, div > 0, "> 0"),
            ("div_final", div_final, div_final > 0, "> 0"),
        ]
        for field, value, ok, expected in checks:
            if not ok:
                raise ValueError(f"OneCycle: {field} = {value!r} must be {expected}")
        self.max_learning_rate = float(max_learning_rate)
        self.total_steps = int(total_steps)
        self.pct_start = float(pct_start)
        self.div = float(div)
        self.div_final = float(div_final)
        self.name = name

    def __call__(self, step: Any) -> Any:
        peak = self.max_learning_rate
        start, end = peak / self.div, peak / self.div_final
        pos = ops.minimum(ops.cast(step, "float32") / float(self.total_steps), 1.0)
        rising = pos < self.pct_start
        # position within the current half, in [0, 1]
        frac = ops.where(
            rising,
            pos / max(self.pct_start, 1e-12),
            (pos - self.pct_start) / (1.0 - self.pct_start),
        )
        low = ops.where(rising, start, peak)
        high = ops.where(rising, peak, end)
        # fastai's low + (1 + cos(pi (1 - frac))) (high - low) / 2, written from the end (and
        # 1 - cos x = 2 sin^2(x / 2)) so that float32 keeps the tiny rates near the end exact
        return high + ops.square(ops.sin(math.pi / 2.0 * (1.0 - frac))) * (low - high)

    def get_config(self) -> dict[str, Any]:
        return {
            "max_learning_rate": self.max_learning_rate,
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
            "div": self.div,
            "div_final": self.div_final,
            "name": self.name,
        }


def one_cycle_shape(opt: OptimizationConfig) -> tuple[float, float]:
    """fastai's ``(pct_start, div)`` for the run or phase ``opt`` describes.

    A one-phase run gets ``fit_one_cycle``'s defaults (0.25, 25). A ``--freeze-epochs`` run gets
    ``fine_tune``'s: its frozen phase (which :func:`~fashion_keras.training.phases.phase_config`
    marks with both ``freeze_epochs`` and ``freeze_backbone``) (0.99, 25), the unfrozen phase
    (0.3, 5).
    """
    if not opt.freeze_epochs:
        return 0.25, 25.0
    return (0.99, 25.0) if opt.freeze_backbone else (0.3, 5.0)


def build_optimizer(
    opt: OptimizationConfig, steps_per_epoch: int, lr_multipliers: Sequence[tuple[str, float]] = ()
) -> keras.optimizers.Optimizer:
    """The optimizer of a resolved optimisation section (or of one phase, see
    :func:`~fashion_keras.training.phases.phase_config`), with its per-step schedule.

    ``lr_multipliers``: ``(regex on variable path, factor)`` pairs for discriminative learning
    rates (:func:`lr_multiplier_patterns`).
    """
    lr: float | keras.optimizers.schedules.LearningRateSchedule = opt.learning_rate
    if opt.lr_schedule == "cosine":
        total = max(1, opt.epochs * steps_per_epoch)
        warmup = min(int(round(opt.warmup_epochs * steps_per_epoch)), total - 1)
        lr = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=opt.learning_rate * 0.01 if warmup else opt.learning_rate,
            decay_steps=total - warmup,
            alpha=0.01,
            warmup_target=opt.learning_rate if warmup else None,
            warmup_steps=warmup,
        )
    elif opt.lr_schedule == "one_cycle":
        pct_start, div = one_cycle_shape(opt)
        lr = OneCycle(
            opt.learning_rate, max(1, opt.epochs * steps_per_epoch), pct_start=pct_start, div=div
        )
    kwargs: dict[str, Any] = {"learning_rate": lr}
    if opt.optimizer in ("adamw", "sgd"):
        kwargs["weight_decay"] = opt.weight_decay
    if opt.optimizer == "sgd":
        kwargs.update(momentum=opt.momentum, nesterov=True)
    optimizer = make_optimizer(opt.optimizer, lr_multipliers, **kwargs)
    if opt.weight_decay and opt.optimizer != "adam":
        # No decay on BatchNorm scales/offsets and biases.
        optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return optimizer


def layer_groups(model: keras.Model) -> dict[str, list[str]]:
    """Layer names per group of a ``MultiHeadClassifier``: ``stem``, ``layer1`` ...
    (inside the backbone: an SE-ResNet's or a keras.applications network's stem and stages)
    and ``heads`` (the layers after the backbone: fc layers and heads)."""
    backbone = model.backbone
    groups = {"stem": list(backbone.stem_layer_names)}
    for i in range(backbone.num_stages):
        groups[f"layer{i + 1}"] = list(backbone.stage_layer_names(i + 1))
    groups["heads"] = [
        layer.name for layer in model.layers if layer is not backbone and layer.weights
    ]
    clashes = sorted(set(groups["heads"]) & {layer.name for layer in backbone.layers})
    if clashes:
        raise ValueError(
            f"layer name(s) {clashes} are both in the backbone and after it: the learning-rate "
            "groups would be ambiguous; rename the heads"
        )
    return groups


def lr_multiplier_patterns(
    model: keras.Model, spec: str | Mapping[str, float] | None
) -> list[tuple[str, float]]:
    """``(regex on variable path, factor)`` pairs for :class:`LayerwiseLR`.

    ``spec`` is the ``--lr-multipliers`` string or a parsed ``{group: factor}`` mapping; returns
    ``[]`` when no factor differs from 1.
    """
    groups = layer_groups(model)
    stages = model.backbone.num_stages
    factors = parse_lr_multipliers(spec, stages) if not isinstance(spec, Mapping) else spec
    unknown = sorted(set(factors) - set(groups))
    if unknown:
        raise ValueError(f"lr multipliers for unknown group(s) {unknown}; groups: {list(groups)}")
    if all(f == 1.0 for f in factors.values()):
        return []
    pairs = []
    for group, factor in factors.items():
        names = groups[group]
        if names:
            alternatives = "|".join(re.escape(n) for n in names)
            pairs.append((f"(?:^|/)(?:{alternatives})/", float(factor)))
    return pairs
