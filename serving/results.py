"""What the clients return: each photo's :class:`Prediction`, each head's top :class:`ClassScore`
list, read from a model's ``<head>_probs`` and ``<head>_class_names`` outputs, and
:class:`ClientError`.

The names are those of ``python -m fashion_keras.predict``: a class has ``class_index`` (its
position in ``<head>_probs``), ``class_name`` and ``probability``; a prediction has
``model_name`` and ``model_version`` (the version that answered). :mod:`serving.client`
re-exports them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

PROBS_SUFFIX = "_probs"
NAMES_SUFFIX = "_class_names"


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
class Prediction:
    """One photo's result: the model and the version that answered, and each head's top
    classes (``model_version`` is None only when a server's gRPC answer names none)."""

    model_name: str
    model_version: int | None
    heads: dict[str, list[ClassScore]]

    def to_dict(self) -> dict[str, Any]:
        """``{"model_name", "model_version", "heads": {head: [class, ...]}}``."""
        return {
            "model_name": self.model_name,
            "model_version": self.model_version,
            "heads": {h: [c.to_dict() for c in scores] for h, scores in self.heads.items()},
        }


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
    heads = sorted(k[: -len(PROBS_SUFFIX)] for k in outputs if k.endswith(PROBS_SUFFIX))
    if not heads:
        raise ValueError(
            f"the response has no '<head>{PROBS_SUFFIX}' output; outputs: {sorted(outputs)}"
        )
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


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
