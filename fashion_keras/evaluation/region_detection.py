"""Region detection: a keypoint model's region boxes over a dataset, written as a region file.

:func:`detect_regions` runs a :class:`~fashion_keras.evaluation.predictors.Predictor`'s
keypoint heads over a split (:meth:`Predictor.predict_keypoints`, points in photo pixels, each
with its visibility probability as score). A point is present when its score is at least
``min_score``; each region's box is :func:`~fashion_keras.heads.region_boxes.region_boxes` of
the present points of the keypoint head that has the region's keypoints, its score the mean
score of those points. Fewer than two present points give no box and no row (the training side
falls back to the garment box).

The rows go to a region file (:mod:`fashion_keras.data.region_files`, with the ``score``
column; ``image`` is the example's ``image/filename``), appended batch by batch, so the file is
valid at every moment. Rerun with the same output after an interruption and it resumes: the
examples up to the file's last image are skipped (read in the split's fixed order), the rest
appended. :class:`RegionSummary` counts images, rows and images without a box per region.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from fashion_keras import sections
from fashion_keras.data import pipeline, sources
from fashion_keras.data.config import DataConfig
from fashion_keras.data.region_files import (
    append_region_rows,
    drop_torn_line,
    read_region_file,
)
from fashion_keras.evaluation.keypoint_predictions import KEYPOINT_TTA, KeypointPredictions
from fashion_keras.evaluation.predictors import Predictor
from fashion_keras.heads import KeypointHead, Region
from fashion_keras.heads.region_boxes import region_boxes
from fashion_keras.heads.regions import REGIONS
from fashion_keras.sections import Section, option
from fashion_keras_datasets.common.rows import normalize_image_path

log = logging.getLogger("fashion_keras")

#: The example feature that names the image (the region file's ``image`` column).
FILENAME_FEATURE = "image/filename"


@dataclasses.dataclass
class RegionConfig(Section):
    """What ``python -m fashion_keras.regions`` detects, on which split, and where it writes."""

    split: str = option("train", "Split whose images get region boxes.")
    output: str | None = option(
        None,
        "The region file to write (required); when it exists, the run resumes after its last "
        "image and appends.",
    )
    regions: str | None = option(
        None,
        f"Comma-separated regions, of {', '.join(REGIONS)} (default: every region whose "
        "keypoints the model's keypoint heads have).",
    )
    min_score: float = option(
        0.5, "A keypoint is present when its visibility score is at least this."
    )
    max_examples: int | None = option(None, "Detect on a prefix of the split only.")

    def validate(self) -> None:
        super().validate()
        sections.check_positive_ints(self, ("max_examples",))
        if not self.output:
            raise ValueError("config field 'output' is required: the region file to write")
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"config field 'min_score' must be in [0, 1], got {self.min_score!r}")
        if self.regions is not None:
            parse_regions(self.regions)

    def region_names(self) -> list[str] | None:
        """The ``regions`` field as a list (None: the default)."""
        return None if self.regions is None else parse_regions(self.regions)


def parse_regions(text: str) -> list[str]:
    """``"collar,lower"`` -> ``["collar", "lower"]``, each a preset of :data:`REGIONS`."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in REGIONS]
    if not names or unknown:
        raise ValueError(
            f"config field 'regions' = {text!r}: unknown or no region(s) {unknown!r}; expected "
            f"comma-separated names of {list(REGIONS)}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"config field 'regions' = {text!r} repeats a region")
    return names


@dataclasses.dataclass(frozen=True)
class RegionSummary:
    """What a region file holds after :func:`detect_regions`.

    Attributes:
      path: the region file.
      images: images in the split (or its prefix).
      resumed: images skipped because an earlier run had written them.
      rows: rows per region in the whole file.
      without_box: images without a box per region (their training falls back to the garment
        box).
    """

    path: str
    images: int
    resumed: int
    rows: Mapping[str, int]
    without_box: Mapping[str, int]

    def format(self) -> str:
        """A few lines for the console."""
        lines = [f"{self.path}: {self.images} images"]
        if self.resumed:
            lines[0] += f" ({self.resumed} already written by an earlier run, skipped)"
        width = max(len(r) for r in self.rows) if self.rows else 0
        for region, rows in self.rows.items():
            lines.append(
                f"  {region:<{width}}  {rows} rows, {self.without_box[region]} images without a box"
            )
        return "\n".join(lines)


def region_heads(
    heads: Sequence[Any], regions: Sequence[str] | None = None
) -> dict[str, tuple[Region, KeypointHead]]:
    """Each region with the keypoint head that has its keypoints (the first one of ``heads``
    that does). ``regions`` default: every preset some keypoint head fits.

    Raises:
      ValueError: the model has no keypoint head, or a requested region does not fit any (the
        message names the region, the keypoints missing and the fix).
    """
    points = [h for h in heads if isinstance(h, KeypointHead)]
    if not points:
        raise ValueError(
            f"the model has no keypoint head (heads {[h.name for h in heads]!r}); region "
            "detection needs a model trained with keypoint heads, e.g. --heads "
            "fashionai_keypoints"
        )

    def fitting(region: Region) -> KeypointHead | None:
        return next((h for h in points if set(region.keypoints) <= set(h.keypoints)), None)

    if regions is None:
        out = {n: (r, h) for n, r in REGIONS.items() if (h := fitting(r)) is not None}
        if not out:
            raise ValueError(
                f"no region fits the keypoint head(s) {[h.name for h in points]!r}: every "
                f"region of {list(REGIONS)} needs keypoints they lack; use a model whose "
                "keypoint head has a region's keypoints (e.g. fashionai_keypoints)"
            )
        return out
    out = {}
    for name in regions:
        if name not in REGIONS:
            raise ValueError(f"region {name!r} is unknown; expected one of {list(REGIONS)}")
        region = REGIONS[name]
        head = fitting(region)
        if head is None:
            closest = min(points, key=lambda h: len(set(region.keypoints) - set(h.keypoints)))
            missing = [k for k in region.keypoints if k not in closest.keypoints]
            fit = [n for n, r in REGIONS.items() if fitting(r) is not None]
            raise ValueError(
                f"region {name!r} needs keypoint(s) {missing!r} that keypoint head "
                f"{closest.name!r} lacks; drop it from --regions (the model's heads fit "
                f"{fit!r}) or use a model whose keypoint head has them"
            )
        out[name] = (region, head)
    return out


def region_rows(
    predictions: Mapping[str, KeypointPredictions],
    images: Sequence[str],
    regions: Mapping[str, tuple[Region, KeypointHead]],
    min_score: float = 0.5,
) -> list[tuple[str, str, float, float, float, float, float]]:
    """The region-file rows of one batch, image by image in ``regions`` order:
    ``(image, region, x1, y1, x2, y2, score)`` where the region has a box.

    Args:
      predictions: :meth:`Predictor.predict_keypoints` of the batch (``labelled_only=False``).
      images: each row's image path.
      min_score: the score from which a keypoint counts as present.
    """
    found_by_region = {}
    for name, (region, head) in regions.items():
        pred = predictions[head.name]
        present = pred.scores >= min_score
        points = np.concatenate([pred.predicted, np.where(present, 1.0, -1.0)[..., None]], axis=-1)
        boxes, found = region_boxes(region, points, head, pred.image_sizes)
        idx = [head.index(k) for k in region.keypoints]
        usable = present[:, idx] & np.isfinite(pred.predicted[:, idx]).all(axis=-1)
        scores = np.where(usable, pred.scores[:, idx], 0.0).sum(axis=1) / np.maximum(
            usable.sum(axis=1), 1
        )
        found_by_region[name] = (boxes, found, np.clip(scores, 0.0, 1.0))
    rows = []
    for i, image in enumerate(images):
        for name, (boxes, found, scores) in found_by_region.items():
            if found[i]:
                x1, y1, x2, y2 = (float(v) for v in boxes[i])
                rows.append((image, name, x1, y1, x2, y2, float(scores[i])))
    return rows


def split_examples(data: DataConfig, split: str, heads: Sequence[Any]) -> tf.data.Dataset:
    """``split`` of the data section's dataset (the keypoints demo without a data folder), in
    its fixed order, the image left encoded."""
    demo_heads = [h for h in heads if isinstance(h, KeypointHead)]
    builders = sources.builders_for(data, demo_heads if data.uses_demo_data else None)[0]
    if len(builders) != 1:
        raise ValueError(f"expected one dataset, got {[b.name for b in builders]}")
    return sources.load_split(builders[0], split)


def _existing(path: str, regions: Sequence[str]) -> tuple[set[tuple[str, str]], str | None]:
    """The ``(image, region)`` keys of an earlier run's file and its last image (None: new)."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return set(), None
    if drop_torn_line(path):
        log.warning("%s: dropped the partial last line an interrupted run left", path)
    found = read_region_file(path, list(REGIONS))
    others = sorted({r for _, r in found.boxes} - set(regions))
    if others:
        raise ValueError(
            f"{path}: has rows for region(s) {others} besides the detected {list(regions)}; "
            "give --regions as the run that wrote it did, or another --output"
        )
    keys = set(found.boxes)
    return keys, (next(reversed(found.boxes))[0] if keys else None)


def _check_arguments(tta: str, min_score: float, examples: tf.data.Dataset) -> None:
    """Raises ``ValueError`` for a bad TTA mode or score, or examples without file names."""
    if tta not in KEYPOINT_TTA:
        raise ValueError(f"tta = {tta!r}: keypoint heads take one of {list(KEYPOINT_TTA)}")
    if not 0.0 <= min_score <= 1.0:
        raise ValueError(f"min_score = {min_score!r}: expected a number in [0, 1]")
    spec = examples.element_spec
    if not isinstance(spec, Mapping) or FILENAME_FEATURE not in spec:
        raise ValueError(
            f"the examples have no {FILENAME_FEATURE!r} feature (the region file's image "
            f"column); features: {sorted(spec) if isinstance(spec, Mapping) else spec}"
        )


def _image_names(filenames: np.ndarray, first: int) -> list[str]:
    """A batch's image paths, normalised; a ``ValueError`` for an empty one (``first``: the
    batch's first example's index in the split)."""
    names = [normalize_image_path(n.decode("utf-8")) for n in filenames]
    for i, name in enumerate(names):
        if not name or name == ".":
            raise ValueError(
                f"example {first + i} of the split has {FILENAME_FEATURE} = {name!r}: "
                "expected the image path the region file names it by"
            )
    return names


class _Resume:
    """Which images of each batch a resumed run still has to do: none up to the last image
    the file holds (``last``; the split is read in the same order), then those not done."""

    def __init__(self, last: str | None, done: set[str]) -> None:
        self.last, self.done, self.pending = last, done, last is not None

    def mask(self, names: Sequence[str]) -> np.ndarray:
        keep = np.ones(len(names), bool)
        if self.pending:
            if self.last in names:
                keep[: len(names) - list(names)[::-1].index(self.last)] = False
                self.pending = False
            else:
                keep[:] = False
        return keep & np.array([n not in self.done for n in names], bool)


def detect_regions(
    predictor: Predictor,
    examples: tf.data.Dataset,
    output: str | os.PathLike,
    *,
    regions: Sequence[str] | None = None,
    min_score: float = 0.5,
    tta: str = "none",
    batch_size: int = 32,
    bbox_margin: float | None = None,
    progress: bool = True,
) -> RegionSummary:
    """Writes the region boxes of ``predictor``'s keypoint heads over ``examples`` to
    ``output`` (module docstring), resuming an interrupted run's file.

    Args:
      examples: TFDS-format examples (image left encoded) with ``image/filename``, in a fixed
        order (a rerun must read them in the same order to resume).
      regions: region names (default: all that the keypoint heads fit, :func:`region_heads`).
      min_score: the visibility score from which a keypoint counts as present.
      tta: keypoint test-time augmentation, ``none`` or ``flip``.
      batch_size: images per batch (and per append).
      bbox_margin: overrides the model's garment-box margin.
      progress: show a progress bar.

    Raises:
      ValueError: a region the heads do not fit, examples without ``image/filename``, or an
        output file another run wrote for other data or regions.
    """
    _check_arguments(tta, min_score, examples)
    chosen = region_heads(predictor.heads, regions)
    path = os.fspath(output)
    written, last = _existing(path, list(chosen))

    def _slim(ex):
        norm = pipeline.normalize_example(ex, ())  # the garment box, or the whole photo
        return {"image": norm["image"], "bbox": norm["bbox"], "filename": ex[FILENAME_FEATURE]}

    total = int(examples.cardinality())
    bar = keras.utils.Progbar(
        total if total >= 0 else None, verbose=1 if progress else 0, unit_name="image"
    )
    resume = _Resume(last, {image for image, _ in written})
    seen, resumed = 0, 0
    for batch in examples.map(_slim).batch(batch_size):
        names = _image_names(batch["filename"].numpy(), seen)
        keep = resume.mask(names)
        resumed += int((~keep).sum())
        seen += len(names)
        if keep.any():
            chunk = {k: tf.boolean_mask(batch[k], keep) for k in ("image", "bbox")}
            predictions = predictor.predict_keypoints(
                tf.data.Dataset.from_tensor_slices(chunk),
                tta=tta,
                batch_size=batch_size,
                bbox_margin=bbox_margin,
                labelled_only=False,
            )
            kept = [n for n, k in zip(names, keep, strict=True) if k]
            rows = region_rows(predictions, kept, chosen, min_score)
            append_region_rows(path, rows, written)
            resume.done.update(kept)
        bar.update(seen)
    if resume.pending:
        raise ValueError(
            f"{path}: its last image {last!r} is not in these examples: the file was written "
            "for other data; give another --output or delete it"
        )
    if not os.path.exists(path):
        append_region_rows(path, [], written)  # the header, for a split without any box
    counts = {name: 0 for name in chosen}
    for _, region in written:
        counts[region] += 1
    return RegionSummary(
        path=path,
        images=seen,
        resumed=resumed,
        rows=counts,
        without_box={name: seen - n for name, n in counts.items()},
    )
