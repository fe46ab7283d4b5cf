"""Training: :func:`train` runs Keras ``fit`` for a :class:`~fashion_keras.training.config.TrainConfig`.

With no data given it trains on the embedded synthetic demo data (generated once, cached, and
read through the same TFDS builder as the real release) with the ``demo`` preset. The run folder
gets ``config.json``, ``heads.json``, ``history.csv``, TensorBoard logs, checkpoints, a resumable
backup (re-run the same command after an interruption to resume), ``model.keras``,
``metrics.json`` and a SavedModel in TF Serving layout under ``export/<version>/``. The command
line is ``python -m fashion_keras.train``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
from collections.abc import Sequence

import keras
import tensorflow as tf

from fashion_keras.data import pipeline, sources
from fashion_keras.evaluation import reports
from fashion_keras.export import export_saved_model
from fashion_keras.heads import Head, get_heads, heads_to_dict
from fashion_keras.models import checkpoints, create_model
from fashion_keras.training import checkpointing, distribute, phases
from fashion_keras.training import losses as losses_lib
from fashion_keras.training import metrics as metrics_lib
from fashion_keras.training.config import TrainConfig, config_from_args
from fashion_keras.training.optimizers import build_optimizer, lr_multiplier_patterns

log = logging.getLogger("fashion_keras")


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` produced."""

    config: TrainConfig
    model: keras.Model
    history: dict[str, list[float]]
    val_metrics: dict[str, float]
    export_path: str | None


def compile_model(
    model: keras.Model, heads: Sequence[Head], cfg: TrainConfig, steps_per_epoch: int
) -> None:
    """Compiles with masked per-head focal losses, loss weights and weighted accuracies."""
    opt = cfg.optimization
    lr_multipliers = lr_multiplier_patterns(model, opt.lr_multipliers)
    model.compile(
        optimizer=build_optimizer(opt, steps_per_epoch, lr_multipliers),
        loss=losses_lib.focal_losses(heads, opt.focal_gamma, opt.focal_alpha, opt.label_smoothing),
        loss_weights=losses_lib.loss_weights(heads),
        weighted_metrics=metrics_lib.head_metrics(heads),
        jit_compile=cfg.runtime.jit_compile,
    )


def resolve_config(config: TrainConfig) -> TrainConfig:
    """``config.resolve()``, with the default input size taken from the ``--weights``
    checkpoint when ``--image-size`` is unset (real data only: the demo keeps its small size)."""
    model = config.model
    if model.weights and model.image_size is None and not config.data.uses_demo_data:
        _, pretrained = checkpoints.resolve(model.weights, config.resolve().model.backbone)
        log.info("image size %d px from %s", pretrained.input_size, pretrained.source)
        config = config.replace(image_size=pretrained.input_size)
    return config.resolve()


def check_command_config(args: argparse.Namespace) -> TrainConfig:
    """The config of a training command's flags, checked before any training starts: it
    resolves, a multi-worker run joins its cluster first (before any other TensorFlow op), the
    head spec loads and the ``--weights`` checkpoint is there. Raises ``ValueError`` /
    ``OSError`` with the message for the command line."""
    cfg = config_from_args(args)
    resolved = cfg.resolve()
    if resolved.runtime.strategy == "multi_worker":
        distribute.get_strategy(resolved.runtime.strategy)
    get_heads(resolved.data.heads)
    if resolved.model.weights:
        checkpoints.resolve(resolved.model.weights, resolved.model.backbone)
    return cfg


def build_model(cfg: TrainConfig, heads: Sequence[Head]) -> keras.Model:
    """The classifier of a resolved config (``--weights`` loaded, mean/std from the checkpoint),
    carrying the run's preprocessing (the garment-box margin) for evaluation and export."""
    m = cfg.model
    if not m.weights and (cfg.optimization.freeze_backbone or cfg.optimization.freeze_epochs):
        log.warning("freezing a randomly initialised backbone: pass --weights for pretrained one")
    return create_model(
        backbone=m.backbone,
        heads=tuple(heads),
        weights=m.weights or None,
        image_size=m.image_size,
        fc_layers=m.fc_layers,
        fc_units=m.fc_units,
        dropout=m.dropout,
        preprocessing={"bbox_margin": cfg.preprocess.bbox_margin},
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


def save_atomically(model: keras.Model, path: str) -> None:
    """``model.save(path)`` through a temporary file renamed into place: a process killed
    while saving leaves the previous file whole (and a failed save leaves nothing beside it)."""
    tmp = f"{path}.tmp-{os.getpid()}.keras"
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


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
    builders, weights = sources.builders_for(cfg.data, heads)
    return sources.training_data(
        builders,
        heads,
        train_split=cfg.data.train_split,
        val_split=cfg.data.val_split,
        weights=weights,
        seed=cfg.runtime.seed,
    )


def input_batches(
    cfg: TrainConfig, heads: Sequence[Head], examples: tf.data.Dataset, training: bool
) -> tf.data.Dataset:
    """The batches of one split: the augmented training view (shuffled, repeated) or the
    evaluation view, with the run's input size and garment-box margin."""
    ds = pipeline.make_dataset(
        examples,
        heads,
        cfg.model.image_size,
        cfg.optimization.batch_size,
        training=training,
        bbox_margin=cfg.preprocess.bbox_margin,
        seed=cfg.runtime.seed if training else None,
    )
    return ds.repeat() if training else ds


def training_dataset(
    cfg: TrainConfig, heads: Sequence[Head], train_examples: tf.data.Dataset
) -> tf.data.Dataset:
    """The repeated, augmented, batched training pipeline (auto-shard policy DATA)."""
    return distribute.shard_by_data(input_batches(cfg, heads, train_examples, training=True))


def validation_dataset(
    cfg: TrainConfig,
    heads: Sequence[Head],
    val_examples: tf.data.Dataset,
    strategy: tf.distribute.Strategy,
) -> tf.data.Dataset:
    """The evaluation-view validation batches; no replica gets an empty final batch (padded
    rows have sample weight 0)."""
    val_ds = input_batches(cfg, heads, val_examples, training=False)
    val_ds = distribute.pad_batches(val_ds, strategy.num_replicas_in_sync)
    return distribute.shard_by_data(val_ds)


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


def _num_train(cfg: TrainConfig, train_examples: tf.data.Dataset) -> int:
    num_train = int(train_examples.cardinality())
    if num_train < 0 and not cfg.optimization.steps_per_epoch:
        raise ValueError("train_examples has unknown cardinality: set steps_per_epoch")
    if num_train >= 0:
        return num_train
    return cfg.optimization.steps_per_epoch * cfg.optimization.batch_size


def _callbacks(
    cfg: TrainConfig,
    heads: Sequence[Head],
    backup_dir: str,
    monitor: str,
    extra: Sequence[keras.callbacks.Callback],
) -> list[keras.callbacks.Callback]:
    out = cfg.runtime.output_dir
    history_csv = os.path.join(out, "history.csv")
    return [
        # First, so the loggers and checkpoints below see the mean over heads.
        metrics_lib.MeanHeadAccuracy(heads),
        # Several replicas: the same BatchNorm statistics on all of them (and on every worker).
        distribute.SyncMovingStatistics(),
        # double_checkpoint: a process killed while saving falls back to the previous backup.
        checkpointing.BackupAndRestore(
            backup_dir,
            save_freq=cfg.runtime.backup_every_steps or "epoch",
            double_checkpoint=True,
        ),
        checkpointing.AtomicModelCheckpoint(
            os.path.join(out, "checkpoints", "best.keras"),
            monitor=monitor,
            mode="max",
            save_best_only=True,
        ),
        keras.callbacks.CSVLogger(history_csv, append=True),
        # after the CSVLogger: redraws training_curves.png from history.csv every epoch
        reports.TrainingCurves(
            os.path.join(out, "training_curves.png"), heads, csv_path=history_csv
        ),
        keras.callbacks.TensorBoard(os.path.join(out, "logs")),
        keras.callbacks.TerminateOnNaN(),
        *extra,
    ]


def _write_run_files(cfg: TrainConfig, heads: Sequence[Head]) -> None:
    cfg.save(os.path.join(cfg.runtime.output_dir, "config.json"))
    with open(os.path.join(cfg.runtime.output_dir, "heads.json"), "w", encoding="utf-8") as f:
        json.dump(heads_to_dict(heads), f, indent=2)


def _final_validation(
    model: keras.Model, cfg: TrainConfig, heads: Sequence[Head], val_ds: tf.data.Dataset
) -> dict[str, float]:
    val_metrics = model.evaluate(val_ds, return_dict=True, verbose=0)
    val_metrics = {k: float(v) for k, v in val_metrics.items()}
    mean = metrics_lib.mean_accuracy(val_metrics, heads)
    if mean is not None:
        val_metrics[metrics_lib.MEAN_ACCURACY] = mean
    print("\nValidation accuracy per head:\n" + format_accuracy_table(val_metrics, heads))
    path = os.path.join(cfg.runtime.output_dir, "metrics.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"val": val_metrics}, f, indent=2, sort_keys=True)
    return val_metrics


def _train(
    config: TrainConfig,
    *,
    train_examples: tf.data.Dataset | None,
    val_examples: tf.data.Dataset | None,
    export: bool,
    callbacks: Sequence[keras.callbacks.Callback],
) -> TrainResult:
    cfg = resolve_config(config)
    heads = get_heads(cfg.data.heads)
    strategy = distribute.get_strategy(cfg.runtime.strategy)
    # Multi-worker: every worker restores the chief's backup, but only the chief writes to
    # output_dir; the others write to a temporary folder (removed when train() returns).
    backup_dir = os.path.join(cfg.runtime.output_dir, "backup")
    cfg = distribute.worker_config(cfg, strategy)
    distribute.check_batch_size(cfg.optimization.batch_size, strategy)
    os.makedirs(cfg.runtime.output_dir, exist_ok=True)
    keras.utils.set_random_seed(cfg.runtime.seed)
    if cfg.runtime.deterministic:
        tf.config.experimental.enable_op_determinism()
    _set_precision(cfg.runtime.mixed_precision)  # train() restores the caller's policy

    if train_examples is None:
        data = load_examples(cfg, heads)
        train_examples, val_examples, num_train = data.train, data.val, data.num_train
    else:
        num_train = _num_train(cfg, train_examples)
    opt = cfg.optimization
    steps_per_epoch = _steps(num_train, opt.batch_size, opt.steps_per_epoch)
    train_ds = training_dataset(cfg, heads, train_examples)
    val_ds = (
        None if val_examples is None else validation_dataset(cfg, heads, val_examples, strategy)
    )

    with strategy.scope():
        # --weights: checkpoint loaded, mean/std from it; compiled per phase by fit_phases
        model = build_model(cfg, heads)

    def compile_for(phase_cfg: TrainConfig) -> None:
        with strategy.scope():
            compile_model(model, heads, phase_cfg, steps_per_epoch)

    _write_run_files(cfg, heads)
    log.info(
        "Training %s (%s params) on %d replica(s): %d steps/epoch x %d epochs, batch %d, %d px",
        cfg.model.backbone,
        f"{model.count_params():,}",
        strategy.num_replicas_in_sync,
        steps_per_epoch,
        opt.epochs,
        opt.batch_size,
        cfg.model.image_size,
    )
    monitor = "val_mean_accuracy" if val_ds is not None else "mean_accuracy"
    # --freeze-backbone / --freeze-epochs: frozen and fine-tune phases, one fit call each
    history = phases.fit_phases(
        model,
        cfg,
        compile_for,
        train_ds,
        steps_per_epoch=steps_per_epoch,
        validation_data=val_ds,
        callbacks=_callbacks(cfg, heads, backup_dir, monitor, callbacks),
        shuffle=False,  # the tf.data pipeline shuffles
        verbose=cfg.runtime.verbose,
    )
    val_metrics = {} if val_ds is None else _final_validation(model, cfg, heads, val_ds)
    save_atomically(model, os.path.join(cfg.runtime.output_dir, "model.keras"))
    export_path = None
    if export:
        export_base = cfg.runtime.export_dir or os.path.join(cfg.runtime.output_dir, "export")
        export_path = export_saved_model(model, export_base)
        print(f"Exported SavedModel (TF Serving layout): {export_path}")
    return TrainResult(
        cfg,
        model,
        {k: list(map(float, v)) for k, v in history.history.items()},
        val_metrics,
        export_path,
    )
