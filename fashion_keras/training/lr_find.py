"""Learning-rate finder (the command is ``python -m fashion_keras.lr_find [train flags]``).

Sweeps the learning rate exponentially from ``--start-lr`` to ``--end-lr`` over ``--num-steps``
training steps (Keras ``fit`` with one step per epoch and a callback that sets the rate before
each step and records the loss after it), stops early once the smoothed loss exceeds
``--stop-factor`` times its minimum, and saves a loss-vs-learning-rate plot (PNG), the curve
(CSV) and the suggestion (JSON). The suggestion is the rate where the smoothed loss falls
fastest (steepest negative slope against log10(lr)) before its minimum.

It takes every ``python -m fashion_keras.train`` flag, so it sweeps the model that run would
train: the same backbone, ``--weights``, ``--freeze-backbone`` (or the frozen phase of
``--freeze-epochs``), ``--lr-multipliers`` (the swept rate is the base rate they scale),
optimizer and weight decay. The model's weights are not saved.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from fashion_keras.heads import get_heads
from fashion_keras.training import phases
from fashion_keras.training.config import TrainConfig
from fashion_keras.training.inputs import load_examples, training_dataset
from fashion_keras.training.trainer import build_model, compile_model, resolve_config

log = logging.getLogger("fashion_keras")


class LRFinder(keras.callbacks.Callback):
    """Sets learning rate ``lrs[i]`` before fit epoch ``i`` (one step each) and records the loss.

    Stops training when the loss is not finite or the smoothed loss exceeds ``stop_factor``
    times the best smoothed loss so far.
    """

    def __init__(self, lrs: Sequence[float], stop_factor: float = 4.0, beta: float = 0.98) -> None:
        super().__init__()
        self.lrs = [float(x) for x in lrs]
        self.stop_factor = stop_factor
        self.beta = beta
        self.tried: list[float] = []
        self.losses: list[float] = []
        self.smoothed: list[float] = []
        self._avg = 0.0
        self._best = math.inf

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.model.optimizer.learning_rate = self.lrs[epoch]

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        loss = float((logs or {}).get("loss", math.nan))
        if not math.isfinite(loss):
            self.model.stop_training = True
            return
        self.tried.append(self.lrs[epoch])
        self.losses.append(loss)
        self._avg = self.beta * self._avg + (1 - self.beta) * loss
        smooth = self._avg / (1 - self.beta ** len(self.losses))  # bias-corrected
        self.smoothed.append(smooth)
        self._best = min(self._best, smooth)
        if len(self.losses) > 10 and smooth > self.stop_factor * self._best:
            self.model.stop_training = True


def suggest_lr(lrs: Sequence[float], smoothed: Sequence[float]) -> float:
    """The middle of the longest descent of the smoothed loss (fastai's "valley" rule).

    The descent is the longest decreasing subsequence of the smoothed losses; the suggestion is
    the rate halfway along it (in steps, so geometrically halfway in rate). Robust to the noise
    of the first steps and to a flat start. Raises ``ValueError`` with fewer than 3 points.
    """
    lrs = np.asarray(lrs, dtype=np.float64)
    smoothed = np.asarray(smoothed, dtype=np.float64)
    if len(lrs) < 3 or len(lrs) != len(smoothed) or not np.isfinite(smoothed).all():
        raise ValueError(
            f"need at least 3 finite loss points to suggest a learning rate, got {len(smoothed)}"
        )
    n = len(smoothed)
    run = np.ones(n, dtype=np.int64)  # longest decreasing subsequence ending at i
    for i in range(1, n):
        earlier = smoothed[:i] > smoothed[i]
        if earlier.any():
            run[i] = run[:i][earlier].max() + 1
    end = int(np.argmax(run))
    start = end - int(run[end]) + 1
    return float(lrs[start + (end - start) // 2])


@dataclasses.dataclass
class LRFindResult:
    """The sweep: rates tried, raw and smoothed losses, the suggestion and the files written."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float
    min_loss_lr: float
    plot_path: str
    csv_path: str
    json_path: str


def save_plot(result: LRFindResult, path: str, title: str = "") -> None:
    """Loss (raw and smoothed) against the learning rate on a log axis, suggestion marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    ax.plot(result.lrs, result.losses, color="0.75", linewidth=1, label="loss")
    ax.plot(result.lrs, result.smoothed, color="C0", linewidth=2, label="smoothed loss")
    y = float(np.interp(np.log10(result.suggestion), np.log10(result.lrs), result.smoothed))
    ax.axvline(result.suggestion, color="C3", linestyle="--", linewidth=1)
    ax.plot([result.suggestion], [y], "o", color="C3", label=f"suggested {result.suggestion:.2e}")
    ax.set_xscale("log")
    # the useful part is below the starting loss: do not let the final explosion squash it
    best = int(np.argmin(result.smoothed))
    low, start = result.smoothed[best], max(result.smoothed[: best + 1])
    ax.set_ylim(low - 0.1 * (start - low + 1e-3), start + 0.5 * (start - low + 1e-3))
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title(title or "learning-rate finder")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _write_curve(result: LRFindResult, settings: dict) -> None:
    """The sweep as CSV (a row per step) and the suggestion as JSON, beside the plot."""
    with open(result.csv_path, "w", encoding="utf-8") as f:
        f.write("step,learning_rate,loss,smoothed_loss\n")
        for i, (lr, loss, smooth) in enumerate(
            zip(result.lrs, result.losses, result.smoothed, strict=True)
        ):
            f.write(f"{i},{lr:.6e},{loss:.6f},{smooth:.6f}\n")
    with open(result.json_path, "w", encoding="utf-8") as f:
        json.dump(
            {
                "suggested_learning_rate": result.suggestion,
                "min_loss_learning_rate": result.min_loss_lr,
                "steps_run": len(result.lrs),
                **settings,
            },
            f,
            indent=2,
        )


def find_lr(
    config: TrainConfig,
    *,
    train_examples: tf.data.Dataset | None = None,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 200,
    stop_factor: float = 4.0,
    output: str | None = None,
) -> LRFindResult:
    """Runs the sweep for ``config`` and writes ``output`` (PNG; default
    ``<output_dir>/lr_find.png``) with ``.csv`` and ``.json`` beside it.

    ``train_examples``: optional TFDS-format examples instead of the configured dataset.
    """
    if not 0 < start_lr < end_lr:
        raise ValueError(f"need 0 < start_lr < end_lr, got start_lr={start_lr}, end_lr={end_lr}")
    if num_steps < 10:
        raise ValueError(f"num_steps = {num_steps} must be >= 10")
    # the training library's own data loading, pipeline, model and compile (losses, optimizer)
    cfg = resolve_config(config)
    heads = get_heads(cfg.data.heads)
    keras.utils.set_random_seed(cfg.runtime.seed)
    if train_examples is None:
        train_examples = load_examples(cfg, heads).train
    train_ds = training_dataset(cfg, heads, train_examples)

    model = build_model(cfg, heads)
    opt = cfg.optimization
    phases.set_backbone_frozen(model, opt.freeze_backbone or opt.freeze_epochs > 0)
    sweep_cfg = cfg.replace(lr_schedule="constant", learning_rate=start_lr)
    compile_model(model, heads, sweep_cfg, steps_per_epoch=1)

    lrs = np.geomspace(start_lr, end_lr, num_steps)
    finder = LRFinder(lrs, stop_factor=stop_factor)
    model.fit(
        train_ds,
        epochs=num_steps,
        steps_per_epoch=1,
        callbacks=[finder],
        shuffle=False,
        verbose=0,
    )
    suggestion = suggest_lr(finder.tried, finder.smoothed)
    output = output or os.path.join(cfg.runtime.output_dir, "lr_find.png")
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    stem = output[: -len(".png")] if output.endswith(".png") else output
    result = LRFindResult(
        lrs=finder.tried,
        losses=finder.losses,
        smoothed=finder.smoothed,
        suggestion=suggestion,
        min_loss_lr=float(finder.tried[int(np.argmin(finder.smoothed))]),
        plot_path=output,
        csv_path=stem + ".csv",
        json_path=stem + ".json",
    )
    title = (
        f"{cfg.model.backbone} at {cfg.model.image_size} px, batch {opt.batch_size}, "
        f"{opt.optimizer}"
    )
    save_plot(result, output, title)
    _write_curve(result, {"start_lr": start_lr, "end_lr": end_lr, "config": cfg.to_dict()})
    return result
