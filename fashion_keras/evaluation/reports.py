"""Figures and Markdown for evaluation and training reports (matplotlib, Agg; no display).

- :func:`plot_confusion_matrix`, :func:`plot_top_losses`: error-analysis PNGs.
- :func:`plot_training_curves`, :class:`TrainingCurves`: loss and accuracy per head per epoch
  (train and validation, each head's majority-class baseline); they live in
  :mod:`fashion_keras.evaluation.curves` and are re-exported here.
- :func:`markdown_table`, :class:`Section`, :func:`write_markdown_report`: a Markdown report.

Figures are drawn on a bare ``matplotlib.figure.Figure`` with the Agg canvas, so nothing touches
pyplot's global state, and written atomically (a reader never sees a half-written PNG).
"""

from __future__ import annotations

import dataclasses
import math
import os
import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from fashion_keras.evaluation.curves import History as History
from fashion_keras.evaluation.curves import TrainingCurves as TrainingCurves
from fashion_keras.evaluation.curves import history_heads as history_heads
from fashion_keras.evaluation.curves import plot_training_curves as plot_training_curves
from fashion_keras.evaluation.curves import read_history_csv as read_history_csv
from fashion_keras.evaluation.curves import save_png
from fashion_keras.evaluation.curves import training_curves_figure as training_curves_figure
from fashion_keras.evaluation.scoring import ConfusedPair, FashionAIScore

# --- error analysis ----------------------------------------------------------------------------


def plot_confusion_matrix(
    cm: Any, class_names: Sequence[str], path: str, title: str = "confusion matrix"
) -> str:
    """A confusion-matrix PNG (rows true, columns predicted), coloured by the fraction of each
    true class, with counts written in the cells up to 20 classes. Returns ``path``."""
    cm = np.asarray(cm)
    n = len(class_names)
    if cm.shape != (n, n):
        raise ValueError(f"cm has shape {cm.shape}, expected ({n}, {n}) for {n} class names")
    if n == 0:
        raise ValueError("no classes to plot")
    totals = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, totals, out=np.zeros(cm.shape, float), where=totals > 0)
    side = float(np.clip(0.3 * n + 3.0, 5.0, 22.0))
    fontsize = 9 if n <= 20 else 7
    fig = Figure(figsize=(side + 1.0, side), dpi=100)
    ax = fig.add_subplot()
    image = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02, label="fraction of the true class")
    ax.set_xticks(range(n), labels=list(class_names), rotation=90, fontsize=fontsize)
    ax.set_yticks(range(n), labels=list(class_names), fontsize=fontsize)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    color = "white" if frac[i, j] > 0.5 else "black"
                    text = str(int(cm[i, j]))
                    ax.text(j, i, text, ha="center", va="center", fontsize=8, color=color)
    fig.tight_layout()
    return save_png(fig, path)


def loss_title(true: str, predicted: str, loss: float, prob: float | None = None) -> str:
    """A short title for a top-loss image: true class, prediction (and its probability), loss."""
    pred = f"{predicted} ({prob:.2f})" if prob is not None else predicted
    return f"true: {true}\npred: {pred}\nloss {loss:.2f}"


def plot_top_losses(
    images: Any, titles: Sequence[str], path: str, cols: int = 4, title: str = ""
) -> str:
    """A grid PNG of images (N, H, W, 3), uint8 or float in [0, 255], one title each (e.g. from
    :func:`loss_title`). A list of (H, W, 3) arrays of different sizes works too."""
    images = list(images)
    if not images:
        raise ValueError("no images to plot")
    if len(titles) != len(images):
        raise ValueError(f"{len(titles)} titles for {len(images)} images")
    if isinstance(cols, bool) or not isinstance(cols, int) or cols < 1:
        raise ValueError(f"cols must be an integer >= 1, got {cols!r}")
    for i, img in enumerate(images):
        shape = np.shape(img)
        if len(shape) != 3 or shape[2] != 3:
            raise ValueError(f"image {i} has shape {shape}, expected (H, W, 3)")
    cols = min(cols, len(images))
    rows = math.ceil(len(images) / cols)
    fig = Figure(figsize=(2.8 * cols, 3.5 * rows + (0.4 if title else 0.0)), dpi=100)
    for i, (img, text) in enumerate(zip(images, titles, strict=True)):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(np.clip(np.asarray(img, np.float32), 0.0, 255.0) / 255.0)
        wrapped = "\n".join(textwrap.fill(line, 32) for line in str(text).split("\n"))
        ax.set_title(wrapped, fontsize=8)
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_png(fig, path)


# --- Markdown ----------------------------------------------------------------------------------


def _cell(value: Any, float_format: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        text = "n/a"
    elif isinstance(value, (float, np.floating)):
        text = float_format.format(float(value))
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(
    rows: Sequence[Sequence[Any]], headers: Sequence[str], float_format: str = "{:.4f}"
) -> str:
    """A GitHub-flavoured Markdown table; floats via ``float_format``, None/NaN as ``n/a``,
    numbers right-aligned."""
    if not headers:
        raise ValueError("a table needs at least one header")
    for i, row in enumerate(rows):
        if len(row) != len(headers):
            raise ValueError(
                f"row {i} has {len(row)} cells {list(row)!r}, expected {len(headers)} "
                f"for headers {list(headers)!r}"
            )
    numeric = [
        bool(rows) and all(isinstance(r[j], (int, float, np.number)) or r[j] is None for r in rows)
        for j in range(len(headers))
    ]
    lines = [
        "| " + " | ".join(_cell(h, float_format) for h in headers) + " |",
        "|" + "|".join("---:" if num else "---" for num in numeric) + "|",
    ]
    lines += ["| " + " | ".join(_cell(v, float_format) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def fashionai_table(score: FashionAIScore) -> tuple[list[str], list[list[Any]]]:
    """``(headers, rows)`` of a FashionAI score: one row per task, then mAP/BasicPrecision."""
    headers = ["task", "AP", "BasicPrecision", "rows", "counted", "thresholds", "skipped"]
    rows: list[list[Any]] = [
        [t.task, t.ap, t.basic_precision, t.num_rows, t.num_counted]
        + [t.num_thresholds, t.skipped_thresholds]
        for t in score.per_task.values()
    ]
    rows.append(["**mean (mAP)**", score.map, score.basic_precision, None, None, None, None])
    return headers, rows


def confused_pairs_table(pairs: Sequence[ConfusedPair]) -> tuple[list[str], list[list[Any]]]:
    """``(headers, rows)`` of :func:`fashion_keras.evaluation.scoring.most_confused_pairs`."""
    headers = ["true", "predicted", "count", "fraction of true class"]
    return headers, [[p.true, p.predicted, p.count, p.fraction] for p in pairs]


@dataclasses.dataclass
class Section:
    """One report section: a ``## title``, free Markdown text, tables and images.

    ``tables``: ``(headers, rows)`` pairs (see :func:`markdown_table`). ``images``: PNG paths,
    linked relative to the report's folder.
    """

    title: str
    text: str = ""
    tables: Sequence[tuple[Sequence[str], Sequence[Sequence[Any]]]] = ()
    images: Sequence[str] = ()


def write_markdown_report(path: str, title: str, sections: Sequence[Section]) -> str:
    """Writes a Markdown report (``# title`` then each section) to ``path``; returns ``path``."""
    base = os.path.dirname(os.path.abspath(path))
    parts = [f"# {title}"]
    for s in sections:
        parts.append(f"## {s.title}")
        if s.text:
            parts.append(s.text.strip())
        parts += [markdown_table(rows, headers) for headers, rows in s.tables]
        for image in s.images:
            rel = os.path.relpath(os.path.abspath(image), base).replace(os.sep, "/")
            alt = os.path.splitext(os.path.basename(image))[0].replace("_", " ")
            parts.append(f"![{alt}]({rel})")
    os.makedirs(base, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n\n".join(parts) + "\n")
    return path
