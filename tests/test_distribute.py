"""Distributed and fault-tolerant training on CPU (each job runs in its own process)."""

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from fashion_keras import (
    distribute,
    models,  # noqa: F401  (registers the classes model.keras refers to)
)
from fashion_keras.config import TrainConfig

pytestmark = pytest.mark.slow

JOB = os.path.join(os.path.dirname(__file__), "helpers", "distributed_job.py")
# Safety bound so a hung job cannot hang CI; not a performance assertion.
JOB_LIMIT_S = 900


def tiny_config(small_demo, out, **kw):
    base = dict(
        heads="deepfashion6",
        data_dir=small_demo["manual_dir"],
        tfds_data_dir=small_demo["tfds_dir"],
        backbone="seresnet_tiny",
        image_size=32,
        batch_size=16,
        epochs=2,
        learning_rate=1e-3,
        output_dir=str(out),
        verbose=0,
    )
    base.update(kw)
    return TrainConfig(**base)


def run_job(cfg, tmp_path, name, cpu_devices=1, env=None):
    cfg_path = tmp_path / f"{name}.json"
    cfg_path.write_text(json.dumps(cfg.to_dict()))
    result = tmp_path / f"{name}.result.json"
    proc = subprocess.run(
        [sys.executable, JOB, str(cfg_path), str(result), "--cpu-devices", str(cpu_devices)],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=JOB_LIMIT_S,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(result.read_text()), np.load(str(result) + ".npz")


def test_mirrored_on_two_cpu_devices_matches_default_strategy(small_demo, tmp_path):
    runs = {}
    for strategy in ("default", "mirrored"):
        cfg = tiny_config(small_demo, tmp_path / strategy, strategy=strategy, batch_size=32)
        runs[strategy], _ = run_job(cfg, tmp_path, strategy, cpu_devices=2)
    default, mirrored = runs["default"], runs["mirrored"]
    assert default["replicas"] == 1 and mirrored["replicas"] == 2
    a, b = np.array(default["step_losses"]), np.array(mirrored["step_losses"])
    assert a.shape == b.shape and len(a) == 2 * (96 // 32)
    # Same global batch, data, augmentation and initial weights. BatchNorm statistics are
    # computed per replica (16 vs 32 examples), so the trajectories agree closely, not exactly.
    print("default ", np.round(a, 4), f"{default['seconds']:.1f}s")
    print("mirrored", np.round(b, 4), f"{mirrored['seconds']:.1f}s")
    np.testing.assert_allclose(b, a, rtol=0.1)
    np.testing.assert_allclose(
        mirrored["history"]["val_loss"], default["history"]["val_loss"], rtol=0.1
    )


def test_resume_after_sigkill_mid_epoch(small_demo, tmp_path):
    out = tmp_path / "run"
    argv = [
        sys.executable, "-m", "fashion_keras.train",
        "--data-dir", small_demo["manual_dir"], "--tfds-data-dir", small_demo["tfds_dir"],
        "--backbone", "seresnet_tiny", "--image-size", "32", "--batch-size", "8",
        "--epochs", "3", "--backup-every-steps", "2", "--output-dir", str(out),
        "--verbose", "0",
    ]  # fmt: skip
    steps_per_epoch = 96 // 8
    meta = out / "backup" / "training_metadata.json"
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        # wait (bounded) until a step-level backup exists in the middle of the second epoch
        for _ in range(JOB_LIMIT_S * 10):
            if proc.poll() is not None:
                pytest.fail("training ended before it could be interrupted: " + proc.stderr.read())
            try:
                state = json.loads(meta.read_text())
            except (OSError, ValueError):
                state = {}
            if state.get("epoch") == 1 and state.get("batch", 0) >= 3:
                break
            time.sleep(0.1)
        else:
            pytest.fail("no mid-epoch backup appeared")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "model.keras").exists()
    interrupted_at = json.loads(meta.read_text())

    done = subprocess.run(argv, capture_output=True, text=True, timeout=JOB_LIMIT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(out / "history.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0, 1, 2]
    model = keras.saving.load_model(str(out / "model.keras"))
    iterations = int(model.optimizer.iterations.numpy())
    # The optimizer state (step counter included) came back from the mid-epoch backup: the
    # steps of epoch 1 done before the kill are counted on top of three full epochs, since the
    # interrupted epoch restarts its data from the beginning.
    assert iterations == 3 * steps_per_epoch + interrupted_at["batch"] + 1
    assert not (out / "backup").exists(), "backup is removed once training finishes"
    assert sorted(os.listdir(out / "export")) == ["1"]


def test_deterministic_mode_gives_identical_weights(small_demo, tmp_path):
    cfg = tiny_config(small_demo, tmp_path / "a", deterministic=True, seed=5, epochs=1)
    _, first = run_job(cfg, tmp_path, "a")
    cfg_b = dataclasses.replace(cfg, output_dir=str(tmp_path / "b"))
    _, second = run_job(cfg_b, tmp_path, "b")
    for k in first.files:
        np.testing.assert_array_equal(first[k], second[k])
    cfg_c = dataclasses.replace(cfg, output_dir=str(tmp_path / "c"), seed=6)
    _, other = run_job(cfg_c, tmp_path, "c")
    assert any(not np.array_equal(first[k], other[k]) for k in first.files)


def test_jit_compile_trains(small_demo, tmp_path):
    from fashion_keras.train import train

    cfg = tiny_config(small_demo, tmp_path / "xla", jit_compile=True, epochs=1, steps_per_epoch=2)
    result = train(cfg, export=False)
    assert np.isfinite(result.history["loss"][0])


def test_strategy_choices_and_errors():
    assert isinstance(distribute.get_strategy("default"), tf.distribute.Strategy)
    with pytest.raises(ValueError, match="unknown strategy 'horovod'"):
        distribute.get_strategy("horovod")
    with pytest.raises(ValueError, match="unknown strategy 'multi_worker'"):
        distribute.get_strategy("multi_worker")


def test_atomic_checkpoint_rejects_placeholders(tmp_path):
    with pytest.raises(ValueError, match="fixed file path"):
        distribute.AtomicModelCheckpoint(str(tmp_path / "e{epoch}.keras"))
