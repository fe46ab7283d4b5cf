"""Softmax heads: a name, ordered class names, a loss weight, optional class weights and
optional region (the part of the photo the head is about)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar

from fashion_keras.heads.names import NAME_RE, HeadSpecError
from fashion_keras.heads.regions import get_region


@dataclasses.dataclass(frozen=True)
class Head:
    """One softmax output: a name, ordered class names, a default loss weight, optional
    per-class loss weights (``None``: equal, or computed by ``--class-weights``) and an optional
    ``region``: the name of a :data:`~fashion_keras.heads.regions.REGIONS` preset, the part of
    the photo the head is about (``None``: the whole garment)."""

    kind: ClassVar[str] = "softmax"

    name: str
    classes: tuple[str, ...]
    loss_weight: float = 1.0
    class_weights: tuple[float, ...] | None = None
    region: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        if not isinstance(self.name, str) or not NAME_RE.match(self.name):
            raise HeadSpecError(
                f"head name {self.name!r} is invalid: expected letters, digits and "
                "underscores, starting with a letter (it names model outputs and files)"
            )
        if len(self.classes) < 2:
            raise HeadSpecError(
                f"head {self.name!r}: 'classes' has {len(self.classes)} entries "
                f"{list(self.classes)!r}; a softmax head needs at least 2"
            )
        for i, c in enumerate(self.classes):
            if not isinstance(c, str) or not c.strip():
                raise HeadSpecError(
                    f"head {self.name!r}: classes[{i}] = {c!r} is not a non-empty string"
                )
        dupes = sorted({c for c in self.classes if self.classes.count(c) > 1})
        if dupes:
            raise HeadSpecError(f"head {self.name!r}: duplicate class names {dupes!r}")
        if isinstance(self.loss_weight, bool) or not isinstance(self.loss_weight, (int, float)):
            raise HeadSpecError(
                f"head {self.name!r}: loss_weight = {self.loss_weight!r} is not a number"
            )
        if not self.loss_weight >= 0:
            raise HeadSpecError(
                f"head {self.name!r}: loss_weight = {self.loss_weight!r} must be >= 0"
            )
        object.__setattr__(self, "loss_weight", float(self.loss_weight))
        self._check_class_weights()
        if self.region is not None:
            get_region(self.region, f"head {self.name!r}: region")

    def _check_class_weights(self) -> None:
        if self.class_weights is None:
            return
        weights = self.class_weights
        if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence):
            raise HeadSpecError(
                f"head {self.name!r}: class_weights = {weights!r} is not a list of numbers"
            )
        if len(weights) != self.num_classes:
            raise HeadSpecError(
                f"head {self.name!r}: class_weights has {len(weights)} entries, expected one per "
                f"class ({self.num_classes}: {list(self.classes)})"
            )
        for i, w in enumerate(weights):
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not w > 0:
                raise HeadSpecError(
                    f"head {self.name!r}: class_weights[{i}] = {w!r} must be a number > 0"
                )
        object.__setattr__(self, "class_weights", tuple(float(w) for w in weights))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def index(self, class_name: str) -> int:
        """Index of ``class_name`` in this head, with an error that lists the valid names."""
        try:
            return self.classes.index(class_name)
        except ValueError:
            raise KeyError(
                f"head {self.name!r} has no class {class_name!r}; "
                f"expected one of {list(self.classes)!r}"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        """The dict / YAML / JSON form (``class_weights`` and ``region`` only when set, so the
        form of a head without them is unchanged)."""
        out: dict[str, Any] = {
            "name": self.name,
            "classes": list(self.classes),
            "loss_weight": self.loss_weight,
        }
        if self.class_weights is not None:
            out["class_weights"] = list(self.class_weights)
        if self.region is not None:
            out["region"] = self.region
        return out
