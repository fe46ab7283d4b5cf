"""tf.data input pipelines: TFDS examples -> (image, {head: one-hot}, {head: sample weight}).

Every dataset builder in ``datasets/`` yields examples with ``image`` (encoded bytes, read with
``SkipDecoding``), ``bbox`` (normalised ymin, xmin, ymax, xmax) and a ``labels`` dict of
``ClassLabel`` features keyed by head name, where ``-1`` means "no label for this head". A head
may also be a top-level ``ClassLabel`` feature (``category`` in DeepFashion).

The per-head sample weight is 1 for a labelled example and 0 otherwise: a head the dataset does
not label at all (or an example labelled ``-1``) contributes nothing to that head's loss and
metrics. This is the mechanism FashionAI rows (one task labelled per row) and joint training
across datasets rely on.

A builder may also give a ``soft_labels`` dict (a float vector per head, e.g. FashionAI's ``m``
policy); where it does, that vector is the head's training target instead of the one-hot label
(``CategoricalFocalCrossentropy`` accepts soft targets). Every example goes through
:func:`normalize_example` first, so examples of different builders share one structure and can be
mixed (:func:`mix_examples`) before the one code path that makes targets and weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from fashion_keras.data import augment, geometry
from fashion_keras.data.preprocess import DEFAULT_BBOX_MARGIN
from fashion_keras.data.region_views import eval_views, train_views
from fashion_keras.heads import (
    AnyHead,
    Head,
    KeypointHead,
    keypoint_heads,
    softmax_heads,
    visibility_output,
)
from fashion_keras.heads.views import model_views


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
    heads: Sequence[AnyHead], features: Mapping[str, Any], dataset_name: str = "dataset"
) -> list[str]:
    """Checks that the dataset's labels match the heads; returns the labelled head names.

    A head the dataset does not label is allowed (it is masked), but at least one head must be
    labelled; a softmax head the dataset does label must have exactly the same ordered classes,
    a keypoint head the same number of keypoints (``keypoints/<head>`` features, ``(K, 3)``).
    """
    available = label_features(features)
    points = keypoint_features(features)
    labelled = []
    for head in heads:
        if isinstance(head, KeypointHead):
            shape = points.get(head.name)
            if shape is None:
                continue
            if tuple(shape) != (head.num_keypoints, 3):
                raise DatasetHeadsError(
                    f"keypoint head {head.name!r}: {head.num_keypoints} keypoints, but "
                    f"{dataset_name}'s keypoints/{head.name} has shape {list(shape)} "
                    f"(expected [{head.num_keypoints}, 3])"
                )
            labelled.append(head.name)
            continue
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
            f"it has labels for {sorted([*available, *points])!r}"
        )
    return labelled


def keypoint_features(features: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """The shapes of a dataset's ``keypoints/<head>`` features, keyed by keypoint head name."""
    if "keypoints" not in features or not hasattr(features["keypoints"], "keys"):
        return {}
    group = features["keypoints"]
    return {name: tuple(group[name].shape) for name in group.keys()}


_FULL_IMAGE = (0.0, 0.0, 1.0, 1.0)


def normalize_example(example: Mapping[str, Any], heads: Sequence[AnyHead]) -> dict[str, Any]:
    """Any builder's example in the structure shared by all sources, for ``heads``.

    Returns:
      ``{"image": encoded bytes, "bbox": float32 [4] (the whole image when absent),
      "labels": {head: int32, -1 = unlabelled}, "soft_labels": {head: float32 [classes]},
      "keypoints": {keypoint head: float32 [K, 3] (x, y, v) in photo pixels},
      "keypoint_categories": {keypoint head: int32 index into the head's categories, -1 =
      unknown}}`` (builders with keypoints write ``keypoints/<head>`` and
      ``keypoint_categories/<head>``), plus ``region_boxes`` and ``region_found`` where the
      example has them (:mod:`.region_lookup`, :mod:`.region_views`).
      The soft target is the example's own ``soft_labels`` entry where it has one, else the
      one-hot label (all zeros when unlabelled). Heads the example does not know are unlabelled
      (keypoints all absent, -1). Normalising a normalised example changes nothing.
    """
    labels_in = example.get("labels", {})
    soft_in = example.get("soft_labels", {})
    labels, soft = {}, {}
    for head in softmax_heads(heads):
        if head.name in labels_in:
            label = tf.cast(labels_in[head.name], tf.int32)
        elif head.name in example:
            label = tf.cast(example[head.name], tf.int32)
        else:
            label = tf.constant(-1, tf.int32)
        labels[head.name] = label
        if head.name in soft_in:
            target = tf.cast(soft_in[head.name], tf.float32)
            target = tf.ensure_shape(target, [head.num_classes])
        else:
            # one_hot(-1) is all zeros; the weight masks it anyway.
            target = tf.one_hot(label, head.num_classes, dtype=tf.float32)
        soft[head.name] = target
    points_in = example.get("keypoints", {})
    categories_in = example.get("keypoint_categories", {})
    points, categories = {}, {}
    for head in keypoint_heads(heads):
        if isinstance(points_in, Mapping) and head.name in points_in:
            kp = tf.cast(points_in[head.name], tf.float32)
            points[head.name] = tf.ensure_shape(kp, [head.num_keypoints, 3])
        else:
            points[head.name] = tf.fill([head.num_keypoints, 3], geometry.ABSENT)
        if isinstance(categories_in, Mapping) and head.name in categories_in:
            categories[head.name] = tf.cast(categories_in[head.name], tf.int32)
        else:
            categories[head.name] = tf.constant(-1, tf.int32)
    bbox = example["bbox"] if "bbox" in example else tf.constant(_FULL_IMAGE)
    regions = (
        {"region_boxes": example["region_boxes"], "region_found": example["region_found"]}
        if "region_boxes" in example
        else {}
    )
    return {
        "image": example["image"],
        "bbox": tf.cast(tf.reshape(bbox, [4]), tf.float32),
        "labels": labels,
        "soft_labels": soft,
        "keypoints": points,
        "keypoint_categories": categories,
        **regions,
    }


#: Keys the builders' image and box have in their serialized ``tf.train.Example`` records.
SERIALIZED_IMAGE_KEY = "image"
SERIALIZED_BBOX_KEY = "bbox"


def serialized_label_key(head_name: str) -> str:
    """The ``tf.train.Example`` key of a head's label in a builder's records (``labels/<head>``:
    TFDS flattens nested feature dicts with ``/``); an int64, -1 = unlabelled."""
    return f"labels/{head_name}"


def serialized_soft_label_key(head_name: str) -> str:
    """The key of a head's soft target (``soft_labels/<head>``, float [classes]) where a builder
    writes one (FashionAI); absent elsewhere."""
    return f"soft_labels/{head_name}"


def serialized_feature_spec(heads: Sequence[Head]) -> dict[str, Any]:
    """``tf.io.parse_example`` spec for the builders' serialized records (as TFDS writes them and
    TFX ExampleGen passes them on), restricted to what training needs for ``heads``.

    A missing box is the whole image, a missing label is -1 (masked), a missing soft target is
    empty (the one-hot label is used); ``image`` is required.
    """
    spec: dict[str, Any] = {
        SERIALIZED_IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
        SERIALIZED_BBOX_KEY: tf.io.FixedLenFeature([4], tf.float32, default_value=_FULL_IMAGE),
    }
    for head in softmax_heads(heads):
        spec[serialized_label_key(head.name)] = tf.io.FixedLenFeature([], tf.int64, -1)
        spec[serialized_soft_label_key(head.name)] = tf.io.RaggedFeature(tf.float32)
        if head.name not in (SERIALIZED_IMAGE_KEY, SERIALIZED_BBOX_KEY):
            # a top-level ClassLabel (``category`` in deepfashion_attributes)
            spec[head.name] = tf.io.FixedLenFeature([], tf.int64, -1)
    for head in keypoint_heads(heads):
        absent = [[geometry.ABSENT] * 3] * head.num_keypoints
        spec[serialized_keypoints_key(head.name)] = tf.io.FixedLenFeature(
            [head.num_keypoints, 3], tf.float32, default_value=absent
        )
        spec[f"keypoint_categories/{head.name}"] = tf.io.FixedLenFeature([], tf.int64, -1)
    return spec


def serialized_keypoints_key(head_name: str) -> str:
    """The key of a keypoint head's ``(K, 3)`` ``(x, y, v)`` points (``keypoints/<head>``); a
    record without it has every point absent."""
    return f"keypoints/{head_name}"


def parse_serialized_example(serialized: tf.Tensor, heads: Sequence[Head]) -> dict[str, Any]:
    """One serialized builder record -> the :func:`normalize_example` structure for ``heads``.

    Feeds :func:`make_dataset` straight from TFRecords (e.g. TFX ExampleGen's output) without
    the builder: ``labels/<head>`` (else a top-level ``<head>`` label) gives the label, a
    ``soft_labels/<head>`` vector of the head's length the target (else the one-hot label).
    """
    heads = tuple(heads)
    parsed = tf.io.parse_single_example(serialized, serialized_feature_spec(heads))
    labels, soft = {}, {}
    for head in softmax_heads(heads):
        label = parsed[serialized_label_key(head.name)]
        if head.name in parsed:
            label = tf.where(label >= 0, label, parsed[head.name])
        label = tf.cast(label, tf.int32)
        given = parsed[serialized_soft_label_key(head.name)]
        one_hot = tf.one_hot(label, head.num_classes, dtype=tf.float32)
        soft[head.name] = tf.cond(
            tf.size(given) == head.num_classes,
            lambda given=given, n=head.num_classes: tf.reshape(given, [n]),
            lambda one_hot=one_hot: one_hot,
        )
        labels[head.name] = label
    return {
        "image": parsed[SERIALIZED_IMAGE_KEY],
        "bbox": parsed[SERIALIZED_BBOX_KEY],
        "labels": labels,
        "soft_labels": soft,
        "keypoints": {
            h.name: parsed[serialized_keypoints_key(h.name)] for h in keypoint_heads(heads)
        },
        "keypoint_categories": {
            h.name: tf.cast(parsed[f"keypoint_categories/{h.name}"], tf.int32)
            for h in keypoint_heads(heads)
        },
    }


def parse_serialized_examples(records: tf.data.Dataset, heads: Sequence[Head]) -> tf.data.Dataset:
    """:func:`parse_serialized_example` over a dataset of serialized records."""
    heads = tuple(heads)
    return records.map(
        lambda r: parse_serialized_example(r, heads), num_parallel_calls=tf.data.AUTOTUNE
    )


def targets_from_example(
    example: Mapping[str, Any],
    heads: Sequence[AnyHead],
    matrix: tf.Tensor | None = None,
    image_size: int | None = None,
    flipped: tf.Tensor | bool = False,
) -> tuple[dict[str, tf.Tensor], dict[str, tf.Tensor]]:
    """Targets and 0/1 sample weights per model output.

    Softmax heads: the soft target where the example has one, else one-hot; weight 1 when
    labelled. Keypoint heads: the keypoints moved into the view (``matrix``, the view's
    ``image_size``, mirrored slots when ``flipped``; see :mod:`geometry`) as the target of both
    the heatmaps (``<head>``) and the visibility (``<head>_visibility``) outputs; weight 1 when
    the photo has any of the head's keypoints (the losses mask absent points themselves).
    """
    normalized = normalize_example(example, heads)
    targets = dict(normalized["soft_labels"])
    weights = {
        name: tf.cast(label >= 0, tf.float32) for name, label in normalized["labels"].items()
    }
    for head in keypoint_heads(heads):
        points = normalized["keypoints"][head.name]
        labelled = tf.cast(tf.reduce_any(points[:, 2] > geometry.ABSENT), tf.float32)
        if matrix is not None:
            points = geometry.transform_keypoints(
                points, matrix, image_size, flipped, head.flip_permutation()
            )
        targets[head.name] = points
        targets[visibility_output(head.name)] = points
        weights[head.name] = labelled
        weights[visibility_output(head.name)] = labelled
    return targets, weights


def normalize_examples(examples: tf.data.Dataset, heads: Sequence[Head]) -> tf.data.Dataset:
    """:func:`normalize_example` over a dataset (drops every other feature)."""
    heads = tuple(heads)
    return examples.map(
        lambda ex: normalize_example(ex, heads), num_parallel_calls=tf.data.AUTOTUNE
    )


def mix_examples(
    sources: Sequence[tf.data.Dataset],
    heads: Sequence[Head],
    weights: Sequence[float] | None = None,
    seed: int | None = None,
) -> tf.data.Dataset:
    """An endless random mixture of several builders' examples (joint training).

    Each source is normalised to the union of ``heads`` (a head the source does not label is
    -1 there, so masked), repeated, and drawn with ``tf.data.Dataset.sample_from_datasets``.

    Args:
      sources: TFDS example datasets (image left encoded).
      weights: relative sampling weight per source (default: equal); normalised to sum 1.
      seed: makes the draw repeatable (a new draw each epoch).
    """
    if not sources:
        raise ValueError("mix_examples needs at least one source")
    if weights is not None:
        if len(weights) != len(sources) or any(not w >= 0 for w in weights) or not sum(weights):
            raise ValueError(
                f"source weights {list(weights)!r}: expected {len(sources)} numbers >= 0, not all 0"
            )
        weights = [float(w) / sum(weights) for w in weights]
    normalized = [normalize_examples(ds, heads).repeat() for ds in sources]
    if len(normalized) == 1:
        return normalized[0]
    return tf.data.Dataset.sample_from_datasets(
        normalized, weights=weights, seed=seed, rerandomize_each_iteration=True
    )


def concat_examples(sources: Sequence[tf.data.Dataset], heads: Sequence[Head]) -> tf.data.Dataset:
    """Several builders' examples one after the other, normalised to ``heads`` (evaluation)."""
    if not sources:
        raise ValueError("concat_examples needs at least one source")
    out = normalize_examples(sources[0], heads)
    for ds in sources[1:]:
        out = out.concatenate(normalize_examples(ds, heads))
    return out


def count_labels(examples: tf.data.Dataset, heads: Sequence[Head]) -> dict[str, np.ndarray]:
    """Labelled rows per class of each head, counted by reading ``examples`` once (for data
    without a build report; unlabelled rows are not counted)."""
    heads = softmax_heads(heads)
    if not heads:
        return {}
    labels = examples.map(
        lambda ex: normalize_example(ex, heads)["labels"], num_parallel_calls=tf.data.AUTOTUNE
    )
    counts = {h.name: np.zeros(h.num_classes, np.int64) for h in heads}
    for batch in labels.batch(4096).as_numpy_iterator():
        for h in heads:
            y = batch[h.name]
            counts[h.name] += np.bincount(y[y >= 0], minlength=h.num_classes)
    return counts


def balance_classes(
    examples: tf.data.Dataset,
    head: Head,
    counts: np.ndarray,
    num_examples: int,
    seed: int | None = None,
) -> tf.data.Dataset:
    """An endless stream of ``examples`` resampled so that ``head``'s classes are equally
    frequent among the rows labelled for it, while rows it does not label keep their share
    (``tf.data.Dataset.rejection_resample``; ``counts``: the head's labelled rows per class in
    the ``num_examples`` training rows)."""
    counts = np.asarray(counts, np.float64)
    if counts.sum() == 0:
        raise ValueError(f"balance_classes: head {head.name!r} has no labelled training row")
    share = counts.sum() / num_examples
    present = counts > 0
    target = np.zeros(head.num_classes + 1)
    target[:-1][present] = share / present.sum()
    target[-1] = 1.0 - share  # the rows without this head's label
    initial = np.append(counts, num_examples - counts.sum()) / num_examples
    unlabelled = tf.constant(head.num_classes, tf.int32)

    def class_of(example):
        label = normalize_example(example, (head,))["labels"][head.name]
        return tf.where(label >= 0, label, unlabelled)

    return (
        examples.repeat()
        .rejection_resample(
            class_of,
            target_dist=tf.constant(target, tf.float32),
            initial_dist=tf.constant(initial, tf.float32),
            seed=seed,
        )
        .map(lambda _, example: example)
    )


def _window_batches(
    examples: tf.data.Dataset,
    heads: Sequence[Head],
    image_size: int,
    batch_size: int,
    drop_remainder: bool,
    bbox_margin: float,
) -> tf.data.Dataset:
    """The training batches of the accelerator-made view (``view_on="accelerator"``): per
    example only the garment window is decoded (:func:`~.augment.window_example`); the batch
    is padded to one shape, so XLA and JAX compile the training step once."""
    ds = examples.map(
        lambda example, seed: (
            augment.window_example(example, image_size, bbox_margin, seed),
            *targets_from_example(example, heads),
        ),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    shapes = tf.nest.map_structure(lambda spec: spec.shape, ds.element_spec)
    extent = augment.window_extent(image_size)
    shapes[0]["window"] = tf.TensorShape([extent, extent, 3])
    ds = ds.padded_batch(batch_size, shapes, drop_remainder=drop_remainder)
    ds = ds.map(lambda x, *rest: (augment.window_batch(x, image_size), *rest))
    return ds.prefetch(tf.data.AUTOTUNE)


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
    scale: float = 0.0,
    rotation: float = 0.0,
    regions: Sequence[str] = (),
    view_on: str = "cpu",
) -> tf.data.Dataset:
    """Builds the batched ``(image, targets, sample_weights)`` pipeline.

    Args:
      examples: TFDS examples with the image left encoded (``SkipDecoding``).
      heads: the model's heads; targets and weights are dicts keyed by their names.
      training: random crop/flip/colour jitter and shuffling when True; the central
        ``preprocess_for_eval`` view otherwise.
      seed: makes shuffling and augmentation repeatable (new randomness each epoch).
      drop_remainder: defaults to ``training``.
      scale, rotation: the training view's zoom and rotation ranges
        (:func:`~fashion_keras.data.augment.train_view`; 0 = off).
      regions: the model's region crops (``MultiHeadClassifier.regions``): the input is then
        a dict of views (:func:`fashion_keras.heads.views.model_views`), each region's the view
        of its box in ``region_boxes`` (the garment box where an example has none), drawn with
        the garment view's seed (the same flip); keypoint targets follow the garment view.
      view_on: ``"accelerator"``: training batches hold the decoded garment windows and their
        plans (:func:`~fashion_keras.data.augment.window_batch`) and the model makes the views
        in its training step (:mod:`fashion_keras.models.batch_view`); softmax heads only.
    """
    heads = tuple(heads)
    if drop_remainder is None:
        drop_remainder = training
    views = model_views(heads, regions)
    if training:
        examples = examples.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        aug_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        examples = tf.data.Dataset.zip(examples, aug_seeds)

        if view_on == "accelerator":
            augment.check_batch_view(heads, views, scale, rotation)
            return _window_batches(
                examples, heads, image_size, batch_size, drop_remainder, bbox_margin
            )

        def _map(example, aug_seed):
            images, matrix, flipped = train_views(
                example, views, image_size, bbox_margin, aug_seed, scale, rotation
            )
            return (images, *targets_from_example(example, heads, matrix, image_size, flipped))

    else:

        def _map(example):
            images, matrix = eval_views(example, views, image_size, bbox_margin)
            return (images, *targets_from_example(example, heads, matrix, image_size))

    ds = examples.map(_map, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)
