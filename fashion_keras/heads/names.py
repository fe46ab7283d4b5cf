"""Names and the spec error shared by every kind of head and region, and the FashionAI 2018
keypoint names (the ``fashionai_keypoints`` preset and the region presets both use them)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

#: A head, keypoint or region name: it names model outputs and files.
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class HeadSpecError(ValueError):
    """A head spec (preset name, YAML/JSON file or dict) is malformed."""


def name_list(value: Any, where: str) -> tuple[str, ...]:
    """``value`` as a tuple of unique non-empty strings, or a :class:`HeadSpecError`."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise HeadSpecError(f"{where} = {value!r} is not a list of names")
    for i, k in enumerate(value):
        if not isinstance(k, str) or not k.strip():
            raise HeadSpecError(f"{where}[{i}] = {k!r} is not a non-empty string")
    dupes = sorted({k for k in value if list(value).count(k) > 1})
    if dupes:
        raise HeadSpecError(f"{where}: duplicate names {dupes!r}")
    return tuple(value)


#: The 24 FashionAI 2018 keypoints in the CSV column order (formats.md section 3).
FASHIONAI_KEYPOINT_NAMES: tuple[str, ...] = (
    "neckline_left", "neckline_right", "center_front", "shoulder_left", "shoulder_right",
    "armpit_left", "armpit_right", "waistline_left", "waistline_right", "cuff_left_in",
    "cuff_left_out", "cuff_right_in", "cuff_right_out", "top_hem_left", "top_hem_right",
    "waistband_left", "waistband_right", "hemline_left", "hemline_right", "crotch",
    "bottom_left_in", "bottom_left_out", "bottom_right_in", "bottom_right_out",
)  # fmt: skip
