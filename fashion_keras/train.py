"""Training: ``python -m fashion_keras.train --heads deepfashion6``.

With no ``--data-dir`` it trains on the embedded synthetic demo data (generated once, cached,
and read through the same TFDS builder as the real release) with lighter demo defaults. The run
folder gets ``config.json``, ``history.csv``, TensorBoard logs, checkpoints, a resumable backup
(re-run the same command after an interruption to resume), ``model.keras``, ``metrics.json``
and a SavedModel in TF Serving layout under ``export/<version>/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Sequence

import keras
import tensorflow as tf

from fashion_keras import distribute, finetune, reports
from fashion_keras import losses as losses_lib
from fashion_keras import metrics as metrics_lib
from fashion_keras.config import TrainConfig, add_arguments, config_from_args
from fashion_keras.data import pipeline, sources
from fashion_keras.export import export_saved_model
from fashion_keras.heads import Head, get_heads, heads_to_dict
from fashion_keras.optimizers import make_optimizer

log = logging.getLogger("fashion_keras")


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` produced."""

    config: TrainConfig
    model: keras.Model
    history: dict[str, list[float]]
    val_metrics: dict[str, float]
    export_path: str | None


def build_optimizer(
    cfg: TrainConfig, steps_per_epoch: int, lr_multipliers: Sequence[tuple[str, float]] = ()
) -> keras.optimizers.Optimizer:
    """The optimizer with the configured learning-rate schedule (per-step).

    ``lr_multipliers``: ``(regex on variable path, factor)`` pairs for discriminative learning
    rates (``fashion_keras.optimizers.LayerwiseLR``).
    """
    lr: float | keras.optimizers.schedules.LearningRateSchedule = cfg.learning_rate
    if cfg.lr_schedule == "cosine":
        total = max(1, cfg.epochs * steps_per_epoch)
        warmup = min(int(round(cfg.warmup_epochs * steps_per_epoch)), total - 1)
        lr = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=cfg.learning_rate * 0.01 if warmup else cfg.learning_rate,
            decay_steps=total - warmup,
            alpha=0.01,
            warmup_target=cfg.learning_rate if warmup else None,
            warmup_steps=warmup,
        )
    if cfg.optimizer == "adamw":
        opt = make_optimizer(
            "adamw", lr_multipliers, learning_rate=lr, weight_decay=cfg.weight_decay
        )
    elif cfg.optimizer == "adam":
        opt = make_optimizer("adam", lr_multipliers, learning_rate=lr)
    elif cfg.optimizer == "sgd":
        opt = make_optimizer(
            "sgd",
            lr_multipliers,
            learning_rate=lr,
            momentum=cfg.momentum,
            nesterov=True,
            weight_decay=cfg.weight_decay,
        )
    else:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}; expected adamw, adam or sgd")
    if cfg.weight_decay and cfg.optimizer != "adam":
        # No decay on BatchNorm scales/offsets and biases.
        opt.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return opt


def compile_model(
    model: keras.Model, heads: Sequence[Head], cfg: TrainConfig, steps_per_epoch: int
) -> None:
    """Compiles with masked per-head focal losses, loss weights and weighted accuracies."""
    lr_multipliers = finetune.lr_multiplier_patterns(model, cfg.lr_multipliers)
    model.compile(
        optimizer=build_optimizer(cfg, steps_per_epoch, lr_multipliers),
        loss=losses_lib.focal_losses(heads, cfg.focal_gamma, cfg.focal_alpha, cfg.label_smoothing),
        loss_weights=losses_lib.loss_weights(heads),
        weighted_metrics=metrics_lib.head_metrics(heads),
        jit_compile=cfg.jit_compile,
    )


def _set_precision(enabled: bool) -> None:
    if not enabled:
        keras.mixed_precision.set_global_policy("float32")
    elif tf.config.list_physical_devices("GPU"):
        keras.mixed_precision.set_global_policy("mixed_float16")
    else:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")


def _steps(num_examples: int, batch_size: int, limit: int | None) -> int:
    steps = num_examples // batch_size
    if steps < 1:
        raise ValueError(
            f"the training split has {num_examples} examples, fewer than one batch of "
            f"{batch_size}; lower --batch-size"
        )
    return min(steps, limit) if limit else steps


def _save_atomically(model: keras.Model, path: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}.keras"
    model.save(tmp)
    os.replace(tmp, path)


def format_accuracy_table(val_metrics: dict[str, float], heads: Sequence[Head]) -> str:
    """A plain-text table of per-head validation accuracy (with chance level)."""
    lines = [f"{'head':<28} {'classes':>7} {'chance':>7} {'val acc':>8}"]
    for h in heads:
        acc = val_metrics.get(f"{h.name}_accuracy")
        acc_text = f"{acc:8.4f}" if acc is not None else "     n/a"
        lines.append(f"{h.name:<28} {h.num_classes:>7} {1 / h.num_classes:7.3f} {acc_text}")
    mean = val_metrics.get(metrics_lib.MEAN_ACCURACY)
    if mean is not None:
        lines.append(f"{'mean over heads':<28} {'':>7} {'':>7} {mean:8.4f}")
    return "\n".join(lines)


def load_examples(cfg: TrainConfig, heads: Sequence[Head]) -> sources.TrainingData:
    """Train/val examples for a resolved config: the demo data, ``--dataset`` + ``--data-dir``,
    or several ``--sources`` mixed (joint training)."""
    if cfg.uses_demo_data:
        log.warning(
            "No --data-dir given: training on the embedded SYNTHETIC demo data (drawn "
            "garments in the DeepFashion Anno_fine layout), with demo defaults backbone=%s "
            "image_size=%d epochs=%d. Accuracies on it say nothing about real photos; pass "
            "--data-dir with the real release for a real model.",
            cfg.backbone,
            cfg.image_size,
            cfg.epochs,
        )
        builders, weights = [sources.demo_builder()], None
    else:  # --dataset + --data-dir, or several --sources (joint training)
        builders, weights = sources.builders_for_config(cfg, heads)
    return sources.training_data(
        builders,
        heads,
        train_split=cfg.train_split,
        val_split=cfg.val_split,
        weights=weights,
        seed=cfg.seed,
    )


def training_dataset(
    cfg: TrainConfig, heads: Sequence[Head], train_examples: tf.data.Dataset
) -> tf.data.Dataset:
    """The repeated, augmented, batched training pipeline (auto-shard policy DATA)."""
    ds = pipeline.make_dataset(
        train_examples,
        heads,
        cfg.image_size,
        cfg.batch_size,
        training=True,
        bbox_margin=cfg.bbox_margin,
        seed=cfg.seed,
    ).repeat()
    return distribute.shard_by_data(ds)


def train(
    config: TrainConfig,
    *,
    train_examples: tf.data.Dataset | None = None,
    val_examples: tf.data.Dataset | None = None,
    export: bool = True,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> TrainResult:
    """Trains, evaluates on the validation split and exports.

    Args:
      config: the run configuration (``None`` fields are resolved, see ``TrainConfig.resolve``).
      train_examples, val_examples: optional TFDS-format example datasets (image bytes, bbox,
        ``labels`` dict with -1 = unlabelled) to use instead of the configured dataset; then
        ``steps_per_epoch`` must be set unless the dataset's cardinality is known.
      export: write the SavedModel under ``export_dir``.
      callbacks: extra Keras callbacks, run after the built-in ones.
    """
    previous_policy = keras.mixed_precision.global_policy()
    try:
        return _train(
            config,
            train_examples=train_examples,
            val_examples=val_examples,
            export=export,
            callbacks=callbacks,
        )
    finally:
        # --mixed-precision sets Keras' global policy; don't leak it into the caller.
        keras.mixed_precision.set_global_policy(previous_policy)
        distribute.remove_worker_dirs()  # --strategy multi_worker: non-chief scratch folders


def _train(
    config: TrainConfig,
    *,
    train_examples: tf.data.Dataset | None = None,
    val_examples: tf.data.Dataset | None = None,
    export: bool = True,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> TrainResult:
    cfg = finetune.apply_checkpoint_defaults(config).resolve()
    heads = get_heads(cfg.heads)
    strategy = distribute.get_strategy(cfg.strategy)
    # Multi-worker: every worker restores the chief's backup, but only the chief writes to
    # output_dir; the others write to a temporary folder (removed when train() returns).
    backup_dir = os.path.join(cfg.output_dir, "backup")
    cfg = distribute.worker_config(cfg, strategy)
    distribute.check_batch_size(cfg.batch_size, strategy)
    os.makedirs(cfg.output_dir, exist_ok=True)
    keras.utils.set_random_seed(cfg.seed)
    if cfg.deterministic:
        tf.config.experimental.enable_op_determinism()
    _set_precision(cfg.mixed_precision)  # train() restores the caller's policy

    if train_examples is None:
        data = load_examples(cfg, heads)
        train_examples, val_examples, num_train = data.train, data.val, data.num_train
    else:
        num_train = int(train_examples.cardinality())
        if num_train < 0 and not cfg.steps_per_epoch:
            raise ValueError("train_examples has unknown cardinality: set steps_per_epoch")
        num_train = num_train if num_train >= 0 else cfg.steps_per_epoch * cfg.batch_size

    steps_per_epoch = _steps(num_train, cfg.batch_size, cfg.steps_per_epoch)
    train_ds = training_dataset(cfg, heads, train_examples)
    val_ds = None
    if val_examples is not None:
        val_ds = pipeline.make_dataset(
            val_examples,
            heads,
            cfg.image_size,
            cfg.batch_size,
            training=False,
            bbox_margin=cfg.bbox_margin,
        )
        # no replica gets an empty final batch (padded rows have sample weight 0)
        val_ds = distribute.pad_batches(val_ds, strategy.num_replicas_in_sync)
        val_ds = distribute.shard_by_data(val_ds)

    with strategy.scope():
        # --weights: checkpoint loaded, mean/std from it; compiled per phase by fit_phases
        model = finetune.build_model_from_config(cfg, heads)

    def compile_for(phase_cfg: TrainConfig) -> None:
        with strategy.scope():
            compile_model(model, heads, phase_cfg, steps_per_epoch)

    cfg.save(os.path.join(cfg.output_dir, "config.json"))
    with open(os.path.join(cfg.output_dir, "heads.json"), "w", encoding="utf-8") as f:
        json.dump(heads_to_dict(heads), f, indent=2)
    log.info(
        "Training %s (%s params) on %d replica(s): %d steps/epoch x %d epochs, batch %d, %d px",
        cfg.backbone,
        f"{model.count_params():,}",
        strategy.num_replicas_in_sync,
        steps_per_epoch,
        cfg.epochs,
        cfg.batch_size,
        cfg.image_size,
    )

    monitor = "val_mean_accuracy" if val_ds is not None else "mean_accuracy"
    all_callbacks = [
        # First, so the loggers and checkpoints below see the mean over heads.
        metrics_lib.MeanHeadAccuracy(heads),
        # Several replicas: the same BatchNorm statistics on all of them (and on every worker).
        distribute.SyncMovingStatistics(),
        # double_checkpoint: a process killed while saving falls back to the previous backup.
        distribute.BackupAndRestore(
            backup_dir,
            save_freq=cfg.backup_every_steps or "epoch",
            double_checkpoint=True,
        ),
        distribute.AtomicModelCheckpoint(
            os.path.join(cfg.output_dir, "checkpoints", "best.keras"),
            monitor=monitor,
            mode="max",
            save_best_only=True,
        ),
        keras.callbacks.CSVLogger(os.path.join(cfg.output_dir, "history.csv"), append=True),
        # after the CSVLogger: redraws training_curves.png from history.csv every epoch
        reports.TrainingCurves(
            os.path.join(cfg.output_dir, "training_curves.png"),
            heads,
            csv_path=os.path.join(cfg.output_dir, "history.csv"),
        ),
        keras.callbacks.TensorBoard(os.path.join(cfg.output_dir, "logs")),
        keras.callbacks.TerminateOnNaN(),
        *callbacks,
    ]
    # --freeze-backbone / --freeze-epochs: frozen and fine-tune phases, one fit call each
    history = finetune.fit_phases(
        model,
        cfg,
        compile_for,
        train_ds,
        steps_per_epoch=steps_per_epoch,
        validation_data=val_ds,
        callbacks=all_callbacks,
        shuffle=False,  # the tf.data pipeline shuffles
        verbose=cfg.verbose,
    )

    val_metrics: dict[str, float] = {}
    if val_ds is not None:
        val_metrics = model.evaluate(val_ds, return_dict=True, verbose=0)
        val_metrics = {k: float(v) for k, v in val_metrics.items()}
        mean = metrics_lib.mean_accuracy(val_metrics, heads)
        if mean is not None:
            val_metrics[metrics_lib.MEAN_ACCURACY] = mean
        print("\nValidation accuracy per head:\n" + format_accuracy_table(val_metrics, heads))
        with open(os.path.join(cfg.output_dir, "metrics.json"), "w", encoding="utf-8") as f:
            json.dump({"val": val_metrics}, f, indent=2, sort_keys=True)

    _save_atomically(model, os.path.join(cfg.output_dir, "model.keras"))
    export_path = None
    if export:
        export_base = cfg.export_dir or os.path.join(cfg.output_dir, "export")
        export_path = export_saved_model(model, export_base, bbox_margin=cfg.bbox_margin)
        print(f"Exported SavedModel (TF Serving layout): {export_path}")
    return TrainResult(
        cfg,
        model,
        {k: list(map(float, v)) for k, v in history.history.items()},
        val_metrics,
        export_path,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fashion_keras.train",
        description=__doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        cfg = config_from_args(args)
        cfg.resolve()
        if cfg.strategy == "multi_worker":  # joins the TF_CONFIG cluster before any other op
            distribute.get_strategy(cfg.strategy)
        get_heads(cfg.heads)
        finetune.checkpoint_for(cfg.resolve())  # --weights: the file exists / is in the cache
    except (ValueError, OSError) as e:
        parser.error(str(e))
    train(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
