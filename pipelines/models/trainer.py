"""The Trainer's module file: ``run_fn`` trains and exports with the fashion_keras library.

Nothing here re-implements the model, loss or input code: the examples ExampleGen wrote (the
TFDS builders' serialized records, GZIP TFRecords) are parsed with
``fashion_keras.data.pipeline.parse_serialized_examples`` and handed to
``fashion_keras.training.trainer.train`` (the same ``make_dataset``, model, focal losses and metrics as
``python -m fashion_keras.train``); ``fashion_keras.export.export_saved_model`` writes the
SavedModel (signatures ``serving_default`` for image bytes, ``predict_images`` and
``predict_examples``, the one the Evaluator calls) into the Trainer's serving model folder.

``custom_config`` (JSON):

- ``heads``: the head spec as ``fashion_keras.heads.heads_to_dict`` writes it (required);
- ``train_config``: ``fashion_keras.training.config.TrainConfig`` fields (``backbone``, ``image_size``,
  ``batch_size``, ``epochs``, ``learning_rate``, ...); ``heads``, ``output_dir`` and
  ``steps_per_epoch`` are set here.

``TrainArgs.num_steps`` is the number of training steps over all epochs (unset: one pass over
the train split per epoch); ``EvalArgs.num_steps`` limits the validation batches.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from typing import Any

import tensorflow as tf
from tfx import v1 as tfx

from fashion_keras.data import pipeline
from fashion_keras.export import export_saved_model
from fashion_keras.heads import Head, heads_from_dict, heads_to_dict
from fashion_keras.training.config import TrainConfig
from fashion_keras.training.trainer import train

log = logging.getLogger("fashion_keras")

#: Fields of ``custom_config["train_config"]`` that run_fn owns.
_OWNED_FIELDS = ("heads", "output_dir", "steps_per_epoch", "export_dir", "data_dir", "sources")


def _files(patterns: list[str]) -> list[str]:
    files = sorted(f for p in patterns for f in tf.io.gfile.glob(p))
    if not files:
        raise ValueError(f"no example files match {patterns}")
    return files


def read_examples(patterns: list[str], heads: tuple[Head, ...]) -> tf.data.Dataset:
    """ExampleGen's GZIP TFRecords of serialized builder records -> the example structure
    ``fashion_keras.data.pipeline.make_dataset`` takes."""
    records = tf.data.TFRecordDataset(_files(patterns), compression_type="GZIP")
    return pipeline.parse_serialized_examples(records, heads)


def _count(patterns: list[str]) -> int:
    records = tf.data.TFRecordDataset(_files(patterns), compression_type="GZIP")
    return int(records.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))


def _is_local(path: str) -> bool:
    return "://" not in path


def _copy_tree(src: str, dst: str) -> None:
    """Copies a local folder to ``dst`` (a local path or any tf.io.gfile URL, e.g. gs://)."""
    if _is_local(dst):
        shutil.copytree(src, dst, dirs_exist_ok=True)
        return
    for root, _, names in tf.io.gfile.walk(src):
        target = os.path.join(dst, os.path.relpath(root, src))
        tf.io.gfile.makedirs(target)
        for name in names:
            tf.io.gfile.copy(os.path.join(root, name), os.path.join(target, name), overwrite=True)


def training_config(custom_config: dict[str, Any] | None) -> tuple[tuple[Head, ...], dict]:
    """The heads and TrainConfig fields of the Trainer's ``custom_config``."""
    custom = dict(custom_config or {})
    if "heads" not in custom:
        raise ValueError(
            "the Trainer's custom_config has no 'heads' (the head spec, as "
            "fashion_keras.heads.heads_to_dict writes it)"
        )
    heads = heads_from_dict(custom["heads"], where="custom_config['heads']")
    fields = dict(custom.get("train_config") or {})
    owned = sorted(set(fields) & set(_OWNED_FIELDS))
    if owned:
        raise ValueError(f"custom_config['train_config'] must not set {owned}: run_fn sets them")
    return heads, fields


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """TFX Trainer entry point: trains on ExampleGen's train split, validates on eval, and
    exports the SavedModel to ``fn_args.serving_model_dir``."""
    heads, fields = training_config(fn_args.custom_config)
    work = tempfile.mkdtemp(prefix="fashion_keras_trainer_")
    try:
        # train() writes logs and checkpoints to a local folder; copied to a remote one after
        local_run = _is_local(fn_args.model_run_dir)
        run_dir = fn_args.model_run_dir if local_run else os.path.join(work, "run")
        os.makedirs(run_dir, exist_ok=True)
        heads_file = os.path.join(run_dir, "heads_spec.json")
        with open(heads_file, "w", encoding="utf-8") as f:
            json.dump(heads_to_dict(heads), f, indent=2)
        # Filled like the library's demo defaults; the pipeline passes the real settings.
        cfg = TrainConfig.from_dict(
            {**fields, "heads": heads_file, "output_dir": run_dir},
            where="custom_config['train_config']",
        ).resolve()
        opt = cfg.optimization
        if fn_args.train_steps:
            steps_per_epoch = max(1, int(fn_args.train_steps) // opt.epochs)
        else:
            steps_per_epoch = max(1, _count(fn_args.train_files) // opt.batch_size)
        cfg = cfg.replace(steps_per_epoch=steps_per_epoch)
        train_examples = read_examples(fn_args.train_files, heads)
        val_examples = read_examples(fn_args.eval_files, heads)
        if fn_args.eval_steps:
            val_examples = val_examples.take(int(fn_args.eval_steps) * opt.batch_size)
        log.info(
            "Trainer: %s, %d epochs x %d steps, heads %s",
            cfg.model.backbone,
            opt.epochs,
            steps_per_epoch,
            [h.name for h in heads],
        )
        result = train(cfg, train_examples=train_examples, val_examples=val_examples, export=False)
        # the model carries its preprocessing (the garment-box margin) into the export
        version_dir = export_saved_model(
            result.model, os.path.join(work, "export"), heads=heads, version=1
        )
        _copy_tree(version_dir, fn_args.serving_model_dir)
        if not local_run:
            _copy_tree(run_dir, fn_args.model_run_dir)
        log.info("Trainer: SavedModel written to %s", fn_args.serving_model_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
