"""Region boxes for ``tf.data`` examples: a region file's (:mod:`.region_files`, joined by image
path) or the box of the example's own keypoints (:func:`attach_region_boxes` takes both).

:func:`region_lookup` adds ``region_boxes`` (normalised ``(ymin, xmin, ymax, xmax)``, as
``bbox``) and ``region_found`` per region to each example; an image without a box for a region
falls back to its garment ``bbox``, and :func:`count_fallbacks` counts those per region, so a
fallback is never silent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from fashion_keras.data.pipeline import keypoint_features
from fashion_keras.data.region_files import KEY_SEPARATOR, RegionFile, check_region_names
from fashion_keras.data.region_views import (
    FULL_IMAGE,
    keypoint_head_for,
    keypoint_region_boxes,
    to_normalized,
)
from fashion_keras.heads import KeypointHead, get_heads, get_region


def normalize_image_path_tf(path: tf.Tensor) -> tf.Tensor:
    """:func:`normalize_image_path` for a string tensor (any shape): ``./``, ``/./``, doubled
    and trailing ``/`` dropped (``..`` is left alone: the builders reject it)."""
    path = tf.strings.regex_replace(path, "/+", "/")
    path = tf.strings.regex_replace(path, r"(^|/)(\./)+", r"\1")
    return tf.strings.regex_replace(path, r"(.)/\.?$", r"\1")


class RegionLookup(tf.Module):
    """Adds each region's box to ``tf.data`` examples (a ``Dataset.map`` function).

    Boxes are looked up in a ``StaticHashTable`` keyed ``<image>|<region>`` whose values index
    a constant tensor of pixel boxes. Works on single (unbatched) examples holding
    ``image/filename``, ``image`` (encoded bytes or a decoded ``[H, W, C]`` image; with
    ``image/height`` and ``image/width`` features those give the size) and ``bbox``.
    """

    def __init__(self, region_file: RegionFile, regions: Sequence[str]) -> None:
        super().__init__(name="region_lookup")
        self.regions = check_region_names(regions, region_file.regions, "regions")
        wanted = set(self.regions)
        items = [(k, v) for k, v in region_file.boxes.items() if k[1] in wanted]
        keys = [f"{image}{KEY_SEPARATOR}{region}" for (image, region), _ in items]
        boxes = [list(v[:4]) for _, v in items] + [[0.0, 0.0, 0.0, 0.0]]  # the last: absent
        self.num_boxes = len(items)
        self.boxes = tf.constant(np.asarray(boxes, np.float32).reshape(-1, 4))
        # "" (never a real key, which holds '|') keeps the table non-empty, as TF requires
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant([*keys, ""], tf.string), tf.range(len(keys) + 1, dtype=tf.int64)
            ),
            default_value=len(keys),
        )

    def pixel_boxes(self, filename: tf.Tensor) -> tuple[dict[str, tf.Tensor], dict[str, tf.Tensor]]:
        """``({region: float32 [4] pixel (x1, y1, x2, y2)}, {region: bool})`` of one image."""
        image = normalize_image_path_tf(tf.convert_to_tensor(filename, tf.string))
        boxes, found = {}, {}
        for region in self.regions:
            index = self.table.lookup(tf.strings.join([image, region], KEY_SEPARATOR))
            boxes[region] = tf.gather(self.boxes, index)
            found[region] = index < self.num_boxes
        return boxes, found

    def __call__(self, example: Mapping[str, Any]) -> dict[str, Any]:
        """``example`` plus ``region_boxes`` ``{region: float32 [4] normalised (ymin, xmin,
        ymax, xmax)}`` and ``region_found`` ``{region: bool}``; a region without a box (or
        whose box lies outside the photo) gets the example's ``bbox`` and found = False."""
        height, width = photo_size(example)
        garment = (
            tf.reshape(tf.cast(example["bbox"], tf.float32), [4])
            if "bbox" in example
            else tf.constant(FULL_IMAGE, tf.float32)
        )
        pixels, found_in_file = self.pixel_boxes(example["image/filename"])
        scale = tf.stack([height, width, height, width])
        out_boxes, out_found = {}, {}
        for region in self.regions:
            x1, y1, x2, y2 = tf.unstack(pixels[region])
            box = tf.clip_by_value(tf.stack([y1, x1, y2, x2]) / scale, 0.0, 1.0)
            found = found_in_file[region] & (box[0] < box[2]) & (box[1] < box[3])
            out_boxes[region] = tf.where(found, box, garment)
            out_found[region] = found
        return {**example, "region_boxes": out_boxes, "region_found": out_found}


def photo_size(example: Mapping[str, Any]) -> tuple[tf.Tensor, tf.Tensor]:
    """The photo's ``(height, width)`` (float32): from ``image/height`` and ``image/width``
    where the example has them, else from the image (the JPEG header, or its decoded shape)."""
    if "image/height" in example and "image/width" in example:
        return (
            tf.cast(example["image/height"], tf.float32),
            tf.cast(example["image/width"], tf.float32),
        )
    image = tf.convert_to_tensor(example["image"])
    if image.dtype != tf.string:
        shape = tf.shape(image)
    else:
        shape = tf.cond(
            tf.io.is_jpeg(image),
            lambda: tf.image.extract_jpeg_shape(image),
            lambda: tf.shape(tf.io.decode_image(image, channels=3, expand_animations=False)),
        )
    return tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)


def region_lookup(region_file: RegionFile, regions: Sequence[str]) -> RegionLookup:
    """The ``Dataset.map`` function adding ``regions``' boxes to examples (:class:`RegionLookup`).

    ``regions`` must be names the region file allows (it may have no box for some)."""
    return RegionLookup(region_file, regions)


@dataclasses.dataclass(frozen=True)
class FallbackCounts:
    """How many examples fell back to their garment box, per region."""

    examples: int
    fallbacks: Mapping[str, int]

    def format(self, source: str = "region boxes") -> str:
        counts = ", ".join(f"{r} {n}" for r, n in self.fallbacks.items())
        return f"{source}: {self.examples} examples; fell back to the garment box: {counts}"


def count_fallbacks(
    examples: tf.data.Dataset | Iterable[Mapping[str, Any]], regions: Sequence[str] | None = None
) -> FallbackCounts:
    """Counts the examples without a box per region in joined examples (with ``region_found``,
    single or batched); ``regions`` defaults to those of the first example."""
    if isinstance(examples, tf.data.Dataset):
        examples = examples.map(lambda ex: ex["region_found"]).as_numpy_iterator()
    else:
        examples = (ex["region_found"] for ex in examples)
    names = None if regions is None else tuple(regions)
    total = 0
    counts: dict[str, int] = {r: 0 for r in names or ()}
    for found in examples:
        if names is None:
            names = tuple(found)
            counts = {r: 0 for r in names}
        flags = {r: np.asarray(found[r], bool).reshape(-1) for r in names}
        total += len(flags[names[0]]) if names else 0
        for r in names:
            counts[r] += int((~flags[r]).sum())
    return FallbackCounts(total, counts)


def boxes_from_keypoints(
    example: Mapping[str, Any], regions: Sequence[str], heads: Sequence[KeypointHead]
) -> dict[str, Any]:
    """``example`` (a builder's, with ``image`` bytes, ``bbox`` and ``keypoints/<head>``) plus
    ``region_boxes`` / ``region_found`` from its own keypoints (``heads``: the dataset's keypoint
    heads); a region without a box gets the garment ``bbox`` and found = False. A region the
    example already has a found box for (a region file's, :mod:`.region_lookup`) keeps it."""
    height, width = photo_size(example)
    sizes = tf.reshape(tf.stack([width, height]), [1, 2])
    garment = (
        tf.reshape(tf.cast(example["bbox"], tf.float32), [4])
        if "bbox" in example
        else tf.constant(FULL_IMAGE, tf.float32)
    )
    boxes = dict(example.get("region_boxes", {}))
    found = dict(example.get("region_found", {}))
    for region in regions:
        head = keypoint_head_for(region, heads)
        points = tf.cast(example["keypoints"][head.name], tf.float32)[None]
        pixels, ok = keypoint_region_boxes(region, points, head, sizes)
        box, ok = to_normalized(pixels, sizes)[0], ok[0]
        if region in found:
            ok, box = found[region] | ok, tf.where(found[region], boxes[region], box)
        boxes[region] = tf.where(ok, box, garment)
        found[region] = ok
    return {**example, "region_boxes": boxes, "region_found": found}


def dataset_keypoint_heads(features: Mapping[str, Any]) -> tuple[KeypointHead, ...]:
    """The keypoint heads (presets) whose ``keypoints/<head>`` a dataset's features hold."""
    found = []
    for name, shape in keypoint_features(features).items():
        try:
            (head,) = get_heads(name)
        except (ValueError, KeyError):
            continue
        if isinstance(head, KeypointHead) and (head.num_keypoints, 3) == tuple(shape):
            found.append(head)
    return tuple(found)


def attach_region_boxes(
    examples: tf.data.Dataset,
    regions: Sequence[str],
    keypoint_sources: Sequence[KeypointHead] = (),
    lookup: Any = None,
) -> tf.data.Dataset:
    """A builder's examples plus ``region_boxes`` / ``region_found`` for ``regions``: a region
    file's box where it has one (``lookup``, :func:`~.region_lookup.region_lookup`), else the
    box of the example's own keypoints (``keypoint_sources``: the dataset's keypoint heads; a
    region none of them covers has no such source), else the garment box (found = False)."""
    regions = tuple(regions)
    by_keypoints = tuple(
        r
        for r in regions
        if any(all(k in h.keypoints for k in get_region(r).keypoints) for h in keypoint_sources)
    )

    def _attach(example):
        if lookup is not None:
            example = lookup(example)
        else:
            garment = (
                tf.reshape(tf.cast(example["bbox"], tf.float32), [4])
                if "bbox" in example
                else tf.constant(FULL_IMAGE, tf.float32)
            )
            example = {
                **example,
                "region_boxes": {r: garment for r in regions},
                "region_found": {r: tf.constant(False) for r in regions},
            }
        if by_keypoints:
            example = boxes_from_keypoints(example, by_keypoints, keypoint_sources)
        return example

    return examples.map(_attach, num_parallel_calls=tf.data.AUTOTUNE)
