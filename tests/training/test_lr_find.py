"""Tests for fashion_keras.lr_find (the learning-rate finder)."""

from __future__ import annotations

import csv
import json
import math

import keras
import numpy as np
import pytest

from fashion_keras import lr_find as lr_find_command
from fashion_keras.training import lr_find as L
from fashion_keras.training.config import TrainConfig


def test_suggestion_is_in_the_longest_descent() -> None:
    lrs = np.geomspace(1e-6, 1.0, 100)
    loss = 2.0 - np.tanh(np.log10(lrs) + 3.0)  # falls from 1e-5 to 1e-1 (steepest at 1e-3)
    loss = loss + np.where(lrs > 0.1, (lrs - 0.1) * 40, 0.0)  # diverges above 0.1
    got = L.suggest_lr(lrs, loss)
    assert 1e-5 < got < lrs[np.argmin(loss)]
    assert got == pytest.approx(3e-4, rel=0.5)  # geometrically halfway along the descent


def test_suggestion_ignores_a_noisy_flat_start() -> None:
    lrs = np.geomspace(1e-7, 10, 120)
    rng = np.random.default_rng(0)
    flat = 1.5 + rng.normal(0, 0.01, 40)
    descent = np.linspace(1.5, 0.5, 50)
    rise = np.linspace(0.5, 5.0, 30)
    got = L.suggest_lr(lrs, np.concatenate([flat, descent, rise]))
    assert lrs[40] <= got <= lrs[90]


def test_suggestion_needs_points() -> None:
    with pytest.raises(ValueError, match="at least 3 finite loss points"):
        L.suggest_lr([1e-3, 1e-2], [1.0, 0.5])
    with pytest.raises(ValueError, match="got 3"):
        L.suggest_lr([1e-3, 1e-2, 1e-1], [1.0, float("nan"), 0.5])


def test_finder_callback_sets_rates_and_stops_on_divergence() -> None:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(learning_rate=1e-6), loss="mse")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 4)).astype("float32"), rng.normal(size=(64, 1)).astype("float32")
    lrs = np.geomspace(1e-4, 1e3, 60)
    finder = L.LRFinder(lrs)
    model.fit(
        x, y, batch_size=16, epochs=len(lrs), steps_per_epoch=1, callbacks=[finder], verbose=0
    )
    assert 10 < len(finder.losses) < len(lrs)  # SGD at 1e3 diverges: stopped early
    np.testing.assert_allclose(finder.tried, lrs[: len(finder.tried)])
    assert all(math.isfinite(v) for v in finder.losses)


def test_bad_sweep_arguments() -> None:
    cfg = TrainConfig(backbone="seresnet_tiny")
    with pytest.raises(ValueError, match="0 < start_lr < end_lr"):
        L.find_lr(cfg, start_lr=1.0, end_lr=0.1)
    with pytest.raises(ValueError, match="num_steps = 5"):
        L.find_lr(cfg, num_steps=5)


@pytest.mark.slow
def test_lr_find_cli_on_demo_data(small_demo, tmp_path, capsys) -> None:
    plot = tmp_path / "sweep" / "lr.png"
    argv = [
        "--data-dir", small_demo["manual_dir"], "--tfds-data-dir", small_demo["tfds_dir"],
        "--backbone", "seresnet_tiny", "--image-size", "32", "--batch-size", "16",
        "--output-dir", str(tmp_path / "run"), "--num-steps", "60", "--start-lr", "1e-6",
        "--end-lr", "10", "--plot", str(plot),
    ]  # fmt: skip
    assert lr_find_command.main(argv) == 0
    printed = capsys.readouterr().out
    assert "suggested learning rate:" in printed
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000
    summary = json.loads((tmp_path / "sweep" / "lr.json").read_text())
    lr = summary["suggested_learning_rate"]
    assert math.isfinite(lr) and 1e-6 <= lr <= 10
    with open(tmp_path / "sweep" / "lr.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == summary["steps_run"] >= 11
    lrs = [float(r["learning_rate"]) for r in rows]
    assert lrs == sorted(lrs) and lrs[0] == pytest.approx(1e-6)
