"""tf.data input pipelines: TFDS examples -> (image, {head: one-hot}, {head: sample weight}).

Every dataset builder in ``datasets/`` yields examples with ``image`` (encoded bytes, read with
``SkipDecoding``), ``bbox`` (normalised ymin, xmin, ymax, xmax) and a ``labels`` dict of
``ClassLabel`` features keyed by head name, where ``-1`` means "no label for this head". A head
may also be a top-level ``ClassLabel`` feature (``category`` in DeepFashion).

The per-head sample weight is 1 for a labelled example and 0 otherwise: a head the dataset does
not label at all (or an example labelled ``-1``) contributes nothing to that head's loss and
metrics. This is the mechanism FashionAI rows (one task labelled per row) and joint training
across datasets rely on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import tensorflow as tf
import tensorflow_datasets as tfds

from fashion_keras.data.preprocess import (
    DEFAULT_BBOX_MARGIN,
    preprocess_for_eval,
    preprocess_for_train,
)
from fashion_keras.heads import Head


class DatasetHeadsError(ValueError):
    """The model's heads do not fit the labels a dataset provides."""


def label_features(features: Mapping[str, Any]) -> dict[str, tfds.features.ClassLabel]:
    """The ``ClassLabel`` features of a dataset that can feed heads, keyed by head name."""
    found: dict[str, tfds.features.ClassLabel] = {}
    labels = features["labels"] if "labels" in features else {}
    for name in labels.keys():
        if isinstance(labels[name], tfds.features.ClassLabel):
            found[name] = labels[name]
    for name in features.keys():
        if isinstance(features[name], tfds.features.ClassLabel) and name not in found:
            found[name] = features[name]
    return found


def check_heads(
    heads: Sequence[Head], features: Mapping[str, Any], dataset_name: str = "dataset"
) -> list[str]:
    """Checks that the dataset's label classes match the heads; returns the labelled head names.

    A head the dataset does not label is allowed (it is masked), but at least one head must be
    labelled, and a head the dataset does label must have exactly the same ordered classes.
    """
    available = label_features(features)
    labelled = []
    for head in heads:
        feature = available.get(head.name)
        if feature is None:
            continue
        if tuple(feature.names) != head.classes:
            raise DatasetHeadsError(
                f"head {head.name!r}: classes {list(head.classes)!r} differ from the classes "
                f"{list(feature.names)!r} of {dataset_name}'s {head.name!r} labels"
            )
        labelled.append(head.name)
    if not labelled:
        raise DatasetHeadsError(
            f"{dataset_name} labels none of the heads {[h.name for h in heads]!r}; "
            f"it has labels for {sorted(available)!r}"
        )
    return labelled


def targets_from_example(
    example: Mapping[str, Any], heads: Sequence[Head]
) -> tuple[dict[str, tf.Tensor], dict[str, tf.Tensor]]:
    """One-hot targets and 0/1 sample weights per head from a decoded TFDS example."""
    labels = example.get("labels", {})
    targets, weights = {}, {}
    for head in heads:
        if head.name in labels:
            label = tf.cast(labels[head.name], tf.int32)
        elif head.name in example:
            label = tf.cast(example[head.name], tf.int32)
        else:
            label = tf.constant(-1, tf.int32)
        # one_hot(-1) is all zeros; the weight masks it anyway.
        targets[head.name] = tf.one_hot(label, head.num_classes, dtype=tf.float32)
        weights[head.name] = tf.cast(label >= 0, tf.float32)
    return targets, weights


def make_dataset(
    examples: tf.data.Dataset,
    heads: Sequence[Head],
    image_size: int,
    batch_size: int,
    training: bool,
    *,
    bbox_margin: float = DEFAULT_BBOX_MARGIN,
    seed: int | None = None,
    shuffle_buffer: int = 2048,
    drop_remainder: bool | None = None,
) -> tf.data.Dataset:
    """Builds the batched ``(image, targets, sample_weights)`` pipeline.

    Args:
      examples: TFDS examples with the image left encoded (``SkipDecoding``).
      heads: the model's heads; targets and weights are dicts keyed by their names.
      training: random crop/flip/colour jitter and shuffling when True; the central
        ``preprocess_for_eval`` view otherwise.
      seed: makes shuffling and augmentation repeatable (new randomness each epoch).
      drop_remainder: defaults to ``training``.
    """
    heads = tuple(heads)
    if drop_remainder is None:
        drop_remainder = training

    def _bbox(example):
        return example["bbox"] if "bbox" in example else None

    if training:
        examples = examples.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        aug_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        examples = tf.data.Dataset.zip(examples, aug_seeds)

        def _map(example, aug_seed):
            image = preprocess_for_train(
                example["image"], image_size, _bbox(example), bbox_margin, seed=aug_seed
            )
            return (image, *targets_from_example(example, heads))

    else:

        def _map(example):
            image = preprocess_for_eval(example["image"], image_size, _bbox(example), bbox_margin)
            return (image, *targets_from_example(example, heads))

    ds = examples.map(_map, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)
