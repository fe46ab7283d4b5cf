"""Training: :func:`train` runs Keras ``fit`` for a :class:`~fashion_keras.training.config.TrainConfig`.

With no data given it trains on the embedded synthetic demo data (generated once, cached, and
read through the same TFDS builder as the real release) with the ``demo`` preset. The run folder
gets ``config.json``, ``heads.json``, ``history.csv``, TensorBoard logs, checkpoints, a resumable
backup (re-run the same command after an interruption to resume), ``model.keras``,
``metrics.json`` and a SavedModel in TF Serving layout under ``export/<version>/``. The final
validation, ``model.keras`` and the export hold the best epoch's weights (``--final-weights``),
and the validation report gives each head's majority baseline, balanced accuracy and per-class
recall/precision (:mod:`fashion_keras.training.validation`). The command line is
``python -m fashion_keras.train``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from fashion_keras.evaluation import keypoint_predictions, reports
from fashion_keras.evaluation.predictors import keras_file, load_keras_model
from fashion_keras.export import export_saved_model
from fashion_keras.heads import AnyHead, Head, get_heads, keypoint_heads, softmax_heads
from fashion_keras.models import create_model
from fashion_keras.models.applications import is_application
from fashion_keras.models.factory import check_weights, default_image_size
from fashion_keras.training import (
    checkpointing,
    distribute,
    inputs,
    phases,
    progress,
    run_folder,
    validation,
)
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
    model: keras.Model,
    heads: Sequence[Head],
    cfg: TrainConfig,
    steps_per_epoch: int,
    class_weights: Mapping[str, np.ndarray | None] | None = None,
) -> None:
    """Compiles with masked per-head focal losses (per-class weights where given), the keypoint
    heads' heatmap and visibility losses, loss weights and weighted accuracies / distances."""
    opt = cfg.optimization
    lr_multipliers = lr_multiplier_patterns(model, opt.lr_multipliers)
    losses = losses_lib.focal_losses(
        heads, opt.focal_gamma, opt.focal_alpha, opt.label_smoothing, class_weights
    )
    stride = cfg.model.keypoint_stride
    count_occluded = opt.keypoint_occluded == "count"
    losses.update(losses_lib.keypoint_losses(heads, stride, opt.keypoint_sigma, count_occluded))
    model.compile(
        optimizer=build_optimizer(opt, steps_per_epoch, lr_multipliers),
        loss=losses,
        loss_weights=losses_lib.loss_weights(heads),
        weighted_metrics=metrics_lib.head_metrics(heads, stride),
        jit_compile=cfg.runtime.jit_compile,
    )


def resolve_config(config: TrainConfig) -> TrainConfig:
    """``config.resolve()``, with the default input size taken from the ``--weights``
    checkpoint, or a keras.applications backbone's own size (299 for Inception-v3), when
    ``--image-size`` is unset (real data only: the demo keeps its small size)."""
    model = config.model
    if model.image_size is None and not config.data.uses_demo_data:
        backbone = config.resolve().model.backbone
        if model.weights or is_application(backbone):
            size, source = default_image_size(backbone, model.weights or None)
            log.info("image size %d px from %s", size, source)
            config = config.replace(image_size=size)
    return config.resolve()


def check_command_config(args: argparse.Namespace) -> TrainConfig:
    """The config of a training command's flags, checked before any training starts: it
    resolves, a multi-worker run joins its cluster first (before any other TensorFlow op), the
    head spec loads, the ``--weights`` checkpoint is there and ``--augment-on accelerator``
    serves the run. Raises ``ValueError`` / ``OSError`` with the message for the command line."""
    cfg = config_from_args(args)
    resolved = cfg.resolve()
    if resolved.runtime.strategy == "multi_worker":
        distribute.get_strategy(resolved.runtime.strategy)
    heads = get_heads(resolved.data.heads)
    check_weights(resolved.model.backbone, resolved.model.weights or None)
    if resolved.optimization.augment_on == "accelerator":
        inputs.view_on(resolved, heads)
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
        keypoint_filters=m.keypoint_filters,
        keypoint_stride=m.keypoint_stride,
        regions=inputs.model_regions(cfg, heads),
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


def _callbacks(
    cfg: TrainConfig,
    heads: Sequence[Head],
    backup_dir: str,
    checkpoint: checkpointing.AtomicModelCheckpoint,
    baselines: Mapping[str, float],
    extra: Sequence[keras.callbacks.Callback],
) -> list[keras.callbacks.Callback]:
    out = cfg.runtime.output_dir
    history_csv = os.path.join(out, "history.csv")
    return [
        # First, so the loggers and checkpoints below see the mean over heads.
        metrics_lib.MeanHeadAccuracy(softmax_heads(heads)),
        # Several replicas: the same BatchNorm statistics on all of them (and on every worker).
        distribute.SyncMovingStatistics(),
        # double_checkpoint: a process killed while saving falls back to the previous backup.
        checkpointing.BackupAndRestore(
            backup_dir,
            save_freq=cfg.runtime.backup_every_steps or "epoch",
            double_checkpoint=True,
        ),
        checkpoint,
        keras.callbacks.CSVLogger(history_csv, append=True),
        # after the CSVLogger: redraws training_curves.png from history.csv every epoch
        reports.TrainingCurves(
            os.path.join(out, "training_curves.png"),
            softmax_heads(heads),
            csv_path=history_csv,
            baselines=baselines,
        ),
        keras.callbacks.TensorBoard(os.path.join(out, "logs")),
        keras.callbacks.TerminateOnNaN(),
        *extra,
    ]


def _chief_checkpoint(
    strategy: tf.distribute.Strategy,
    checkpoint: checkpointing.AtomicModelCheckpoint,
    chief_path: str,
) -> checkpointing.AtomicModelCheckpoint:
    """The best checkpoint every worker restores: the chief's, once it is written (a non-chief
    worker's own only saw the epochs since its last start, so after a resume it may differ)."""
    distribute.barrier(strategy)
    if distribute.is_chief(strategy):
        return checkpoint
    return checkpointing.AtomicModelCheckpoint(
        chief_path, monitor=checkpoint.monitor, mode=checkpoint.mode, save_best_only=True
    )


def _restore_best(
    model: keras.Model, cfg: TrainConfig, checkpoint: checkpointing.AtomicModelCheckpoint
) -> dict[str, Any]:
    """Puts the best checkpoint's weights into ``model`` (``--final-weights best``) and says
    which weights the final validation, ``model.keras`` and the export hold."""
    record = checkpoint.record()
    if cfg.runtime.final_weights == "last" or record is None:
        if record is None and cfg.runtime.final_weights == "best":
            log.warning("no best checkpoint was written: keeping the last epoch's weights")
        return {"weights": "last"}
    best = keras.saving.load_model(checkpoint.filepath, compile=False)
    model.set_weights(best.get_weights())
    log.info(
        "final weights: epoch %d, the best by %s (%.4f)",
        record["epoch"],
        record["monitor"],
        record["value"],
    )
    return {"weights": "best", **record}


def _final_validation(
    model: keras.Model,
    cfg: TrainConfig,
    heads: Sequence[AnyHead],
    val_ds: tf.data.Dataset,
    data: inputs.RunData,
) -> tuple[dict[str, float], dict[str, Any], dict[str, Any]]:
    """Keras' validation metrics, the per-head report (baselines, per-class truth) of the
    softmax heads and the keypoint heads' NE against the mean-position baseline."""
    val_metrics = model.evaluate(val_ds, return_dict=True, verbose=0)
    val_metrics = {k: float(v) for k, v in val_metrics.items()}
    classes = softmax_heads(heads)
    report: dict[str, Any] = {}
    if classes:
        mean = metrics_lib.mean_accuracy(val_metrics, classes)
        if mean is not None:
            val_metrics[metrics_lib.MEAN_ACCURACY] = mean
        report = validation.validation_report(model, val_ds, classes, data.train_counts)
        print("\nValidation per head:\n" + validation.format_table(report, classes))
        logdir = os.path.join(cfg.runtime.output_dir, "logs")
        validation.write_tensorboard(report, logdir, cfg.optimization.epochs)
    keypoints = {}
    if keypoint_heads(heads):
        predictions = keypoint_predictions.predict_keypoints(
            model,
            data.val,
            heads,
            cfg.model.image_size,
            bbox_margin=cfg.preprocess.bbox_margin,
            batch_size=cfg.optimization.batch_size,
        )
        truth = keypoint_predictions.ground_truth(data.train.take(data.num_train), heads)
        for name, p in predictions.items():
            result = keypoint_predictions.evaluate_keypoints(p, truth[name])
            print(f"\nValidation keypoints, {name} (photo pixels):\n{result.table()}")
            keypoints[name] = result.to_json()
            if result.score is not None:
                val_metrics[f"{name}_ne_percent"] = float(result.score.percent)
    return val_metrics, report, keypoints


def _region_section(data: inputs.RunData) -> dict[str, Any]:
    """``metrics.json``'s ``region_boxes``: per split, the examples that fell back to the
    garment box per region (nothing without region crops)."""
    if not data.region_fallbacks:
        return {}
    return {
        "region_boxes": {
            split: {"examples": c.examples, "fell_back_to_garment_box": dict(c.fallbacks)}
            for split, c in data.region_fallbacks.items()
        }
    }


def _export(model: keras.Model, cfg: TrainConfig) -> str | None:
    """Exports the run's model (two stages with ``--keypoint-model`` for region crops)."""
    keypoint_model = None
    if cfg.preprocess.keypoint_model:
        keypoint_model = load_keras_model(keras_file(cfg.preprocess.keypoint_model))
    elif model.regions and not model.keypoint_heads:
        log.warning(
            "not exported: the model crops the regions %s and has no keypoint head to find "
            "them; export it with python -m fashion_keras.export %s --keypoint-model "
            "KEYPOINT_MODEL (a model trained with --heads fashionai_keypoints), or train with "
            "--keypoint-model",
            list(model.regions),
            cfg.runtime.output_dir,
        )
        return None
    export_base = cfg.runtime.export_dir or os.path.join(cfg.runtime.output_dir, "export")
    path = export_saved_model(
        model, export_base, training_data=cfg.data.to_dict(), keypoint_model=keypoint_model
    )
    print(f"Exported SavedModel (TF Serving layout): {path}")
    return path


def _write_metrics(cfg: TrainConfig, **sections: Any) -> None:
    path = os.path.join(cfg.runtime.output_dir, "metrics.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(sections, f, indent=2, sort_keys=True)


def _log_start(cfg: TrainConfig, model: keras.Model, replicas: int, steps: int) -> None:
    opt = cfg.optimization
    log.info(
        "Training %s (%s params) on %d replica(s): %d steps/epoch x %d epochs, batch %d, %d px",
        cfg.model.backbone,
        f"{model.count_params():,}",
        replicas,
        steps,
        opt.epochs,
        opt.batch_size,
        cfg.model.image_size,
    )


def _throughput(cfg: TrainConfig, steps_per_epoch: int) -> progress.Throughput:
    """The speed logger; on a CPU without pretrained weights it warns at once that a
    full-size model is slow, and advises again with the estimate."""
    m = cfg.model
    advice = None
    if not tf.config.list_logical_devices("GPU"):
        advice = progress.cpu_advice(m.backbone, m.image_size, bool(m.weights))
        if not m.weights and m.backbone != "seresnet_tiny":
            log.warning("no GPU: %s (an estimate follows after the first steps)", advice)
    return progress.Throughput(
        cfg.optimization.batch_size, steps_per_epoch, cfg.optimization.epochs, advice
    )


def _verbosity(cfg: TrainConfig) -> int:
    """``--verbose``, or by default a progress bar on a terminal and one line per epoch
    otherwise (a log file gets no progress-bar noise)."""
    if cfg.runtime.verbose is not None:
        return cfg.runtime.verbose
    return 1 if sys.stdout.isatty() else 2


def _baselines(
    train_counts: Mapping[str, np.ndarray], val_counts: Mapping[str, np.ndarray] | None
) -> dict[str, float]:
    """The curves' baseline per head: the accuracy of always predicting the class most frequent
    in the training split, on the validation labels (as the final report measures it), or on
    the training labels when there is no validation split."""
    out = {}
    for name, train in train_counts.items():
        counts = train if val_counts is None else val_counts[name]
        if train.sum() and counts.sum():
            out[name] = float(counts[int(np.argmax(train))] / counts.sum())
    return out


def _monitor(heads: Sequence[AnyHead], validated: bool) -> tuple[str, str]:
    """The best-checkpoint criterion: the mean accuracy over the softmax heads, else the first
    keypoint head's mean distance (lower is better)."""
    prefix = "val_" if validated else ""
    if softmax_heads(heads):
        return f"{prefix}{metrics_lib.MEAN_ACCURACY}", "max"
    return f"{prefix}{metrics_lib.distance_metric(keypoint_heads(heads)[0].name)}", "min"


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
    best_path = os.path.join(cfg.runtime.output_dir, "checkpoints", "best.keras")
    cfg = distribute.worker_config(cfg, strategy)
    distribute.check_batch_size(cfg.optimization.batch_size, strategy)
    run_folder.prepare(cfg)  # a finished run is refused (or cleared with --overwrite)
    keras.utils.set_random_seed(cfg.runtime.seed)
    if cfg.runtime.deterministic:
        tf.config.experimental.enable_op_determinism()
    _set_precision(cfg.runtime.mixed_precision)  # train() restores the caller's policy

    data = inputs.run_data(cfg, heads, train_examples, val_examples)
    opt = cfg.optimization
    steps_per_epoch = _steps(data.num_train, opt.batch_size, opt.steps_per_epoch)
    weights = losses_lib.class_weights(softmax_heads(heads), data.train_counts, opt.class_weights)
    train_ds = inputs.training_dataset(cfg, heads, data.train)
    val_ds = None
    if data.val is not None:
        val_ds = inputs.validation_dataset(cfg, heads, data.val, strategy)
    with strategy.scope():
        # --weights: checkpoint loaded, mean/std from it; compiled per phase by fit_phases
        model = build_model(cfg, heads)

    def compile_for(phase_cfg: TrainConfig) -> None:
        with strategy.scope():
            compile_model(model, heads, phase_cfg, steps_per_epoch, weights)

    run_folder.write_config(cfg, heads)
    _log_start(cfg, model, strategy.num_replicas_in_sync, steps_per_epoch)
    monitor, mode = _monitor(heads, val_ds is not None)
    checkpoint = checkpointing.AtomicModelCheckpoint(
        os.path.join(cfg.runtime.output_dir, "checkpoints", "best.keras"),
        monitor=monitor,
        mode=mode,
        save_best_only=True,
    )
    extra = [_throughput(cfg, steps_per_epoch), *callbacks]
    baselines = _baselines(data.train_counts, data.val_counts)
    # --freeze-backbone / --freeze-epochs: frozen and fine-tune phases, one fit call each
    history = phases.fit_phases(
        model,
        cfg,
        compile_for,
        train_ds,
        steps_per_epoch=steps_per_epoch,
        validation_data=val_ds,
        callbacks=_callbacks(cfg, heads, backup_dir, checkpoint, baselines, extra),
        shuffle=False,  # the tf.data pipeline shuffles
        verbose=_verbosity(cfg),
    )
    final = _restore_best(model, cfg, _chief_checkpoint(strategy, checkpoint, best_path))
    val_metrics, report, keypoints = {}, {}, {}
    if val_ds is not None:
        val_metrics, report, keypoints = _final_validation(model, cfg, heads, val_ds, data)
    sections = {"keypoints": keypoints} if keypoints else {}
    sections.update(_region_section(data))
    _write_metrics(cfg, val=val_metrics, heads=report, final_weights=final, **sections)
    save_atomically(model, os.path.join(cfg.runtime.output_dir, "model.keras"))
    export_path = None
    if export:
        export_path = _export(model, cfg)
    return TrainResult(
        cfg,
        model,
        {k: list(map(float, v)) for k, v in history.history.items()},
        val_metrics,
        export_path,
    )
