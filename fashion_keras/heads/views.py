"""Views: which picture of the photo each head reads.

A model without regions reads one view, the garment box's (input ``image``). A model trained
with region crops (``MultiHeadClassifier(regions=...)``) also reads one view per region, the
crop of that region's box (input ``<region>_crop``); a softmax head whose ``region`` the model
crops reads it, every other head (and every keypoint head) the garment view. The data pipeline,
evaluation and the export all build their views from :func:`model_views`.
"""

from __future__ import annotations

from collections.abc import Sequence

from fashion_keras.heads.keypoints import AnyHead
from fashion_keras.heads.softmax import Head
from fashion_keras.heads.spec import keypoint_heads, softmax_heads

#: The model input of the garment view.
IMAGE_INPUT = "image"


def crop_input(region: str | None) -> str:
    """The model input holding ``region``'s view (``<region>_crop``; ``None``: the garment
    view, ``image``)."""
    return IMAGE_INPUT if region is None else f"{region}_crop"


def head_view(head: Head, regions: Sequence[str]) -> str | None:
    """The view a softmax head reads: its region's when the model crops that region, else the
    garment view (``None``)."""
    return head.region if head.region in regions else None


def named_regions(heads: Sequence[AnyHead]) -> tuple[str, ...]:
    """The regions the softmax heads name, once each, in head order."""
    return tuple(dict.fromkeys(h.region for h in softmax_heads(heads) if h.region))


def model_views(heads: Sequence[AnyHead], regions: Sequence[str]) -> tuple[str | None, ...]:
    """The views a model with ``regions`` reads, in order: the garment view (``None``) when a
    keypoint head or a head without a cropped region needs it, then ``regions``."""
    garment = bool(keypoint_heads(heads)) or any(
        head_view(h, regions) is None for h in softmax_heads(heads)
    )
    return ((None,) if garment else ()) + tuple(regions)
