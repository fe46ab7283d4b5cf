"""A training run's inputs: the configured examples, what is known about them (the training
label counts per class), the class-balanced stream, and the train and validation batches."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from fashion_keras.data import pipeline, sources
from fashion_keras.heads import AnyHead, softmax_heads
from fashion_keras.training import distribute
from fashion_keras.training.config import TrainConfig


@dataclasses.dataclass
class RunData:
    """A run's example streams (before batching), with the training label counts."""

    train: tf.data.Dataset
    val: tf.data.Dataset | None
    num_train: int  # training examples (defines an epoch)
    train_counts: dict[str, np.ndarray]  # labelled training rows per class of each softmax head
    val_counts: dict[str, np.ndarray] | None = None  # the same for validation (None: no val)


def load_examples(cfg: TrainConfig, heads: Sequence[AnyHead]) -> sources.TrainingData:
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


def num_examples(cfg: TrainConfig, examples: tf.data.Dataset) -> int:
    """The size of given training examples (their cardinality, else steps x batch)."""
    n = int(examples.cardinality())
    if n >= 0:
        return n
    if not cfg.optimization.steps_per_epoch:
        raise ValueError("train_examples has unknown cardinality: set steps_per_epoch")
    return cfg.optimization.steps_per_epoch * cfg.optimization.batch_size


def run_data(
    cfg: TrainConfig,
    heads: Sequence[AnyHead],
    train_examples: tf.data.Dataset | None = None,
    val_examples: tf.data.Dataset | None = None,
) -> RunData:
    """The configured dataset (or the examples given), the training and validation label
    counts (from the build reports, else counted in one pass), and with ``--balance-classes`` the class-balanced
    training stream."""
    classes = softmax_heads(heads)  # the heads with class labels to count
    if train_examples is None:
        loaded = load_examples(cfg, heads)
        train, val, n = loaded.train, loaded.val, loaded.num_train
        try:
            counts = sources.label_counts(loaded.builders, cfg.data.train_split, classes)
            val_counts = sources.label_counts(loaded.builders, cfg.data.val_split, classes)
        except ValueError:  # no build report: count them
            counts = pipeline.count_labels(train.take(n), classes)
            val_counts = None if val is None else pipeline.count_labels(val, classes)
    else:
        train, val, n = train_examples, val_examples, num_examples(cfg, train_examples)
        counts = pipeline.count_labels(train.take(n), classes)
        val_counts = None if val is None else pipeline.count_labels(val, classes)
    if cfg.data.balance_classes:
        by_name = {h.name: h for h in classes}
        head = by_name.get(cfg.data.balance_classes)
        if head is None:
            raise ValueError(
                f"config field 'balance_classes' = {cfg.data.balance_classes!r}: expected a head "
                f"name, one of {list(by_name)}"
            )
        train = pipeline.balance_classes(train, head, counts[head.name], n, seed=cfg.runtime.seed)
    return RunData(train, val, n, counts, val_counts if val is not None else None)


def input_batches(
    cfg: TrainConfig, heads: Sequence[AnyHead], examples: tf.data.Dataset, training: bool
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
        scale=cfg.optimization.augment_scale,
        rotation=cfg.optimization.augment_rotation,
    )
    return ds.repeat() if training else ds


def training_dataset(
    cfg: TrainConfig, heads: Sequence[AnyHead], train_examples: tf.data.Dataset
) -> tf.data.Dataset:
    """The repeated, augmented, batched training pipeline (auto-shard policy DATA)."""
    return distribute.shard_by_data(input_batches(cfg, heads, train_examples, training=True))


def validation_dataset(
    cfg: TrainConfig,
    heads: Sequence[AnyHead],
    val_examples: tf.data.Dataset,
    strategy: tf.distribute.Strategy,
) -> tf.data.Dataset:
    """The evaluation-view validation batches; no replica gets an empty final batch (padded
    rows have sample weight 0)."""
    val_ds = input_batches(cfg, heads, val_examples, training=False)
    val_ds = distribute.pad_batches(val_ds, strategy.num_replicas_in_sync)
    return distribute.shard_by_data(val_ds)
