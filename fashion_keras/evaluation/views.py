"""Test-time views: the crops a model sees of each image, and batches of them.

Test-time augmentation (the crops are taken from the box-cropped, padded, resized square):

========================  =====  =====================================================
mode                      views  crops
========================  =====  =====================================================
``none``                  1      the evaluation view (``preprocess_for_eval``)
``flip``                  2      the evaluation view and its mirror image
``ten_crop``              10     4 corners + centre, each also mirrored
``eighteen_crop``         18     3 x 3 grid (top/middle/bottom x left/centre/right),
                                 each also mirrored
========================  =====  =====================================================

``none`` and ``flip`` crop ``image_size`` from the square resized to
``round(image_size * 234/224)`` exactly as evaluation does; the multi-crop modes resize to
``round(image_size * 256/224)`` (the usual resize-256-crop-224 convention of ten-crop) so the
crops differ meaningfully; ``resize_ratio`` overrides it.

Keypoint heads take ``none`` or ``flip`` only (:func:`keypoint_tta`): ``flip`` averages each
keypoint's heatmap with the mirrored view's (left/right swapped); the crop grids do not apply.

Each model input has an :class:`InputSpec`: its square size and the garment-box margin of its
crop, read from the model (what it was trained with); a command's ``--bbox-margin`` overrides
it (:func:`override_margin`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence

import numpy as np
import tensorflow as tf

from fashion_keras.data.config import DEFAULT_BBOX_MARGIN, RESIZE_RATIO
from fashion_keras.data.preprocess import preprocess_square
from fashion_keras.data.region_views import region_box

log = logging.getLogger("fashion_keras")

TTA_MODES = ("none", "flip", "ten_crop", "eighteen_crop")
#: The TTA modes of keypoint heads (the evaluation view, and its average with the mirror).
KEYPOINT_TTA_MODES = ("none", "flip")
#: Number of views per image for each TTA mode.
NUM_VIEWS = {"none": 1, "flip": 2, "ten_crop": 10, "eighteen_crop": 18}
#: Resize ratio of the multi-crop modes (resize 256, crop 224).
MULTI_CROP_RESIZE_RATIO = 256 / 224


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """The view one model input expects.

    Attributes:
      image_size: the square input size in pixels.
      bbox_margin: the garment-box margin of the crop (a fraction of the box on each side).
      source: where the margin comes from (the model, its export metadata, the run's
        ``config.json``, the default, or a ``--bbox-margin`` override), for the reports.
      region: for a region's view (a model with region crops), the region whose box it crops
        (the example's ``region_boxes`` entry, with no margin); ``None``: the garment box.
    """

    image_size: int
    bbox_margin: float
    source: str = "model"
    region: str | None = None

    def to_dict(self) -> dict[str, object]:
        out = dataclasses.asdict(self)
        if self.region is None:
            del out["region"]
        return out


def override_margin(inputs: Sequence[InputSpec], margin: float | None) -> tuple[InputSpec, ...]:
    """``inputs`` with ``margin`` in place of their own (unchanged when ``margin`` is None)."""
    if margin is None:
        return tuple(inputs)
    return tuple(
        i
        if i.region is not None
        else dataclasses.replace(i, bbox_margin=float(margin), source="--bbox-margin")
        for i in inputs
    )


def check_tta_mode(mode: str) -> None:
    if mode not in TTA_MODES:
        raise ValueError(f"tta = {mode!r}: expected one of {', '.join(TTA_MODES)}")


def keypoint_tta(mode: str) -> str:
    """The TTA mode keypoint heads run with for ``mode``: ``none`` and ``flip`` as they are;
    the crop grids (``ten_crop``, ``eighteen_crop``) do not apply to keypoints, so keypoint
    heads use ``none`` (one warning line says so)."""
    check_tta_mode(mode)
    if mode in KEYPOINT_TTA_MODES:
        return mode
    log.warning(
        "--tta %s applies to the softmax heads only: keypoint heads use tta none (crop grids do "
        "not apply to keypoints; --tta flip averages their heatmaps with the mirror image)",
        mode,
    )
    return "none"


def tta_side(image_size: int, mode: str, resize_ratio: float | None = None) -> int:
    """The side of the square the ``mode`` views are cropped from."""
    check_tta_mode(mode)
    if resize_ratio is None:
        resize_ratio = RESIZE_RATIO if mode in ("none", "flip") else MULTI_CROP_RESIZE_RATIO
    if resize_ratio < 1:
        raise ValueError(f"resize_ratio = {resize_ratio!r}: must be >= 1")
    return int(round(image_size * resize_ratio))


def tta_offsets(side: int, image_size: int, mode: str) -> list[tuple[int, int]]:
    """``(y, x)`` top-left corners of the crops of ``mode`` (before mirroring), in view order."""
    check_tta_mode(mode)
    if image_size > side:
        raise ValueError(f"crop size {image_size} is larger than the image side {side}")
    last = side - image_size
    mid = last // 2
    if mode in ("none", "flip"):
        return [(mid, mid)]
    if mode == "ten_crop":
        return [(0, 0), (0, last), (last, 0), (last, last), (mid, mid)]
    return [(y, x) for y in (0, mid, last) for x in (0, mid, last)]


def tta_views(square: tf.Tensor, image_size: int, mode: str) -> tf.Tensor:
    """The ``mode`` views of one padded, resized square image: ``(views, S, S, 3)``.

    Order: the crops of :func:`tta_offsets`, then (except for ``none``) the same crops mirrored
    left-right, in the same order.
    """
    side = int(square.shape[0])
    crops = [
        square[y : y + image_size, x : x + image_size, :]
        for y, x in tta_offsets(side, image_size, mode)
    ]
    views = tf.stack(crops)
    if mode != "none":
        views = tf.concat([views, tf.image.flip_left_right(views)], axis=0)
    return views


def preprocess_tta(
    image_bytes: tf.Tensor,
    image_size: int,
    mode: str = "none",
    bbox: tf.Tensor | None = None,
    margin: float = DEFAULT_BBOX_MARGIN,
    resize_ratio: float | None = None,
) -> tf.Tensor:
    """Encoded image -> its ``(NUM_VIEWS[mode], S, S, 3)`` float32 views (0-255 RGB)."""
    square = preprocess_square(image_bytes, tta_side(image_size, mode, resize_ratio), bbox, margin)
    return tta_views(square, image_size, mode)


def view_batches(
    examples: tf.data.Dataset,
    inputs: Sequence[InputSpec],
    *,
    tta: str = "none",
    batch_size: int = 32,
    resize_ratio: float | None = None,
) -> Iterator[tuple[int, list[np.ndarray]]]:
    """Batches of TTA views of encoded examples, for each of ``inputs`` (its size and margin).

    ``examples`` yield dicts with ``image`` (encoded bytes) and optionally ``bbox``
    (normalised ymin, xmin, ymax, xmax). Yields ``(n, views)``: ``n`` examples, and per input a
    float32 ``(n * NUM_VIEWS[tta], S, S, 3)`` array, example-major (the views of one example are
    consecutive); row order is kept.
    """
    check_tta_mode(tta)
    inputs = tuple(inputs)
    sizes = tuple(int(i.image_size) for i in inputs)
    views = NUM_VIEWS[tta]

    def _views(example):
        bbox = example["bbox"] if "bbox" in example else None
        return tuple(
            preprocess_tta(
                example["image"],
                i.image_size,
                tta,
                bbox if i.region is None else region_box(example, i.region),
                i.bbox_margin,
                resize_ratio,
            )
            for i in inputs
        )

    ds = examples.map(_views, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    for batch in ds:
        n = int(batch[0].shape[0])
        yield (
            n,
            [
                tf.reshape(b, (n * views, s, s, 3)).numpy()
                for b, s in zip(batch, sizes, strict=True)
            ],
        )
