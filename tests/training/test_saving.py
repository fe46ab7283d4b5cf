"""What training saves, and that a crash never costs more than the last epoch: the best
checkpoint is the best epoch by the monitored metric; a kill while the backup is written
resumes from the previous backup; ``best.keras`` and ``model.keras`` are never left partial."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import encode

from fashion_keras.heads import get_heads
from fashion_keras.models import build_model
from fashion_keras.training import checkpointing
from fashion_keras.training import metrics as metrics_lib
from fashion_keras.training import trainer as T
from fashion_keras.training.config import TrainConfig

HEADS = get_heads("deepfashion6")
STEPS = 2


class Killed(KeyboardInterrupt):
    """Stands for the process being killed in the middle of a write."""


def _examples(n: int, seed: int) -> tf.data.Dataset:
    rng = np.random.default_rng(seed)
    return tf.data.Dataset.from_tensor_slices(
        {
            "image": [encode(rng.integers(0, 255, (36, 36, 3))) for _ in range(n)],
            "bbox": np.tile(np.float32([0, 0, 1, 1]), (n, 1)),
            "labels": {h.name: rng.integers(0, h.num_classes, n) for h in HEADS},
        }
    )


def _config(tmp_path, epochs: int = 3) -> TrainConfig:
    return TrainConfig(
        heads="deepfashion6",
        backbone="seresnet_tiny",
        image_size=32,
        batch_size=8,
        epochs=epochs,
        steps_per_epoch=STEPS,
        output_dir=str(tmp_path / "run"),
        verbose=0,
    )


def _train(cfg: TrainConfig, callbacks=()) -> T.TrainResult:
    return T.train(
        cfg,
        train_examples=_examples(16, 0),
        val_examples=_examples(8, 1),
        export=False,
        callbacks=list(callbacks),
    )


class Weights(keras.callbacks.Callback):
    """The model's weights at the start of training and after each epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.at_start: list[np.ndarray] = []
        self.epochs: dict[int, list[np.ndarray]] = {}
        self.seen: list[int] = []

    def on_train_begin(self, logs=None):
        self.at_start = [np.array(w) for w in self.model.get_weights()]

    def on_epoch_begin(self, epoch, logs=None):
        self.seen.append(epoch)

    def on_epoch_end(self, epoch, logs=None):
        self.epochs[epoch] = [np.array(w) for w in self.model.get_weights()]


def _same(a, b) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.slow
def test_best_keras_is_the_epoch_with_the_best_validation_metric(tmp_path, monkeypatch):
    """The mean validation accuracy peaks at epoch 1 of 3 (scripted into the logs where the
    callback that computes it writes it): ``best.keras`` holds epoch 1's weights."""
    script = {0: 0.30, 1: 0.90, 2: 0.40}
    original = metrics_lib.MeanHeadAccuracy.on_epoch_end

    def scripted(self, epoch, logs=None):
        original(self, epoch, logs)
        logs[f"val_{metrics_lib.MEAN_ACCURACY}"] = script[epoch]

    monkeypatch.setattr(metrics_lib.MeanHeadAccuracy, "on_epoch_end", scripted)
    weights = Weights()
    result = _train(_config(tmp_path), [weights])
    best = keras.saving.load_model(tmp_path / "run" / "checkpoints" / "best.keras")
    assert _same(best.get_weights(), weights.epochs[1])
    assert not _same(best.get_weights(), weights.epochs[2])
    # what is kept is what was best: model.keras (and the export) hold epoch 1, and say so
    final = keras.saving.load_model(tmp_path / "run" / "model.keras")
    assert _same(final.get_weights(), weights.epochs[1]) and _same(
        result.model.get_weights(), weights.epochs[1]
    )
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["final_weights"] == {
        "weights": "best",
        "epoch": 1,
        "monitor": "val_mean_accuracy",
        "value": 0.9,
    }
    # a fresh process loads it compiled as the README says: import the models, load_model
    load = (
        "import sys, keras, fashion_keras.models\n"
        "m = keras.saving.load_model(sys.argv[1])\n"
        "print(type(m.optimizer).__name__, m.compiled)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", load, str(tmp_path / "run" / "model.keras")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["AdamW", "True"]


@pytest.mark.slow
def test_final_weights_last_keeps_the_last_epoch(tmp_path, monkeypatch):
    script = {0: 0.30, 1: 0.90}
    original = metrics_lib.MeanHeadAccuracy.on_epoch_end

    def scripted(self, epoch, logs=None):
        original(self, epoch, logs)
        logs[f"val_{metrics_lib.MEAN_ACCURACY}"] = script[epoch]

    monkeypatch.setattr(metrics_lib.MeanHeadAccuracy, "on_epoch_end", scripted)
    script[1] = 0.1  # epoch 0 is the best
    weights = Weights()
    _train(_config(tmp_path, epochs=2).replace(final_weights="last"), [weights])
    final = keras.saving.load_model(tmp_path / "run" / "model.keras")
    assert _same(final.get_weights(), weights.epochs[1])
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["final_weights"] == {"weights": "last"}


@pytest.mark.slow
def test_a_kill_while_the_backup_is_written_resumes_from_the_previous_backup(tmp_path, monkeypatch):
    """The process dies while writing the backup after epoch 1, leaving a truncated weights
    file. Re-running the command restores the backup of epoch 0 (kept beside the latest) and
    trains epochs 1 and 2: each epoch once in history.csv, and the optimizer has run exactly
    the steps of three epochs."""
    cfg = _config(tmp_path)
    real_save = keras.Model.save_weights
    saves = []

    def killed_on_second_save(self, filepath, *args, **kwargs):
        saves.append(filepath)
        if len(saves) == 2:
            with open(filepath, "wb") as f:
                f.write(b"\x89HDF\r\n\x1a\n" + bytes(64))  # the start of an HDF5 file
            raise Killed("killed while writing the backup")
        return real_save(self, filepath, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save_weights", killed_on_second_save)
    first = Weights()
    with pytest.raises(Killed):
        _train(cfg, [first])
    monkeypatch.undo()
    assert "backup" in saves[1] and sorted(first.epochs) == [0]  # killed before the rest

    second = Weights()
    result = _train(cfg, [second])
    assert _same(second.at_start, first.epochs[0])  # the previous backup, not the torn one
    assert second.seen == [1, 2]
    assert int(result.model.optimizer.iterations) == 3 * STEPS
    with open(tmp_path / "run" / "history.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0, 1, 2]
    assert not os.path.exists(tmp_path / "run" / "backup")  # done: the backup is removed


def _tiny_model() -> keras.Model:
    model = build_model("seresnet_tiny", HEADS[:2], image_size=32)
    model.compile(loss="categorical_crossentropy")
    return model


def _killed_save(monkeypatch) -> list[str]:
    """``keras.Model.save`` writes half a file and dies; returns the paths it wrote to."""
    written = []

    def save(self, filepath, *args, **kwargs):
        written.append(str(filepath))
        with open(filepath, "wb") as f:
            f.write(b"PK\x03\x04" + bytes(32))  # the start of a zip, never finished
        raise Killed("killed while saving")

    monkeypatch.setattr(keras.Model, "save", save)
    return written


def test_best_keras_is_never_left_partial(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "best.keras"
    checkpoint = checkpointing.AtomicModelCheckpoint(
        str(path), monitor="val_mean_accuracy", mode="max", save_best_only=True
    )
    checkpoint.set_model(_tiny_model())
    checkpoint.on_epoch_end(0, {"val_mean_accuracy": 0.5})
    before = path.read_bytes()
    written = _killed_save(monkeypatch)
    with pytest.raises(Killed):
        checkpoint.on_epoch_end(1, {"val_mean_accuracy": 0.9})
    monkeypatch.undo()
    assert written and str(path) not in written  # the new one went to another name first
    assert path.read_bytes() == before
    keras.saving.load_model(path)
    # nothing half-written left beside it (best.json records the epoch and value it holds)
    assert sorted(os.listdir(path.parent)) == ["best.json", "best.keras"]


def test_model_keras_is_never_left_partial(tmp_path, monkeypatch):
    path = tmp_path / "model.keras"
    model = _tiny_model()
    T.save_atomically(model, str(path))
    before = path.read_bytes()
    written = _killed_save(monkeypatch)
    with pytest.raises(Killed):
        T.save_atomically(model, str(path))
    monkeypatch.undo()
    assert written and str(path) not in written
    assert path.read_bytes() == before
    keras.saving.load_model(path)
    assert os.listdir(tmp_path) == ["model.keras"]


# --- --backup-every-steps: every kill point resumes at the exact step --------------------------

STEPS_PER_EPOCH = 4  # 32 training examples, batch 8


class KillAt(keras.callbacks.Callback):
    """Kills the run after step ``step`` (1-based) of ``epoch``, or at the end of ``epoch``
    (``step=None``); it runs after the built-in callbacks, so the backup of that step is there."""

    def __init__(self, epoch: int, step: int | None = None) -> None:
        super().__init__()
        self.epoch, self.step, self.current = epoch, step, -1

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.step is not None and (self.current, batch + 1) == (self.epoch, self.step):
            raise Killed(f"killed after step {self.step} of epoch {self.epoch}")

    def on_epoch_end(self, epoch, logs=None):
        if self.step is None and epoch == self.epoch:
            raise Killed(f"killed after epoch {epoch}")


class Steps(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def on_train_batch_end(self, batch, logs=None):
        self.count += 1


def _step_run(tmp_path, *callbacks) -> T.TrainResult:
    cfg = _config(tmp_path).replace(steps_per_epoch=None, backup_every_steps=2)
    return T.train(
        cfg,
        train_examples=_examples(32, 0),
        val_examples=_examples(8, 1),
        export=False,
        callbacks=list(callbacks),
    )


def _assert_exact(tmp_path, result: T.TrainResult) -> None:
    """Each epoch once in history.csv, and exactly the requested optimizer steps."""
    with open(tmp_path / "run" / "history.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0, 1, 2]
    assert int(result.model.optimizer.iterations) == 3 * STEPS_PER_EPOCH
    assert not os.path.exists(tmp_path / "run" / "backup")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kill", "steps_after"),
    [
        ((0, None), 2 * STEPS_PER_EPOCH),  # right after an epoch ends: the next one starts
        ((1, 2), 2 + STEPS_PER_EPOCH),  # mid-epoch, just backed up: the 2 steps left of it
        ((1, 3), 2 + STEPS_PER_EPOCH),  # mid-epoch, a step after the backup: that step again
    ],
)
def test_step_backups_resume_at_the_exact_step(tmp_path, kill, steps_after):
    with pytest.raises(Killed):
        _step_run(tmp_path, KillAt(*kill))
    steps = Steps()
    _assert_exact(tmp_path, _step_run(tmp_path, steps))
    assert steps.count == steps_after


@pytest.mark.slow
def test_a_second_kill_after_a_resume_resumes_exactly_too(tmp_path):
    """The backups a resumed run writes record the right epoch and step."""
    with pytest.raises(Killed):
        _step_run(tmp_path, KillAt(1, 3))
    with pytest.raises(Killed):
        _step_run(tmp_path, KillAt(2, 3))  # epoch 2 of the resumed run, backed up at step 2
    meta = tmp_path / "run" / "backup" / "training_metadata.json"
    assert json.loads(meta.read_text()) == {"epoch": 2, "batch": 2}
    steps = Steps()
    _assert_exact(tmp_path, _step_run(tmp_path, steps))
    assert steps.count == 2


@pytest.mark.slow
def test_a_kill_while_a_step_backup_is_written_resumes_from_the_previous_one(tmp_path, monkeypatch):
    """Backups at steps 2 and 4 (= the end) of each epoch; the one at step 2 of epoch 1 is
    torn: the rerun falls back to the end of epoch 0 and runs epochs 1 and 2 whole."""
    real_save = keras.Model.save_weights
    saves = []

    def torn_third_save(self, filepath, *args, **kwargs):
        saves.append(filepath)
        if len(saves) == 3:
            with open(filepath, "wb") as f:
                f.write(b"\x89HDF\r\n\x1a\n" + bytes(64))
            raise Killed("killed while writing the backup")
        return real_save(self, filepath, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save_weights", torn_third_save)
    with pytest.raises(Killed):
        _step_run(tmp_path)
    monkeypatch.undo()
    steps = Steps()
    _assert_exact(tmp_path, _step_run(tmp_path, steps))
    assert steps.count == 2 * STEPS_PER_EPOCH
