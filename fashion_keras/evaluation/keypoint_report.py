"""Keypoint score reports: markdown tables and a JSON-ready dict of a
:class:`~fashion_keras.evaluation.keypoint_scoring.KeypointScore`, optionally beside the score of
the mean-position baseline (no TensorFlow).

- :func:`keypoint_tables`: overall NE, per category and per keypoint NE in percent with their
  counts, a baseline column when given, and the images left out with their reasons.
- :func:`keypoint_metrics_json`: the same numbers as a dict (NaN as ``None``).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from fashion_keras.evaluation.keypoint_scoring import (
    SKIP_NORMALISER_ABSENT,
    SKIP_NORMALISER_ZERO,
    KeypointScore,
    NormalizedErrorPart,
)

#: What each skip reason means, as the report words it.
SKIP_REASONS: dict[str, str] = {
    SKIP_NORMALISER_ABSENT: "a normalising keypoint is not annotated",
    SKIP_NORMALISER_ZERO: "both normalising keypoints at the same position",
}
#: How many skipped image ids the markdown lists (all are in the JSON).
MAX_SKIPPED_LISTED = 20


def _pct(x: float | None) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.2f}"


def _num(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    align = ["---"] + ["---:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _base(part: NormalizedErrorPart | None) -> str:
    return _pct(None if part is None else part.percent)


def _skipped_counts(score: KeypointScore) -> dict[str, int]:
    counts = Counter(s.reason for s in score.skipped)
    return {r: counts[r] for r in sorted(counts)}


def keypoint_tables(score: KeypointScore, baseline: KeypointScore | None = None) -> str:
    """Markdown: the overall NE, a per-category and a per-keypoint table (NE % with 2
    decimals, ``n/a`` where nothing was counted), a baseline NE column when ``baseline`` is
    given, and the count of skipped images per reason with their first ids."""
    has_base = baseline is not None
    base_col = ["baseline NE %"] if has_base else []
    lines = ["## Keypoint normalised error (NE)", ""]

    overall = [["overall", _pct(score.percent)]]
    if baseline is not None:
        overall[0].append(_pct(baseline.percent))
    overall[0] += [str(score.points), str(score.images), str(score.num_skipped)]
    lines += _table(["", "NE %", *base_col, "points", "images", "skipped images"], overall)

    lines += ["", "### Per category", ""]
    rows = []
    for name, part in score.per_category.items():
        row = [_cell(name), _pct(part.percent)]
        if baseline is not None:
            row.append(_base(baseline.per_category.get(name)))
        row += [str(part.points), str(part.images or 0), str(part.skipped_images or 0)]
        rows.append(row)
    lines += _table(["category", "NE %", *base_col, "points", "images", "skipped images"], rows)

    lines += ["", "### Per keypoint", ""]
    rows = []
    for name, part in score.per_keypoint.items():
        row = [_cell(name), _pct(part.percent)]
        if baseline is not None:
            row.append(_base(baseline.per_keypoint.get(name)))
        row.append(str(part.points))
        rows.append(row)
    lines += _table(["keypoint", "NE %", *base_col, "points"], rows)

    lines += ["", f"Skipped images: {score.num_skipped} (left out of every NE above)"]
    for reason, count in _skipped_counts(score).items():
        lines.append(f"- {reason}: {count} ({SKIP_REASONS.get(reason, reason)})")
    if score.skipped:
        shown = ", ".join(
            f"{_cell(s.image_id)} ({_cell(s.category)}, {s.reason})"
            for s in score.skipped[:MAX_SKIPPED_LISTED]
        )
        more = score.num_skipped - MAX_SKIPPED_LISTED
        lines.append(f"- images: {shown}" + (f", ... {more} more" if more > 0 else ""))
    return "\n".join(lines) + "\n"


def keypoint_metrics_json(
    score: KeypointScore, baseline: KeypointScore | None = None
) -> dict[str, Any]:
    """The numbers of :func:`keypoint_tables` as a JSON-ready dict: ``score.to_dict()`` plus
    ``skipped_by_reason`` and, with ``baseline``, a ``baseline_percent`` per category and per
    keypoint and the baseline's overall ``baseline`` block (NaN becomes ``None``)."""
    out = score.to_dict()
    out["skipped_by_reason"] = _skipped_counts(score)
    if baseline is None:
        out["baseline"] = None
        return out
    out["baseline"] = {
        "ne_percent": _num(baseline.percent),
        "points": baseline.points,
        "images": baseline.images,
        "skipped_images": baseline.num_skipped,
    }
    for name, entry in out["per_category"].items():
        part = baseline.per_category.get(name)
        entry["baseline_percent"] = None if part is None else _num(part.percent)
    for name, entry in out["per_keypoint"].items():
        part = baseline.per_keypoint.get(name)
        entry["baseline_percent"] = None if part is None else _num(part.percent)
    return out
