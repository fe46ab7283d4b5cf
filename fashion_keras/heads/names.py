"""Names and the spec error shared by every kind of head and region."""

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
