"""Regions: the part of a photo an attribute is about (collar, sleeves, lower body...), as the box
around some keypoints of a keypoint head, grown by a few rules (:class:`Region`), and the
presets :data:`REGIONS`, the single source of truth for region names. The boxes themselves are
computed by :mod:`fashion_keras.heads.region_boxes`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from fashion_keras.heads.names import FASHIONAI_KEYPOINT_NAMES, NAME_RE, HeadSpecError, name_list

_FIELDS = ("name", "keypoints", "margin", "square", "extend_up", "min_size")


@dataclasses.dataclass(frozen=True)
class Region:
    """A named part of the photo: the keypoints that bound it and how their box is grown
    (``margin``, ``square``, ``extend_up``: fractions of the box size; ``min_size``: fraction of
    the image's shorter side). See the module docstring for the rules and pixel convention."""

    name: str
    keypoints: tuple[str, ...]
    margin: float = 0.1
    square: bool = False
    extend_up: float = 0.0
    min_size: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME_RE.match(self.name):
            raise HeadSpecError(
                f"region name {self.name!r} is invalid: expected letters, digits and "
                "underscores, starting with a letter"
            )
        where = f"region {self.name!r}"
        keypoints = name_list(self.keypoints, f"{where}: 'keypoints'")
        if len(keypoints) < 2:
            raise HeadSpecError(
                f"{where}: 'keypoints' = {list(keypoints)!r} has {len(keypoints)} entries; a box "
                "needs at least 2 keypoint names"
            )
        object.__setattr__(self, "keypoints", keypoints)
        for field in ("margin", "extend_up", "min_size"):
            value = getattr(self, field)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value < 0
            ):
                raise HeadSpecError(f"{where}: {field} = {value!r} must be a number >= 0")
            object.__setattr__(self, field, float(value))
        if self.min_size > 1:
            raise HeadSpecError(
                f"{where}: min_size = {self.min_size!r} must be <= 1 (a fraction of the image's "
                "shorter side)"
            )
        if not isinstance(self.square, bool):
            raise HeadSpecError(f"{where}: square = {self.square!r} must be true or false")

    def to_dict(self) -> dict[str, Any]:
        """The dict / YAML / JSON form, read back by :meth:`from_dict`."""
        return {
            "name": self.name,
            "keypoints": list(self.keypoints),
            "margin": self.margin,
            "square": self.square,
            "extend_up": self.extend_up,
            "min_size": self.min_size,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "region") -> Region:
        """A region from ``{"name", "keypoints", "margin"?, "square"?, "extend_up"?,
        "min_size"?}`` (omitted fields take the defaults); errors start with ``where``."""
        if not isinstance(d, Mapping):
            raise HeadSpecError(
                f"{where}: expected a mapping with 'name' and 'keypoints', got {d!r}"
            )
        unknown = sorted(set(d) - set(_FIELDS))
        if unknown:
            raise HeadSpecError(
                f"{where}: unknown field(s) {unknown!r}; allowed: {', '.join(_FIELDS)}"
            )
        for field in ("name", "keypoints"):
            if field not in d:
                raise HeadSpecError(f"{where}: missing field {field!r}")
        try:
            return cls(**{k: d[k] for k in _FIELDS if k in d})
        except HeadSpecError as e:
            raise HeadSpecError(f"{where}: {e}") from None


# --- Presets (FashionAI keypoint names, fashion_keras.heads.FASHIONAI_KEYPOINTS) ---------------
_SHOULDERS = ("shoulder_left", "shoulder_right")
_ARMPITS = ("armpit_left", "armpit_right")
REGIONS: dict[str, Region] = {
    r.name: r
    for r in (
        # The FashionAI write-up's collar crop: below the chin, above the chest, between the
        # shoulders. The neckline points sit at the base of the neck, so half the box height is
        # added above for the neck and chin; square keeps a flat neckline/shoulder line (outwear
        # has no center_front) from giving a sliver.
        Region(
            "collar",
            ("neckline_left", "neckline_right", "center_front", *_SHOULDERS),
            margin=0.15,
            square=True,
            extend_up=0.5,
            min_size=0.1,
        ),
        Region(
            "upper",
            (
                *_SHOULDERS,
                *_ARMPITS,
                "waistline_left",
                "waistline_right",
                "top_hem_left",
                "top_hem_right",
            ),
            margin=0.1,
            min_size=0.1,
        ),  # fmt: skip
        Region(
            "sleeves",
            (
                *_SHOULDERS,
                *_ARMPITS,
                "cuff_left_in",
                "cuff_left_out",
                "cuff_right_in",
                "cuff_right_out",
            ),
            margin=0.1,
            min_size=0.1,
        ),  # fmt: skip
        Region(
            "lower",
            (
                "waistband_left",
                "waistband_right",
                "hemline_left",
                "hemline_right",
                "crotch",
                "bottom_left_in",
                "bottom_left_out",
                "bottom_right_in",
                "bottom_right_out",
            ),
            margin=0.1,
            min_size=0.1,
        ),  # fmt: skip
        # all 24 FashionAI keypoints
        Region("garment", FASHIONAI_KEYPOINT_NAMES, margin=0.1, min_size=0.1),
    )
}


def get_region(region: Region | str, where: str = "region") -> Region:
    """``region`` itself, or the preset of that name (an error lists the known regions)."""
    if isinstance(region, Region):
        return region
    if isinstance(region, str) and region in REGIONS:
        return REGIONS[region]
    raise HeadSpecError(f"{where} = {region!r} is unknown; expected one of {list(REGIONS)!r}")
