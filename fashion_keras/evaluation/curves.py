"""Training curves: loss and accuracy per head per epoch, train and validation, each head's
majority-class baseline (matplotlib, Agg; no display).

- :func:`plot_training_curves` / :func:`training_curves_figure`: from a history dict or a
  Keras ``CSVLogger`` file (:func:`read_history_csv`), epochs numbered as in it (0-based).
- :class:`TrainingCurves`: the callback that training uses; it redraws after every epoch.
- :func:`save_png`: the atomic PNG writer every figure of this package goes through.

Figures are drawn on a bare ``matplotlib.figure.Figure`` with the Agg canvas, so nothing touches
pyplot's global state, and written atomically (a reader never sees a half-written PNG).
:mod:`fashion_keras.evaluation.reports` re-exports the curve functions and the callback.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from fashion_keras.heads import Head

log = logging.getLogger("fashion_keras")

History = Mapping[str, Sequence[float]]


def save_png(fig: Figure, path: str) -> str:
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
    in order of first appearance (``loss``, ``mean_accuracy`` and a head's
    ``<head>_balanced_accuracy`` are not heads)."""
    names: list[str] = []
    for key in history:
        match = _METRIC_KEY.match(key.removeprefix("val_"))
        if match and match["head"] != "mean" and match["head"] not in names:
            names.append(match["head"])
    balanced = {f"{n}_balanced" for n in names}
    return [n for n in names if n not in balanced]


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


#: Train and validation curves differ in colour and in line style (readable in grey too).
_TRAIN = {"color": "#1f77b4", "linestyle": "-", "marker": "o", "markersize": 3, "label": "train"}
_VAL = {"color": "#d62728", "linestyle": "--", "marker": "s", "markersize": 3, "label": "val"}
_BASELINE = {"color": "0.35", "linestyle": ":", "linewidth": 1.6}
_BASELINE_LABEL = "majority-class baseline (always the most frequent training class)"


def _plot_split_pair(ax: Any, x: np.ndarray, history: History, key: str) -> list[str]:
    """Draws ``key`` (train) and ``val_<key>`` over their finite epochs (a line joins epochs
    with a gap between them); returns the splits that have no data (``val`` only when the
    history has validation keys at all)."""
    missing = []
    for prefix, style in (("", _TRAIN), ("val_", _VAL)):
        y = _series(history, prefix + key)
        if y is None:
            if not prefix or any(k.startswith(prefix) for k in history):  # validated at all
                missing.append(style["label"])
            continue
        xs = x[: len(y)]
        keep = np.isfinite(y[: len(xs)]) & np.isfinite(xs)
        ax.plot(xs[keep], y[: len(xs)][keep], **style)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, color="0.9", linewidth=0.6)
    ax.set_xlabel("epoch", fontsize=8, labelpad=1)
    ax.tick_params(labelsize=7)
    return missing


def _mean_accuracy_history(history: History, names: Sequence[str], num_epochs: int) -> History:
    """``history`` with ``[val_]mean_accuracy`` filled in from the heads where it is missing
    (``MeanHeadAccuracy`` logs it; a plain Keras history does not)."""
    out = dict(history)
    for prefix in ("", "val_"):
        if _series(history, f"{prefix}mean_accuracy") is None:
            accs = [_series(history, f"{prefix}{n}_accuracy") for n in names]
            accs = [a for a in accs if a is not None and len(a) == num_epochs]
            if accs:
                with warnings.catch_warnings():  # all-NaN epochs: "Mean of empty slice"
                    warnings.simplefilter("ignore", RuntimeWarning)
                    out[f"{prefix}mean_accuracy"] = list(np.nanmean(accs, axis=0))
    return out


def _draw_row(
    fig: Figure,
    cells: tuple[Any, Any],
    x: np.ndarray,
    history: History,
    keys: tuple[str, str],
    titles: tuple[str, str],
    baseline: tuple[str, float | None],
) -> None:
    """One row of the figure: ``keys[0]`` (a loss) left, ``keys[1]`` (an accuracy) right;
    ``baseline`` (its name and value) is a horizontal line on the accuracy. A title says when a
    split has no data (a head without labelled validation rows logs NaN)."""
    loss_ax = fig.add_subplot(cells[0])
    acc_ax = fig.add_subplot(cells[1], sharex=loss_ax)
    for ax, key, what, title in zip(
        (loss_ax, acc_ax), keys, ("loss", "accuracy"), titles, strict=True
    ):
        missing = _plot_split_pair(ax, x, history, key)
        ax.set_ylabel(what, fontsize=8)
        notes = [f"no {split} data" for split in missing]
        if what == "accuracy" and baseline[1] is not None and math.isfinite(baseline[1]):
            ax.axhline(baseline[1], **_BASELINE)
            notes.insert(0, f"{baseline[0]} {baseline[1]:.2f}")
        ax.set_title(title + (f" ({'; '.join(notes)})" if notes else ""), fontsize=9, loc="left")
    acc_ax.set_ylim(0.0, 1.0)


def plot_training_curves(
    history: History | str | os.PathLike,
    heads: Sequence[Head | str] | None,
    path: str,
    title: str = "training curves",
    baselines: Mapping[str, float] | None = None,
) -> str:
    """A PNG of the training history (:func:`training_curves_figure`). Returns ``path``."""
    return save_png(training_curves_figure(history, heads, title, baselines), path)


def training_curves_figure(
    history: History | str | os.PathLike,
    heads: Sequence[Head | str] | None,
    title: str = "training curves",
    baselines: Mapping[str, float] | None = None,
) -> Figure:
    """The training history, one row per head after an "all heads" row: loss on the left,
    accuracy on the right, train and validation in different colours and line styles, one
    legend above the panels.

    ``history``: ``{key: per-epoch values}`` (Keras ``History.history``) or the path of a
    ``CSVLogger`` file; epochs are numbered by its ``epoch`` column (0-based, as in
    ``history.csv``). ``heads``: head specs or names; None infers them from the
    ``<head>_loss`` / ``<head>_accuracy`` keys. ``baselines``: per head, the accuracy of always
    predicting its most frequent training class, drawn as a horizontal line; the mean-accuracy
    panel shows their mean over the heads with validation data (all heads without any) when
    each of those has one.
    """
    if isinstance(history, (str, os.PathLike)):
        history = read_history_csv(os.fspath(history))
    names = _head_names(history, heads)
    num_epochs = max((len(v) for k, v in history.items() if k != "epoch"), default=0)
    if num_epochs == 0:
        raise ValueError(f"the history has no epochs to plot (keys {sorted(history)})")
    epochs = _series(history, "epoch")
    x = epochs if epochs is not None else np.arange(num_epochs, dtype=float)
    baselines = {k: float(v) for k, v in (baselines or {}).items() if v is not None}
    fig, grid = _curves_layout(1 + len(names))
    # the validation mean covers the heads with validation data: so does the mean baseline
    validated = [n for n in names if _series(history, f"val_{n}_accuracy") is not None]
    mean_of = [baselines.get(n, math.nan) for n in validated or names]
    mean_baseline = float(np.mean(mean_of)) if mean_of and np.isfinite(mean_of).all() else None
    _draw_row(
        fig,
        (grid[0, 0], grid[0, 1]),
        x,
        _mean_accuracy_history(history, names, num_epochs),
        ("loss", "mean_accuracy"),
        ("all heads: total loss", "mean accuracy over heads"),
        ("mean majority baseline", mean_baseline),
    )
    for i, name in enumerate(names):
        loss_key = f"{name}_loss"
        if _series(history, loss_key) is None and len(names) == 1:
            loss_key = "loss"  # a one-output model logs only the total loss
        _draw_row(
            fig,
            (grid[1 + i, 0], grid[1 + i, 1]),
            x,
            history,
            (loss_key, f"{name}_accuracy"),
            (f"{name}: loss", f"{name}: accuracy"),
            ("majority baseline", baselines.get(name)),
        )
    known = any(math.isfinite(baselines.get(n, math.nan)) for n in names)
    _legend_and_title(fig, any(k.startswith("val_") for k in history), known, title)
    return fig


def _curves_layout(rows: int) -> tuple[Figure, Any]:
    """The figure and its ``rows`` x 2 grid, with fixed margins in inches (tight_layout would
    draw the figure once more, twice the time) wide enough for the tick and axis labels."""
    width, row_height, top, bottom = 10.0, 2.3, 1.15, 0.45
    height = rows * row_height + top + bottom
    fig = Figure(figsize=(width, height), dpi=100)
    grid = fig.add_gridspec(
        rows,
        2,
        left=0.75 / width,
        right=1 - 0.2 / width,
        bottom=bottom / height,
        top=1 - top / height,
        wspace=0.22,
        hspace=0.7,
    )
    return fig, grid


def _legend_and_title(fig: Figure, has_val: bool, has_baseline: bool, title: str) -> None:
    """One legend for every panel, above them (outside the curves), under the title."""
    handles = [Line2D([], [], **_TRAIN)]
    if has_val:
        handles.append(Line2D([], [], **_VAL))
    if has_baseline:
        handles.append(Line2D([], [], label=_BASELINE_LABEL, **_BASELINE))
    height = fig.get_figheight()
    fig.legend(
        handles=handles,
        loc="upper center",
        ncol=len(handles),
        fontsize=8,
        frameon=False,
        bbox_to_anchor=(0.5, 1 - 0.5 / height),
    )
    fig.suptitle(title, y=1 - 0.12 / height, va="top")


class TrainingCurves(keras.callbacks.Callback):
    """Redraws :func:`plot_training_curves` at ``path`` after every epoch and at the end.

    The history is the ``CSVLogger`` file at ``csv_path`` when it exists (so a resumed run
    plots its earlier epochs too) merged with this callback's own epoch logs, which win for the
    epochs they cover (CSV rows past the current epoch are stale rows of an older run and are
    dropped); without a file, the logs alone. Put it after the ``CSVLogger`` in the callback
    list. ``baselines`` (per head, the majority-class accuracy) are drawn as horizontal lines
    (see :func:`plot_training_curves`). A plotting error is logged, never raised: it must not
    stop a training run.
    """

    def __init__(
        self,
        path: str,
        heads: Sequence[Head | str] | None = None,
        csv_path: str | None = None,
        title: str = "training curves",
        baselines: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        self.path = path
        self.heads = None if heads is None else tuple(heads)
        self.csv_path = csv_path
        self.title = title
        self.baselines = dict(baselines or {})
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
                plot_training_curves(
                    history, self.heads, self.path, self.title, baselines=self.baselines
                )
        except Exception as e:  # a figure must never stop a training run
            log.warning("could not draw the training curves at %s: %s", self.path, e)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._logs[int(epoch)] = {k: _to_float(v) for k, v in (logs or {}).items()}
        self._draw(last_epoch=int(epoch))

    def on_train_end(self, logs: dict | None = None) -> None:
        last = max(self._logs) if self._logs else None
        self._draw(last_epoch=last)
