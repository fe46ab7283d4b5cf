"""The region boxes of evaluation examples, for models trained with region crops.

A model with regions (``MultiHeadClassifier.regions``, or an export whose metadata names
them) reads each region's view besides the garment view. At evaluation and prediction the
boxes come, in this order, from:

1. the examples themselves, when they already hold ``region_boxes`` (``--region-file``, joined
   by image path, :func:`with_region_file`);
2. a keypoint model: ``--keypoint-model``, else the model's own keypoint head (a model trained
   with ``fashionai_keypoints`` too), else an export's first stage (its ``predict_examples``
   signature returns ``<region>_box``) — the two-stage model as it is served;
3. else the garment box, with a warning.

Every example without a box for a region falls back to its garment box, and
:func:`~fashion_keras.data.region_lookup.count_fallbacks` counts them for the report.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from fashion_keras.data.region_files import read_region_file
from fashion_keras.data.region_lookup import FallbackCounts, count_fallbacks, region_lookup
from fashion_keras.data.region_views import FULL_IMAGE
from fashion_keras.heads import REGIONS

log = logging.getLogger("fashion_keras")

#: ``(image bytes [N], garment boxes [N, 4]) -> {region: (normalised boxes [N, 4], found [N])}``
BoxFunction = Callable[[tf.Tensor, tf.Tensor], dict[str, tuple[tf.Tensor, tf.Tensor]]]


def _garment_box(example) -> tf.Tensor:
    """The example's normalised garment box (the whole photo without one)."""
    if "bbox" in example:
        return tf.reshape(tf.cast(example["bbox"], tf.float32), [4])
    return tf.constant(FULL_IMAGE, tf.float32)


def with_region_file(
    examples: tf.data.Dataset,
    path: str,
    regions: Sequence[str],
    skip_bad_rows: bool = False,
    filename_key: str = "filename",
) -> tf.data.Dataset:
    """``examples`` (with the image's path in ``filename_key``) joined with a region file."""
    boxes = read_region_file(path, tuple(REGIONS), skip_bad_rows=skip_bad_rows)
    if boxes.num_skipped:
        log.warning("%s", boxes.format())
    lookup = region_lookup(boxes, regions)

    def _join(example):
        joined = lookup({**example, "image/filename": example[filename_key]})
        joined.pop("image/filename")
        return joined

    return examples.map(_join, num_parallel_calls=tf.data.AUTOTUNE)


def with_predicted_regions(
    examples: tf.data.Dataset, regions: Sequence[str], boxes_of: BoxFunction, batch_size: int = 32
) -> tf.data.Dataset:
    """``examples`` plus the ``region_boxes`` / ``region_found`` that ``boxes_of`` finds (run
    once over the examples in batches; row order kept)."""
    parts: dict[str, list[list[np.ndarray]]] = {r: [[], []] for r in regions}
    images = examples.map(lambda ex: (ex["image"], _garment_box(ex))).batch(batch_size)
    for image_bytes, bboxes in images:
        found = boxes_of(image_bytes, bboxes)
        for r in regions:
            parts[r][0].append(np.asarray(found[r][0], np.float32))
            parts[r][1].append(np.asarray(found[r][1], bool))
    boxes = {
        r: np.concatenate(p[0]) if p[0] else np.zeros((0, 4), np.float32) for r, p in parts.items()
    }
    flags = {r: np.concatenate(p[1]) if p[1] else np.zeros((0,), bool) for r, p in parts.items()}
    extra = tf.data.Dataset.from_tensor_slices((boxes, flags))
    return tf.data.Dataset.zip(examples, extra).map(
        lambda ex, b: {**ex, "region_boxes": b[0], "region_found": b[1]}
    )


def with_garment_boxes(examples: tf.data.Dataset, regions: Sequence[str]) -> tf.data.Dataset:
    """``examples`` with every region's box the garment box (found = False)."""
    return examples.map(
        lambda ex: {
            **ex,
            "region_boxes": {r: _garment_box(ex) for r in regions},
            "region_found": {r: tf.constant(False) for r in regions},
        }
    )


def region_examples(
    examples: tf.data.Dataset,
    regions: Sequence[str],
    boxes_of: BoxFunction | None,
    name: str,
    batch_size: int = 32,
) -> tuple[tf.data.Dataset, FallbackCounts]:
    """``examples`` with each of ``regions``' boxes (the module docstring's order) and the
    fallback counts."""
    spec = examples.element_spec
    given = isinstance(spec, dict) and "region_boxes" in spec
    if given and all(r in spec["region_boxes"] for r in regions):
        out = examples
    elif boxes_of is not None:
        out = with_predicted_regions(examples, regions, boxes_of, batch_size)
    else:
        log.warning(
            "%s crops the regions %s but nothing gives their boxes: the garment box is used; "
            "give --region-file or --keypoint-model",
            name,
            list(regions),
        )
        out = with_garment_boxes(examples, regions)
    counts = count_fallbacks(out, regions)
    log.info("%s", counts.format(f"{name}: region boxes"))
    return out, counts


def set_keypoint_model(predictors: Sequence[Any], keypoint_model: Any) -> None:
    """Makes ``keypoint_model`` (a loaded Keras keypoint model) find the boxes of every Keras
    model with regions among ``predictors`` (``--keypoint-model``); an export keeps its own
    first stage (a warning says so)."""
    for p in predictors:
        if not p.regions:
            continue
        if hasattr(p, "keypoint_model"):
            p.keypoint_model = keypoint_model
        else:
            log.warning("%s: an export finds its regions with its own first stage", p.name)


def use_region_sources(
    predictors: Sequence[Any],
    examples: tf.data.Dataset,
    *,
    region_file: str | None = None,
    keypoint_model: Any = None,
    skip_bad_rows: bool = False,
    inherited: bool = False,
) -> tf.data.Dataset:
    """Applies ``--region-file`` (the examples joined with it, for every model with regions)
    and ``--keypoint-model`` (a loaded Keras keypoint model: the boxes of each Keras model with
    regions) and returns the examples; nothing changes for models without regions.
    ``inherited``: the region file is the training run's, not given for this evaluation; it is
    then used only when some model has no box source of its own (an export's first stage, a
    keypoint head, ``keypoint_model``), so an export is scored as it is served."""
    regions = tuple(dict.fromkeys(r for p in predictors for r in p.regions))
    if not regions:
        if region_file or keypoint_model is not None:
            log.warning("no model crops regions: --region-file / --keypoint-model are unused")
        return examples
    if keypoint_model is not None:
        set_keypoint_model(predictors, keypoint_model)
    if inherited and all(p.region_boxes_of() is not None for p in predictors if p.regions):
        region_file = None
    if region_file:
        log.info("region boxes from %s%s", region_file, " (the training run's)" * inherited)
        examples = with_region_file(examples, region_file, regions, skip_bad_rows)
    return examples
