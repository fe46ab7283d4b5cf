"""Figures and Markdown for evaluation and training reports (matplotlib, Agg; no display).

- :func:`plot_confusion_matrix`, :func:`plot_top_losses`: error-analysis PNGs.
- :func:`plot_training_curves`, :class:`TrainingCurves`: loss and accuracy per head per epoch,
  from a history dict or a Keras ``CSVLogger`` file; the callback redraws after every epoch.
- :func:`markdown_table`, :class:`Section`, :func:`write_markdown_report`: a Markdown report.

Figures are drawn on a bare ``matplotlib.figure.Figure`` with the Agg canvas, so nothing touches
pyplot's global state, and written atomically (a reader never sees a half-written PNG).
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import os
import re
import textwrap
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from fashion_keras.evaluation.scoring import ConfusedPair, FashionAIScore
from fashion_keras.heads import Head

log = logging.getLogger("fashion_keras")

History = Mapping[str, Sequence[float]]


def _save(fig: Figure, path: str) -> str:
    """Writes ``fig`` as a PNG at ``path`` atomically (temporary file, then rename)."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    FigureCanvasAgg(fig)
    tmp = f"{path}.tmp-{os.getpid()}.png"
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


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
    return _save(fig, path)


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
    return _save(fig, path)


# --- training curves ---------------------------------------------------------------------------


def _to_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan  # CSVLogger writes "NA" for a missing key


def read_history_csv(path: str) -> dict[str, list[float]]:
    """Reads a Keras ``CSVLogger`` file into ``{column: values}`` (``"NA"`` -> NaN).

    With ``append=True`` a re-run appends to the same file: a row for epoch ``e`` replaces
    every earlier row for epochs ``>= e``, so the result is the latest run's history (a resumed
    run continues it, a restarted one replaces it). Rows come out in epoch order.
    """
    rows: list[dict[str, float]] = []
    with open(path, newline="", encoding="utf-8") as f:
        for raw in csv.DictReader(f):
            row = {k: _to_float(v) for k, v in raw.items() if k is not None}
            epoch = row.get("epoch", math.nan)
            if not math.isnan(epoch):
                rows = [r for r in rows if r["epoch"] < epoch]
            rows.append(row)
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    return {k: [r.get(k, math.nan) for r in rows] for k in keys}


_METRIC_KEY = re.compile(r"^(?P<head>.+)_(?P<kind>loss|accuracy)$")


def history_heads(history: History) -> list[str]:
    """Head names found in a history's ``[val_]<head>_loss`` / ``[val_]<head>_accuracy`` keys,
    in order of first appearance (``loss`` and ``mean_accuracy`` are not heads)."""
    names: list[str] = []
    for key in history:
        match = _METRIC_KEY.match(key.removeprefix("val_"))
        if match and match["head"] != "mean" and match["head"] not in names:
            names.append(match["head"])
    return names


def _head_names(history: History, heads: Sequence[Head | str] | None) -> list[str]:
    if heads is None:
        return history_heads(history)
    return [h.name if isinstance(h, Head) else str(h) for h in heads]


def _series(history: History, key: str) -> np.ndarray | None:
    values = history.get(key)
    if values is None:
        return None
    arr = np.array([_to_float(v) for v in values], float)
    return arr if np.isfinite(arr).any() else None


def _plot_pair(ax: Any, x: np.ndarray, history: History, key: str, color: str, what: str) -> bool:
    drew = False
    for prefix, style, split in (("", "-", "train"), ("val_", "--", "val")):
        y = _series(history, prefix + key)
        if y is not None:
            label = f"{split} {what}"
            ax.plot(x[: len(y)], y, style, color=color, marker="o", markersize=3, label=label)
            drew = True
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return drew


def plot_training_curves(
    history: History | str | os.PathLike,
    heads: Sequence[Head | str] | None,
    path: str,
    title: str = "training curves",
) -> str:
    """A PNG of the training history: total loss, mean accuracy over heads, and one panel per
    head with its loss (left axis) and accuracy (right axis), train solid and ``val_`` dashed.

    ``history``: ``{key: per-epoch values}`` (Keras ``History.history``) or the path of a
    ``CSVLogger`` file. ``heads``: head specs or names; None infers them from the
    ``<head>_loss`` / ``<head>_accuracy`` keys. Returns ``path``.
    """
    if isinstance(history, (str, os.PathLike)):
        history = read_history_csv(os.fspath(history))
    names = _head_names(history, heads)
    lengths = [len(v) for k, v in history.items() if k != "epoch"]
    num_epochs = max(lengths, default=0)
    if num_epochs == 0:
        raise ValueError(f"the history has no epochs to plot (keys {sorted(history)})")
    epochs = _series(history, "epoch")
    x = epochs + 1 if epochs is not None else np.arange(1, num_epochs + 1, dtype=float)

    # mean accuracy: MeanHeadAccuracy's entries, else the mean of the heads' accuracies
    mean_hist = dict(history)
    for prefix in ("", "val_"):
        if _series(history, f"{prefix}mean_accuracy") is None:
            accs = [_series(history, f"{prefix}{n}_accuracy") for n in names]
            accs = [a for a in accs if a is not None and len(a) == num_epochs]
            if accs:
                with warnings.catch_warnings():  # all-NaN epochs: "Mean of empty slice"
                    warnings.simplefilter("ignore", RuntimeWarning)
                    mean_hist[f"{prefix}mean_accuracy"] = list(np.nanmean(accs, axis=0))

    panels = 2 + len(names)
    cols = min(3, panels)
    rows = math.ceil(panels / cols)
    width, height = 4.6 * cols, 3.3 * rows + 0.5
    fig = Figure(figsize=(width, height), dpi=100)
    # fixed margins in inches: tight_layout would draw the figure once more (twice the time)
    fig.subplots_adjust(
        left=0.6 / width,
        right=1 - 0.6 / width,
        bottom=0.5 / height,
        top=1 - 0.8 / height,
        wspace=0.55,
        hspace=0.6,
    )
    ax = fig.add_subplot(rows, cols, 1)
    if _plot_pair(ax, x, history, "loss", "C0", "loss"):
        ax.legend(fontsize=7)
    ax.set_title("total loss")
    ax.set_xlabel("epoch")
    ax = fig.add_subplot(rows, cols, 2)
    if _plot_pair(ax, x, mean_hist, "mean_accuracy", "C1", "accuracy"):
        ax.legend(fontsize=7)
    ax.set_ylim(0.0, 1.0)
    ax.set_title("mean accuracy over heads")
    ax.set_xlabel("epoch")
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, 3 + i)
        loss_key = f"{name}_loss"
        if _series(history, loss_key) is None and len(names) == 1:
            loss_key = "loss"  # a one-output model logs only the total loss
        drew_loss = _plot_pair(ax, x, history, loss_key, "C0", "loss")
        ax.set_ylabel("loss", color="C0")
        ax.set_xlabel("epoch")
        acc_ax = ax.twinx()
        drew_acc = _plot_pair(acc_ax, x, history, f"{name}_accuracy", "C1", "accuracy")
        acc_ax.set_ylim(0.0, 1.0)
        acc_ax.set_ylabel("accuracy", color="C1")
        handles = ax.get_legend_handles_labels()[0] + acc_ax.get_legend_handles_labels()[0]
        if handles and i == 0:  # the same styles in every head panel: one legend is enough
            ax.legend(handles=handles, fontsize=7, loc="center right")
        if not (drew_loss or drew_acc):
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(name, fontsize=10)
    fig.suptitle(title)
    return _save(fig, path)


class TrainingCurves(keras.callbacks.Callback):
    """Redraws :func:`plot_training_curves` at ``path`` after every epoch and at the end.

    The history is the ``CSVLogger`` file at ``csv_path`` when it exists (so a resumed run
    plots its earlier epochs too) merged with this callback's own epoch logs, which win for the
    epochs they cover (CSV rows past the current epoch are stale rows of an older run and are
    dropped); without a file, the logs alone. Put it after the ``CSVLogger`` in the callback
    list. A plotting error is logged, never raised: it must not stop a training run.
    """

    def __init__(
        self,
        path: str,
        heads: Sequence[Head | str] | None = None,
        csv_path: str | None = None,
        title: str = "training curves",
    ) -> None:
        super().__init__()
        self.path = path
        self.heads = None if heads is None else tuple(heads)
        self.csv_path = csv_path
        self.title = title
        self._logs: dict[int, dict[str, float]] = {}

    def history(self, last_epoch: int | None = None) -> dict[str, list[float]]:
        """The merged history (CSV rows, then this callback's logs), epochs up to
        ``last_epoch``: later CSV rows are stale rows of an earlier run."""
        rows: dict[int, dict[str, float]] = {}
        if self.csv_path and os.path.isfile(self.csv_path):
            csv_hist = read_history_csv(self.csv_path)
            for i, epoch in enumerate(csv_hist.get("epoch", [])):
                if not math.isnan(epoch):
                    rows[int(epoch)] = {k: v[i] for k, v in csv_hist.items()}
        if last_epoch is not None:
            rows = {e: r for e, r in rows.items() if e <= last_epoch}
        for epoch, logs in self._logs.items():
            rows[epoch] = {"epoch": float(epoch), **logs}
        ordered = [rows[e] for e in sorted(rows)]
        keys: list[str] = []
        for r in ordered:
            keys += [k for k in r if k not in keys]
        return {k: [r.get(k, math.nan) for r in ordered] for k in keys}

    def _draw(self, last_epoch: int | None = None) -> None:
        try:
            history = self.history(last_epoch)
            if any(k != "epoch" and v for k, v in history.items()):
                plot_training_curves(history, self.heads, self.path, self.title)
        except Exception as e:  # a figure must never stop a training run
            log.warning("could not draw the training curves at %s: %s", self.path, e)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._logs[int(epoch)] = {k: _to_float(v) for k, v in (logs or {}).items()}
        self._draw(last_epoch=int(epoch))

    def on_train_end(self, logs: dict | None = None) -> None:
        last = max(self._logs) if self._logs else None
        self._draw(last_epoch=last)


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
