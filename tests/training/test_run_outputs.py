"""What a training run tells its user: the validation table with baselines and warnings, the
speed and time estimate with advice, the verbosity, and what re-running a finished run does."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from fashion_keras.evaluation import scoring
from fashion_keras.heads import Head
from fashion_keras.training import progress, run_folder, trainer, validation
from fashion_keras.training.config import FIELD_SECTION, TrainConfig


def _collapsed_report():
    """The issue's shop: 268 v_neck / 58 halter in train; in val every halter is called
    v_neck."""
    labels = np.array([0] * 51 + [1] * 21)
    probs = np.tile([0.8, 0.2], (72, 1))
    summary = scoring.head_summary(probs, labels, ("v_neck", "halter"), np.array([268, 58]))
    return {"neckline": summary}


def test_the_table_shows_the_majority_baseline_and_says_when_a_head_learnt_nothing():
    report = _collapsed_report()
    m = report["neckline"]
    assert m["accuracy"] == pytest.approx(51 / 72) and m["majority_baseline"] == m["accuracy"]
    assert m["balanced_accuracy"] == pytest.approx(0.5) and m["beats_baseline"] is False
    heads = (Head("neckline", ("v_neck", "halter")), Head("fit", ("loose", "tight")))
    table = validation.format_table(report, heads)
    assert "not validated (no labelled validation rows): fit" in table
    mean_row = table.split("mean over heads")[1].split()[:3]
    assert mean_row == ["0.708", "0.708", "0.500"]  # accuracy, baseline, balanced accuracy
    assert "majority" in table and "0.708" in table and "v_neck" in table
    assert "neckline: accuracy 0.708 does not beat the majority baseline 0.708" in table
    assert "neckline: never right on halter (recall 0)" in table


def test_the_report_goes_to_tensorboard(tmp_path):
    validation.write_tensorboard(_collapsed_report(), str(tmp_path), step=3)
    assert os.listdir(tmp_path / "summary")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_throughput_estimates_the_epoch_and_advises_on_a_slow_cpu(caplog):
    clock = FakeClock()
    cb = progress.Throughput(32, 1000, 30, advice="try --preset demo", clock=clock)
    caplog.set_level(logging.INFO, logger="fashion_keras")
    cb.on_epoch_begin(0)
    for step in range(progress.WARMUP_STEPS + progress.ESTIMATE_STEPS):
        clock.now += 2.0  # 2 s a step: 16 images/s, 2000 s an epoch
        cb.on_train_batch_end(step)
    assert cb.estimate == pytest.approx(2000.0)
    assert "about 33 min per epoch (16.0 images/s), 16.7 h for 30 epochs" in caplog.text
    assert "try --preset demo" in caplog.text
    cb.on_epoch_end(0)
    assert "epoch 0: 16.0 images/s (13 steps in 26 s)" in caplog.text


def test_a_fast_epoch_gets_no_advice(caplog):
    clock = FakeClock()
    cb = progress.Throughput(32, 10, 2, advice="try --preset demo", clock=clock)
    caplog.set_level(logging.INFO, logger="fashion_keras")
    for step in range(progress.WARMUP_STEPS + progress.ESTIMATE_STEPS):
        clock.now += 0.1
        cb.on_train_batch_end(step)
    assert "per epoch" in caplog.text and "try --preset demo" not in caplog.text


def test_cpu_advice_names_the_small_settings():
    text = progress.cpu_advice("seresnet50", 224, pretrained=False)
    assert "--preset demo" in text and "--weights imagenet" in text and "--image-size" in text
    assert "--weights" not in progress.cpu_advice("seresnet50", 96, pretrained=True)


def test_verbosity_is_one_line_per_epoch_off_a_terminal(monkeypatch):
    cfg = TrainConfig(output_dir="x").resolve()
    monkeypatch.setattr("sys.stdout.isatty", lambda: False)
    assert trainer._verbosity(cfg) == 2
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    assert trainer._verbosity(cfg) == 1
    assert trainer._verbosity(cfg.replace(verbose=0)) == 0


def test_help_shows_every_default(capsys):
    from fashion_keras import train as cli

    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert text.count("(default:") >= len(FIELD_SECTION)
    assert "(default: seresnet_tiny (demo) / seresnet50 (full) by --preset)" in text


def _finished_run(tmp_path) -> TrainConfig:
    out = tmp_path / "run"
    (out / "export" / "1").mkdir(parents=True)
    (out / "checkpoints").mkdir()
    for name in ("model.keras", "history.csv", "metrics.json", "config.json"):
        (out / name).write_text("x")
    return TrainConfig(output_dir=str(out))


def test_a_finished_run_is_refused_and_overwrite_clears_it(tmp_path):
    cfg = _finished_run(tmp_path)
    with pytest.raises(run_folder.FinishedRunError, match=r"holds a finished run \(model.keras, "):
        run_folder.prepare(cfg)
    assert (tmp_path / "run" / "history.csv").exists()  # nothing touched
    run_folder.prepare(cfg.replace(overwrite=True))
    assert os.listdir(tmp_path / "run") == []


def test_an_interrupted_run_is_not_finished(tmp_path):
    cfg = _finished_run(tmp_path)
    (tmp_path / "run" / "backup").mkdir()
    run_folder.prepare(cfg)  # resumes: no error, nothing removed
    assert (tmp_path / "run" / "history.csv").exists()
