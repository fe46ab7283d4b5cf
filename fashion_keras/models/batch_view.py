"""The training view made on the accelerator: one batch of decoded garment windows -> views.

With ``--augment-on accelerator`` the input pipeline's CPU cores only decode the garment
window (:func:`fashion_keras.data.augment.photo_for_batch_view`, at the DCT scale that keeps
it at least the resized side) and pad the batch; the model's training call turns the batch
into the same views the CPU pipeline makes (:func:`~fashion_keras.data.augment.train_view`:
pad to a square with the window's mean colour, resize to ``234/224`` of the input size, cut a
random ``image_size`` crop, mirror half, jitter brightness, contrast and saturation), with
``keras.ops`` only, so it runs on the accelerator under any backend.

Every geometric step is one separable linear map per image: the crop, the mirror, the
placement in the padded square and the (antialiased where it shrinks by more than
:data:`ANTIALIAS_ABOVE`) triangle-filter resize are a row matrix
``(image_size, H)`` and a column matrix ``(image_size, W)``; the view is
``rows @ window @ columns^T`` plus the fill colour where neither matrix reaches the window.
The colour jitter is :func:`~fashion_keras.data.augment.colour_transform`'s affine map.

This is code of the training step, not a layer: the model keeps its one image input, and what
is saved and exported (``model.keras``, the SavedModel) has no trace of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from keras import ops

from fashion_keras.data.config import resize_size

#: The model-input keys of a batch the model turns into views itself.
PHOTO_KEY, PLAN_KEY = "view_window", "view_plan"
#: The columns of ``PLAN_KEY``: the window's decoded height and width (the rest of the
#: padded batch is zeros), the crop offset in the resized square, the mirror (1/0), and the
#: colour jitter's brightness delta (0-255), contrast and saturation factors.
PLAN_FIELDS = ("height", "width", "offset_y", "offset_x", "flip", "delta", "contrast", "saturation")
#: ITU-R 601 luma weights: the grey that saturation blends with (as PIL's ``convert("L")``,
#: ``ImageEnhance.Color`` and torchvision's ``ColorJitter``); both views use them.
LUMA = (0.299, 0.587, 0.114)
#: Both views' resize is antialiased where it shrinks the window by more than this factor
#: (below, the triangle filter's support is about one pixel).
ANTIALIAS_ABOVE = 1.25


def window_extent(image_size: int) -> int:
    """The side every window of a batch is padded to: twice the resized side. The DCT scale
    keeps a window's long side below that (the scale that fits is the largest that keeps it
    at least the resized side), so one shape serves every batch: XLA and JAX compile the
    training step once."""
    return 2 * resize_size(image_size)


def is_view_batch(inputs: Any) -> bool:
    """Whether ``inputs`` is a batch of windows to make views of (not model images)."""
    return isinstance(inputs, Mapping) and PHOTO_KEY in inputs and PLAN_KEY in inputs


def _axis_matrix(
    length: Any,
    size: Any,
    place: Any,
    offset: Any,
    flip: Any,
    smooth: Any,
    image_size: int,
    extent: Any,
) -> Any:
    """``(batch, image_size, extent)``: view index -> weights over the window's pixels along
    one axis. ``length``: the window's pixels on the axis (the rest of ``extent`` is padding),
    ``size``: its resized length, ``place``: where it sits in the square, ``offset``: the
    crop's start in the square, ``flip``: 1 where the view is mirrored, ``smooth``: 1 where
    the resize is antialiased (the triangle filter widens with the shrink), else bilinear."""
    view = ops.arange(image_size, dtype="float32")[None, :]
    # the mirrored view's pixel j is the crop's pixel image_size - 1 - j
    crop = view + flip[:, None] * (image_size - 1 - 2 * view)
    resized = crop + (offset - place)[:, None]  # the pixel of the resized window
    inside = ops.cast((resized >= 0) & (resized < size[:, None]), "float32")
    scale = length / size  # window pixels per resized pixel
    centre = (resized + 0.5) * scale[:, None]  # in window pixel units, half-pixel centres
    radius = 1.0 + smooth * (ops.maximum(scale, 1.0) - 1.0)
    pixel = ops.arange(extent, dtype="float32")[None, None, :] + 0.5
    weights = ops.relu(1.0 - ops.abs(pixel - centre[:, :, None]) / radius[:, None, None])
    weights = weights * ops.cast(pixel < length[:, None, None], "float32")
    total = ops.sum(weights, axis=-1, keepdims=True)
    return weights / ops.maximum(total, 1e-12) * inside[:, :, None]


def batch_train_views(window: Any, plan: Any, image_size: int) -> Any:
    """``window``: uint8 ``(batch, H, W, 3)`` decoded garment windows, zero-padded;
    ``plan``: float32 ``(batch, len(PLAN_FIELDS))``. Returns float32 RGB views in [0, 255],
    ``(batch, image_size, image_size, 3)``."""
    plan = ops.cast(plan, "float32")
    window = ops.cast(window, "float32")
    height, width = plan[:, 0], plan[:, 1]
    offset_y, offset_x, flip = plan[:, 2], plan[:, 3], plan[:, 4]
    side = float(resize_size(image_size))
    long_side = ops.maximum(height, width)
    size_y = ops.maximum(ops.round(height * side / long_side), 1.0)
    size_x = ops.maximum(ops.round(width * side / long_side), 1.0)
    place_y, place_x = ops.floor((side - size_y) / 2), ops.floor((side - size_x) / 2)
    # antialiased where either axis shrinks by more than ANTIALIAS_ABOVE, as the CPU view
    smooth = ops.cast(ops.maximum(height / size_y, width / size_x) > ANTIALIAS_ABOVE, "float32")
    extent_y, extent_x = ops.shape(window)[1], ops.shape(window)[2]
    no_flip = ops.zeros_like(flip)
    rows = _axis_matrix(height, size_y, place_y, offset_y, no_flip, smooth, image_size, extent_y)
    cols = _axis_matrix(width, size_x, place_x, offset_x, flip, smooth, image_size, extent_x)
    image = ops.einsum("biy,byxc->bixc", rows, window)
    image = ops.einsum("bjx,bixc->bijc", cols, image)
    # the fill colour: the window's mean; it shows where neither matrix reaches the window
    area = ops.maximum(height * width, 1.0)
    fill = ops.sum(window, axis=(1, 2)) / area[:, None]
    covered = ops.sum(rows, axis=-1)[:, :, None] * ops.sum(cols, axis=-1)[:, None, :]
    image = image + (1.0 - covered)[..., None] * fill[:, None, None, :]
    return colour_jitter(image, plan[:, 5], plan[:, 6], plan[:, 7])


def colour_jitter(image: Any, delta: Any, contrast: Any, saturation: Any) -> Any:
    """Brightness, contrast (about the image's mean) and luma-blend saturation as one affine
    map per image (:func:`fashion_keras.data.augment.colour_transform`), clipped to [0, 255]."""
    luma = ops.convert_to_tensor(LUMA, "float32")
    eye = ops.eye(3, dtype="float32")
    s = saturation[:, None, None]
    blend = s * eye[None] + (1.0 - s) * luma[None, None, :]  # (b, 3, 3), rows: out channel
    matrix = contrast[:, None, None] * ops.transpose(blend, (0, 2, 1))
    mean = ops.mean(image, axis=(1, 2))
    shifted = (1.0 - contrast)[:, None] * mean + delta[:, None]
    bias = ops.einsum("bij,bj->bi", blend, shifted)
    out = ops.einsum("bhwc,bcd->bhwd", image, matrix) + bias[:, None, None, :]
    return ops.clip(out, 0.0, 255.0)


def views_of(inputs: Any, image_size: int | None) -> Any:
    """The model input of ``inputs``: views of a window batch, else ``inputs`` unchanged."""
    if not is_view_batch(inputs):
        return inputs
    if image_size is None:
        raise ValueError(
            "a batch of garment windows (augment_on = 'accelerator') needs a model with a fixed "
            "image_size: build it with image_size set"
        )
    return batch_train_views(inputs[PHOTO_KEY], inputs[PLAN_KEY], image_size)
