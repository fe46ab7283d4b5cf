"""What the clients return: each photo's :class:`Prediction`, each head's top :class:`ClassScore`
list, read from a model's ``<head>_probs`` and ``<head>_class_names`` outputs, each keypoint
head's :class:`KeypointScore` list, read from ``<head>_keypoints``, ``<head>_scores`` and
``<head>_keypoint_names``, the boxes a two-stage model (region crops) cropped, read from
``<region>_box`` and ``<region>_found`` (:class:`RegionBox`), and :class:`ClientError`.

The names are those of ``python -m fashion_keras.predict``: a class has ``class_index`` (its
position in ``<head>_probs``), ``class_name`` and ``probability``; a keypoint, likewise,
``keypoint_index``, ``keypoint_name``, its ``x`` and ``y`` (pixels of the photo sent) and
``score`` (its visibility probability); a prediction has ``model_name`` and ``model_version``
(the version that answered). :mod:`serving.client` re-exports them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

PROBS_SUFFIX = "_probs"
NAMES_SUFFIX = "_class_names"
KEYPOINTS_SUFFIX = "_keypoints"
SCORES_SUFFIX = "_scores"
KEYPOINT_NAMES_SUFFIX = "_keypoint_names"
BOX_SUFFIX = "_box"
FOUND_SUFFIX = "_found"


@dataclasses.dataclass(frozen=True)
class ClassScore:
    """One class of one head: its index in ``<head>_probs``, its name and its probability."""

    class_index: int
    class_name: str
    probability: float

    def to_dict(self) -> dict[str, Any]:
        """``{"class_index", "class_name", "probability"}``, the keys of
        ``python -m fashion_keras.predict``."""
        return {
            "class_index": self.class_index,
            "class_name": self.class_name,
            "probability": round(self.probability, 6),
        }


@dataclasses.dataclass(frozen=True)
class KeypointScore:
    """One keypoint of one keypoint head: its index in ``<head>_keypoints``, its name, its
    position ``(x, y)`` in the pixels of the photo sent (integer ``x``: the centre of pixel
    column ``x``) and its visibility probability ``score``."""

    keypoint_index: int
    keypoint_name: str
    x: float
    y: float
    score: float

    def to_dict(self) -> dict[str, Any]:
        """``{"keypoint_index", "keypoint_name", "x", "y", "score"}``."""
        return {
            "keypoint_index": self.keypoint_index,
            "keypoint_name": self.keypoint_name,
            "x": round(self.x, 4),
            "y": round(self.y, 4),
            "score": round(self.score, 6),
        }


@dataclasses.dataclass(frozen=True)
class RegionBox:
    """The box a two-stage model cropped for a region: ``x1, y1, x2, y2`` pixel edges of the
    photo sent, and whether its keypoints gave it (False: the garment box)."""

    box: tuple[float, float, float, float]
    found: bool

    def to_dict(self) -> dict[str, Any]:
        return {"box": [round(v, 2) for v in self.box], "found": self.found}


@dataclasses.dataclass(frozen=True)
class Prediction:
    """One photo's result: the model and the version that answered, each head's top classes
    and each keypoint head's keypoints (``model_version`` is None only when a server's gRPC
    answer names none)."""

    model_name: str
    model_version: int | None
    heads: dict[str, list[ClassScore]]
    keypoints: dict[str, list[KeypointScore]] = dataclasses.field(default_factory=dict)
    regions: dict[str, RegionBox] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """``{"model_name", "model_version", "heads": {head: [class, ...]}}``, plus
        ``"keypoints": {head: [keypoint, ...]}`` when the model has keypoint heads and
        ``"regions": {region: {"box", "found"}}`` when it crops regions."""
        out: dict[str, Any] = {
            "model_name": self.model_name,
            "model_version": self.model_version,
            "heads": {h: [c.to_dict() for c in scores] for h, scores in self.heads.items()},
        }
        if self.keypoints:
            out["keypoints"] = {
                h: [k.to_dict() for k in points] for h, points in self.keypoints.items()
            }
        if self.regions:
            out["regions"] = {r: b.to_dict() for r, b in self.regions.items()}
        return out


class ClientError(Exception):
    """A call the server refused or that failed: the status (gRPC name or HTTP code) and why."""

    def __init__(self, status: str | int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def top_classes(outputs: Mapping[str, Any], top_k: int = 3) -> list[dict[str, list[ClassScore]]]:
    """Per example, each head's ``top_k`` classes from ``<head>_probs`` + ``<head>_class_names``."""
    if top_k < 1:
        raise ValueError(f"top_k = {top_k} must be >= 1")
    per_head = _class_outputs(outputs)
    if not per_head:
        raise ValueError(
            f"the response has no '<head>{PROBS_SUFFIX}' output; outputs: {sorted(outputs)}"
        )
    size = len(next(iter(per_head.values()))[0])
    result = []
    for i in range(size):
        example = {}
        for head, (probs, names) in per_head.items():
            order = np.argsort(-probs[i], kind="stable")[:top_k]
            example[head] = [
                ClassScore(int(j), _text(names[i, j]), float(probs[i, j])) for j in order
            ]
        result.append(example)
    return result


def _class_outputs(outputs: Mapping[str, Any]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{head: (probs [N, C], class names [N, C])}`` of the softmax heads in ``outputs``."""
    heads = sorted(k[: -len(PROBS_SUFFIX)] for k in outputs if k.endswith(PROBS_SUFFIX))
    per_head = {}
    for head in heads:
        names_key = head + NAMES_SUFFIX
        if names_key not in outputs:
            raise ValueError(
                f"the response has {head}{PROBS_SUFFIX} but no {names_key} output to name its "
                f"classes; outputs: {sorted(outputs)}"
            )
        probs = np.asarray(outputs[head + PROBS_SUFFIX], dtype=np.float64)
        names = np.asarray(outputs[names_key], dtype=object)
        if probs.ndim != 2 or names.shape != probs.shape:
            raise ValueError(
                f"{head}: {head}{PROBS_SUFFIX} has shape {list(probs.shape)} but {names_key} has "
                f"shape {list(names.shape)}; expected matching [batch, num_classes]"
            )
        per_head[head] = (probs, names)
    return per_head


def keypoint_lists(outputs: Mapping[str, Any]) -> list[dict[str, list[KeypointScore]]]:
    """Per example, each keypoint head's keypoints from ``<head>_keypoints`` (``[N, K, 2]``
    x, y), ``<head>_scores`` (``[N, K]``) and ``<head>_keypoint_names`` (``[N, K]``), in head
    order; ``[]`` when ``outputs`` has no keypoint head."""
    heads = sorted(k[: -len(KEYPOINTS_SUFFIX)] for k in outputs if k.endswith(KEYPOINTS_SUFFIX))
    per_head = {}
    for head in heads:
        keys = [head + s for s in (KEYPOINTS_SUFFIX, SCORES_SUFFIX, KEYPOINT_NAMES_SUFFIX)]
        missing = [k for k in keys if k not in outputs]
        if missing:
            raise ValueError(
                f"the response has {keys[0]} but no {' / '.join(missing)} output for its scores "
                f"and names; outputs: {sorted(outputs)}"
            )
        coords = np.asarray(outputs[keys[0]], dtype=np.float64)
        scores = np.asarray(outputs[keys[1]], dtype=np.float64)
        names = np.asarray(outputs[keys[2]], dtype=object)
        if (
            coords.ndim != 3
            or coords.shape[2:] != (2,)
            or scores.shape != coords.shape[:2]
            or names.shape != coords.shape[:2]
        ):
            raise ValueError(
                f"{head}: {keys[0]} has shape {list(coords.shape)}, {keys[1]} "
                f"{list(scores.shape)} and {keys[2]} {list(names.shape)}; expected "
                "[batch, K, 2], [batch, K] and [batch, K]"
            )
        per_head[head] = (coords, scores, names)
    if not per_head:
        return []
    size = len(next(iter(per_head.values()))[0])
    return [
        {
            head: [
                KeypointScore(
                    j, _text(names[i, j]), float(xy[i, j, 0]), float(xy[i, j, 1]), float(s[i, j])
                )
                for j in range(xy.shape[1])
            ]
            for head, (xy, s, names) in per_head.items()
        }
        for i in range(size)
    ]


def region_boxes(outputs: Mapping[str, Any]) -> list[dict[str, RegionBox]]:
    """Per example, each region's :class:`RegionBox` from ``<region>_box`` (``[N, 4]``) and
    ``<region>_found`` (``[N]``); ``[]`` when ``outputs`` has none."""
    regions = sorted(
        k[: -len(BOX_SUFFIX)]
        for k in outputs
        if k.endswith(BOX_SUFFIX) and k[: -len(BOX_SUFFIX)] + FOUND_SUFFIX in outputs
    )
    if not regions:
        return []
    boxes = {r: np.asarray(outputs[r + BOX_SUFFIX], np.float64) for r in regions}
    found = {r: np.asarray(outputs[r + FOUND_SUFFIX], bool).reshape(-1) for r in regions}
    for r in regions:
        if boxes[r].ndim != 2 or boxes[r].shape[1] != 4 or len(found[r]) != len(boxes[r]):
            raise ValueError(
                f"{r}{BOX_SUFFIX} has shape {list(boxes[r].shape)} and {r}{FOUND_SUFFIX} "
                f"{list(found[r].shape)}; expected [batch, 4] and [batch]"
            )
    size = len(boxes[regions[0]])
    return [
        {r: RegionBox(tuple(float(v) for v in boxes[r][i]), bool(found[r][i])) for r in regions}
        for i in range(size)
    ]


def predictions(
    model_name: str, model_version: int | None, outputs: Mapping[str, Any], top_k: int = 3
) -> list[Prediction]:
    """One :class:`Prediction` per example of a predict answer's ``outputs``: each softmax
    head's top ``top_k`` classes and each keypoint head's keypoints."""
    if top_k < 1:
        raise ValueError(f"top_k = {top_k} must be >= 1")
    points = keypoint_lists(outputs)
    if not _class_outputs(outputs):
        if not points:
            raise ValueError(
                f"the response has no '<head>{PROBS_SUFFIX}' or '<head>{KEYPOINTS_SUFFIX}' "
                f"output; outputs: {sorted(outputs)}"
            )
        return [Prediction(model_name, model_version, {}, p) for p in points]
    classes = top_classes(outputs, top_k)
    boxes = region_boxes(outputs)
    for what, rows in (("keypoint", points), ("region box", boxes)):
        if rows and len(rows) != len(classes):
            raise ValueError(
                f"the response's class outputs hold {len(classes)} examples but its {what} "
                f"outputs {len(rows)}; expected the same batch"
            )
    return [
        Prediction(
            model_name, model_version, c, points[i] if points else {}, boxes[i] if boxes else {}
        )
        for i, c in enumerate(classes)
    ]


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
