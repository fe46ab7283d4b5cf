"""Joining a ``tf.data`` dataset with a region file (:mod:`.region_files`) by image path.

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

from fashion_keras.data.region_files import KEY_SEPARATOR, RegionFile, check_region_names

#: The garment box of an example without one: the whole photo.
FULL_IMAGE = (0.0, 0.0, 1.0, 1.0)


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
