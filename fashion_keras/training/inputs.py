"""A training run's inputs: the configured examples, what is known about them (the training
label counts per class), the class-balanced stream, and the train and validation batches."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from fashion_keras.data import augment, pipeline, sources
from fashion_keras.data.region_files import read_region_file
from fashion_keras.data.region_lookup import (
    FallbackCounts,
    attach_region_boxes,
    count_fallbacks,
    dataset_keypoint_heads,
    region_lookup,
)
from fashion_keras.heads import REGIONS, AnyHead, softmax_heads
from fashion_keras.heads.views import model_views, named_regions
from fashion_keras.training import distribute
from fashion_keras.training.config import TrainConfig

log = logging.getLogger("fashion_keras")


@dataclasses.dataclass
class RunData:
    """A run's example streams (before batching), with the training label counts."""

    train: tf.data.Dataset
    val: tf.data.Dataset | None
    num_train: int  # training examples (defines an epoch)
    train_counts: dict[str, np.ndarray]  # labelled training rows per class of each softmax head
    val_counts: dict[str, np.ndarray] | None = None  # the same for validation (None: no val)
    # with region crops, per split the examples that fell back to the garment box per region
    region_fallbacks: dict[str, FallbackCounts] | None = None


def model_regions(cfg: TrainConfig, heads: Sequence[AnyHead]) -> tuple[str, ...]:
    """The regions the model crops: with ``--region-crops``, every region a head names."""
    if not cfg.model.region_crops:
        return ()
    regions = named_regions(heads)
    if not regions:
        raise ValueError(
            f"config field 'region_crops' is set, but no head of {cfg.data.heads!r} names a "
            "region; give heads a 'region' in the head spec (see fashion_keras/heads/regions.py)"
        )
    return regions


def region_preparer(
    cfg: TrainConfig, heads: Sequence[AnyHead]
) -> Callable[[tfds.core.DatasetBuilder, tf.data.Dataset], tf.data.Dataset] | None:
    """What adds each example's region boxes for the run (``--region-file``, else the
    dataset's own keypoints), or None without region crops."""
    regions = model_regions(cfg, heads)
    if not regions:
        return None
    lookup = None
    if cfg.data.region_file:
        boxes = read_region_file(
            cfg.data.region_file, tuple(REGIONS), skip_bad_rows=cfg.data.skip_bad_rows
        )
        if boxes.num_skipped:
            log.warning("%s", boxes.format())
        lookup = region_lookup(boxes, regions)

    def prepare(builder: tfds.core.DatasetBuilder, examples: tf.data.Dataset) -> tf.data.Dataset:
        keypoints = dataset_keypoint_heads(builder.info.features)
        return attach_region_boxes(examples, regions, keypoints, lookup)

    return prepare


def load_examples(cfg: TrainConfig, heads: Sequence[AnyHead]) -> sources.TrainingData:
    """Train/val examples for a resolved config: the demo data, ``--dataset`` + ``--data-dir``,
    or several ``--sources`` mixed (joint training); with region crops, each example with its
    region boxes."""
    prepare = region_preparer(cfg, heads)  # checks the region options before any data
    builders, weights = sources.builders_for(cfg.data, heads)
    return sources.training_data(
        builders,
        heads,
        train_split=cfg.data.train_split,
        val_split=cfg.data.val_split,
        weights=weights,
        seed=cfg.runtime.seed,
        prepare=prepare,
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
    fallbacks = None
    regions = model_regions(cfg, heads)
    if regions and train_examples is None:
        fallbacks = {"train": count_fallbacks(loaded.train.take(n), regions)}
        if val is not None:
            fallbacks["val"] = count_fallbacks(val, regions)
        for split, counts_ in fallbacks.items():
            log.info("%s", counts_.format(f"region boxes ({split})"))
            if counts_.examples and max(counts_.fallbacks.values()) == counts_.examples:
                log.warning(
                    "region boxes (%s): every example fell back to the garment box for some "
                    "region; give --region-file or data with keypoints",
                    split,
                )
    return RunData(train, val, n, counts, val_counts if val is not None else None, fallbacks)


def accelerator_present() -> bool:
    """Whether the Keras backend computes on a GPU or TPU."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.default_backend() != "cpu"
    return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))


def view_on(cfg: TrainConfig, heads: Sequence[AnyHead]) -> str:
    """Where the training view is made (``augment_on``, with ``auto`` resolved): ``"cpu"`` or
    ``"accelerator"``; a run the accelerator-made view cannot serve raises ``ValueError``."""
    opt = cfg.optimization
    args = (heads, model_views(heads, model_regions(cfg, heads)))
    args += (opt.augment_scale, opt.augment_rotation)
    if opt.augment_on == "accelerator":
        augment.check_batch_view(*args)
        return "accelerator"
    if opt.augment_on == "auto" and accelerator_present():
        try:
            augment.check_batch_view(*args)
        except ValueError:
            return "cpu"
        return "accelerator"
    return "cpu"


def input_batches(
    cfg: TrainConfig, heads: Sequence[AnyHead], examples: tf.data.Dataset, training: bool
) -> tf.data.Dataset:
    """The batches of one split: the augmented training view (shuffled, repeated) or the
    evaluation view, with the run's input size and garment-box margin."""
    where = view_on(cfg, heads) if training else "cpu"
    if training:
        log.info(
            "training view made on the %s (augment_on = %s)", where, cfg.optimization.augment_on
        )
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
        regions=model_regions(cfg, heads),
        view_on=where,
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
