"""Distributed and fault-tolerant training on CPU (each job runs in its own process)."""

import csv
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_train_config, xla_flags

from fashion_keras import models  # noqa: F401  (registers the classes model.keras refers to)
from fashion_keras.training import checkpointing, distribute

pytestmark = pytest.mark.slow

JOB = os.path.join(os.path.dirname(os.path.dirname(__file__)), "helpers", "distributed_job.py")
# Safety bound so a hung job cannot hang CI; not a performance assertion.
JOB_LIMIT_S = 900


def tiny_config(small_demo, out, **kw):
    return tiny_train_config(small_demo, out, **kw)


def run_job(cfg, tmp_path, name, cpu_devices=1, env=None, one_device=False, val_examples=None):
    cfg_path = tmp_path / f"{name}.json"
    cfg_path.write_text(json.dumps(cfg.to_dict()))
    result = tmp_path / f"{name}.result.json"
    proc = subprocess.run(
        [sys.executable, JOB, str(cfg_path), str(result), "--cpu-devices", str(cpu_devices)]
        + (["--one-device"] if one_device else [])
        + ([f"--val-examples={val_examples}"] if val_examples else []),
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=JOB_LIMIT_S,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(result.read_text()), np.load(str(result) + ".npz")


def free_ports(n):
    """n TCP ports that were free a moment ago (for the TF_CONFIG cluster on localhost)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def start_workers(cfg, tmp_path, name, num_workers=2, val_examples=None):
    """Starts one job process per worker of a localhost TF_CONFIG cluster.

    Each worker's temporary files go to ``tmp_path / "worker_tmp"`` (TMPDIR), so a test can
    check that the non-chief's scratch output folder is removed.
    """
    cfg_path = tmp_path / f"{name}.json"
    cfg_path.write_text(json.dumps(cfg.to_dict()))
    cluster = {"worker": [f"localhost:{p}" for p in free_ports(num_workers)]}
    (tmp_path / "worker_tmp").mkdir(exist_ok=True)
    workers = []
    for i in range(num_workers):
        tf_config = {"cluster": cluster, "task": {"type": "worker", "index": i}}
        env = {
            **os.environ,
            "TF_CONFIG": json.dumps(tf_config),
            "TMPDIR": str(tmp_path / "worker_tmp"),
        }
        log = tmp_path / f"{name}.w{i}.log"
        with open(log, "w") as out:
            result = tmp_path / f"{name}.w{i}.result.json"
            proc = subprocess.Popen(
                [sys.executable, JOB, str(cfg_path), str(result)]
                + ([f"--val-examples={val_examples}"] if val_examples else []),
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        workers.append((proc, log))
    return workers


def stop_workers(workers):
    for proc, _ in workers:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)


def wait_for_workers(workers):
    """Waits (bounded) for every worker to succeed; a failed worker stops the others, which
    would otherwise wait for it in their collective ops."""
    try:
        for _ in range(JOB_LIMIT_S * 10):
            codes = [proc.poll() for proc, _ in workers]
            failed = [i for i, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                i = failed[0]
                pytest.fail(f"worker {i} exited with {codes[i]}:\n{_tail(workers[i][1])}")
            if all(c == 0 for c in codes):
                return
            time.sleep(0.1)
        pytest.fail("the workers did not finish: " + _tail(workers[0][1]))
    finally:
        stop_workers(workers)


def _tail(log, chars=3000):
    return log.read_text()[-chars:]


def read_results(tmp_path, name, num_workers=2):
    return [
        (
            json.loads((tmp_path / f"{name}.w{i}.result.json").read_text()),
            np.load(str(tmp_path / f"{name}.w{i}.result.json") + ".npz"),
        )
        for i in range(num_workers)
    ]


def assert_same_weights(a, b, **tolerance):
    assert a.files == b.files
    for k in a.files:
        if tolerance:
            np.testing.assert_allclose(a[k], b[k], err_msg=k, **tolerance)
        else:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


#: Global batch 30 over 96 training examples; 31 validation examples: the final validation
#: batch has one row, fewer than the two replicas (see distribute.pad_batches).
REPLICA_RUN = {"batch_size": 30, "val_examples": 31}


def replica_config(small_demo, out, strategy):
    return tiny_config(small_demo, out, strategy=strategy, batch_size=REPLICA_RUN["batch_size"])


@pytest.fixture(scope="module")
def replica_runs(small_demo, tmp_path_factory):
    """The same 2-epoch run with the default strategy and with MirroredStrategy over 2 logical
    CPU devices."""
    tmp = tmp_path_factory.mktemp("replicas")
    runs = {}
    for strategy in ("default", "mirrored"):
        cfg = replica_config(small_demo, tmp / strategy, strategy)
        runs[strategy] = run_job(
            cfg, tmp, strategy, cpu_devices=2, val_examples=REPLICA_RUN["val_examples"]
        )
    return runs


def test_mirrored_on_two_cpu_devices_matches_default_strategy(replica_runs):
    (default, _), (mirrored, _) = replica_runs["default"], replica_runs["mirrored"]
    assert default["replicas"] == 1 and mirrored["replicas"] == 2
    a, b = np.array(default["step_losses"]), np.array(mirrored["step_losses"])
    assert a.shape == b.shape and len(a) == 2 * (96 // 30)
    # Same global batch and initial weights, but not the same batches: under a tf.distribute
    # strategy Keras draws one batch to build the model and trains on the dataset's second
    # (reshuffled, re-augmented) iteration. And BatchNorm batch statistics are per replica (16
    # vs 32 examples). So the trajectories agree closely, not exactly;
    # test_mirrored_matches_one_replica_without_batch_statistics removes both differences.
    print("default ", np.round(a, 4), f"{default['seconds']:.1f}s")
    print("mirrored", np.round(b, 4), f"{mirrored['seconds']:.1f}s")
    np.testing.assert_allclose(b, a, rtol=0.1)
    np.testing.assert_allclose(
        mirrored["history"]["val_loss"], default["history"]["val_loss"], rtol=0.1
    )


@pytest.mark.parametrize("augment_on", ["cpu", "accelerator"])
def test_mirrored_matches_one_replica_without_batch_statistics(small_demo, tmp_path, augment_on):
    # One replica under OneDeviceStrategy sees the same data as MirroredStrategy (see
    # distributed_job.py). Frozen backbone: BatchNorm runs in inference mode. So splitting the
    # batch over two replicas changes nothing but the order of floating-point sums. With the
    # view made in the training step, each replica makes the views of its half of the windows.
    runs = {}
    for strategy in ("default", "mirrored"):
        cfg = tiny_config(
            small_demo, tmp_path / strategy, strategy=strategy, batch_size=32, epochs=1,
            freeze_backbone=True, learning_rate=1e-2, augment_on=augment_on,
        )  # fmt: skip
        one_device = strategy == "default"
        runs[strategy] = run_job(cfg, tmp_path, strategy, cpu_devices=2, one_device=one_device)
    (default, default_weights), (mirrored, mirrored_weights) = runs["default"], runs["mirrored"]
    assert mirrored["replicas"] == 2
    losses = np.array(default["step_losses"])
    assert losses[-1] < losses[0] - 1e-3, "the heads did not train"
    np.testing.assert_allclose(mirrored["step_losses"], losses, rtol=1e-5)
    np.testing.assert_allclose(
        mirrored["history"]["val_loss"], default["history"]["val_loss"], rtol=1e-5
    )
    assert_same_weights(mirrored_weights, default_weights, rtol=1e-4, atol=1e-6)


def test_multi_worker_two_processes(small_demo, replica_runs, tmp_path):
    out = tmp_path / "run"
    cfg = replica_config(small_demo, out, "multi_worker")
    wait_for_workers(start_workers(cfg, tmp_path, "mw", val_examples=REPLICA_RUN["val_examples"]))
    (chief, chief_weights), (worker, worker_weights) = read_results(tmp_path, "mw")
    assert chief["chief"] and not worker["chief"]
    assert chief["replicas"] == worker["replicas"] == 2
    # Both workers end with the same weights, BatchNorm statistics included, and log the same
    # (all-reduced) losses.
    assert_same_weights(chief_weights, worker_weights)
    assert chief["step_losses"] == worker["step_losses"]
    assert chief["history"] == worker["history"]
    # Two workers with one replica each split the global batch like MirroredStrategy over two
    # devices in one process: the same training, up to the order of floating-point sums.
    mirrored, mirrored_weights = replica_runs["mirrored"]
    np.testing.assert_allclose(chief["step_losses"], mirrored["step_losses"], rtol=1e-5)
    np.testing.assert_allclose(
        chief["history"]["val_loss"], mirrored["history"]["val_loss"], rtol=1e-5
    )
    assert_same_weights(chief_weights, mirrored_weights, rtol=1e-4, atol=1e-6)

    # Only the chief wrote to the output folder; the other worker wrote to a temporary
    # folder that is gone.
    assert chief["output_dir"] == str(out)
    assert chief["export_path"] == str(out / "export" / "1")
    assert sorted(os.listdir(out / "export")) == ["1"]
    assert {
        "checkpoints", "config.json", "export", "heads.json", "history.csv", "logs",
        "metrics.json", "model.keras",
    } <= set(os.listdir(out))  # fmt: skip
    assert not [p for p in os.listdir(out) if p.startswith((".", "backup"))]
    assert sorted(os.listdir(out / "checkpoints")) == ["best.json", "best.keras"]
    with open(out / "history.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0, 1]
    assert worker["export_path"].startswith(worker["output_dir"])
    assert not worker["output_dir"].startswith(str(out))
    assert not os.path.exists(worker["output_dir"])
    assert not [p for p in os.listdir(tmp_path / "worker_tmp") if p.startswith("fashion_keras")]
    model = keras.saving.load_model(str(out / "model.keras"))
    saved = model.get_weights()
    assert len(saved) == len(chief_weights.files)
    for i, w in enumerate(saved):
        np.testing.assert_array_equal(w, chief_weights[f"arr_{i}"])


def test_multi_worker_resume_after_sigkill(small_demo, tmp_path):
    out = tmp_path / "run"
    cfg = tiny_config(
        small_demo, out, strategy="multi_worker", batch_size=16, epochs=2, backup_every_steps=2
    )
    steps_per_epoch = 96 // 16
    meta = out / "backup" / "training_metadata.json"
    workers = start_workers(cfg, tmp_path, "first")
    try:
        # wait (bounded) until the chief has backed up the middle of the second epoch
        for _ in range(JOB_LIMIT_S * 10):
            if any(proc.poll() is not None for proc, _ in workers):
                pytest.fail(
                    "training ended before it could be interrupted: " + _tail(workers[0][1])
                )
            try:
                state = json.loads(meta.read_text())
            except (OSError, ValueError):
                state = {}
            if state.get("epoch") == 1 and state.get("batch", 0) >= 1:
                break
            time.sleep(0.1)
        else:
            pytest.fail("no mid-epoch backup appeared")
        for proc, _ in workers:
            proc.send_signal(signal.SIGKILL)
    finally:
        stop_workers(workers)
    assert all(proc.returncode == -signal.SIGKILL for proc, _ in workers)
    assert not (out / "model.keras").exists()
    interrupted_at = json.loads(meta.read_text())

    wait_for_workers(start_workers(cfg, tmp_path, "resumed"))
    (chief, chief_weights), (worker, worker_weights) = read_results(tmp_path, "resumed")
    assert_same_weights(chief_weights, worker_weights)
    with open(out / "history.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0, 1]
    model = keras.saving.load_model(str(out / "model.keras"))
    # Both workers restored the chief's mid-epoch backup (weights, optimizer state and step
    # counter) and ran only the steps left of the interrupted epoch.
    assert 0 < interrupted_at["batch"] < steps_per_epoch
    assert int(model.optimizer.iterations.numpy()) == 2 * steps_per_epoch
    assert len(chief["step_losses"]) == steps_per_epoch - interrupted_at["batch"]
    assert chief["step_losses"] == worker["step_losses"]
    assert not (out / "backup").exists(), "the chief removes the backup once training finishes"
    assert sorted(os.listdir(out / "export")) == ["1"]
    assert not os.path.exists(worker["output_dir"])


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
    # The optimizer state (step counter included) came back from the mid-epoch backup, and
    # only the steps left of the interrupted epoch ran: exactly the requested steps in all.
    assert 0 < interrupted_at["batch"] < steps_per_epoch
    assert iterations == 3 * steps_per_epoch
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
    from fashion_keras.training.trainer import train

    cfg = tiny_config(small_demo, tmp_path / "xla", jit_compile=True, epochs=1, steps_per_epoch=2)
    result = train(cfg, export=False)
    assert np.isfinite(result.history["loss"][0])
    flags = xla_flags(result.model)  # the train step train() ran was XLA-compiled
    assert flags and all(flags), flags


def test_strategy_choices_and_errors():
    assert isinstance(distribute.get_strategy("default"), tf.distribute.Strategy)
    with pytest.raises(ValueError, match="unknown strategy 'horovod'"):
        distribute.get_strategy("horovod")


@pytest.mark.parametrize(
    "tf_config, message",
    [
        (None, "needs the TF_CONFIG environment variable"),
        ("{not json", "TF_CONFIG is not valid JSON"),
        ('{"task": {"type": "worker", "index": 0}}', "TF_CONFIG needs cluster.worker"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}}', "task.type"),
        (
            '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}',
            r"task.index 2 is not an index into cluster.worker \(2 addresses\)",
        ),
    ],
)
def test_multi_worker_needs_a_valid_tf_config(monkeypatch, tf_config, message):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(ValueError, match=message):
        distribute.get_strategy("multi_worker")


def test_cli_reports_a_missing_tf_config(monkeypatch, capsys):
    from fashion_keras.train import main

    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(SystemExit) as e:
        main(["--strategy", "multi_worker"])
    assert e.value.code == 2
    assert "--strategy multi_worker needs the TF_CONFIG environment variable" in (
        capsys.readouterr().err
    )


def test_parse_tf_config_accepts_a_cluster():
    text = json.dumps(
        {"cluster": {"worker": ["h1:2222", "h2:2222"]}, "task": {"type": "worker", "index": 1}}
    )
    assert distribute.parse_tf_config(text)["task"] == {"type": "worker", "index": 1}


def test_multi_worker_refuses_two_phase_fine_tuning(tmp_path):
    data = {"manual_dir": str(tmp_path), "tfds_dir": str(tmp_path)}
    cfg = tiny_config(data, tmp_path, strategy="multi_worker", epochs=3, freeze_epochs=1)
    with pytest.raises(ValueError, match="'freeze_epochs'.*not supported with strategy"):
        cfg.resolve()


def test_pad_batches_gives_every_replica_a_zero_weight_row():
    x = tf.reshape(tf.range(5 * 2, dtype=tf.float32), (5, 2))
    y = {"h": tf.range(5)}
    w = {"h": tf.ones(5)}
    ds = tf.data.Dataset.from_tensor_slices((x, y, w)).batch(3)  # batches of 3 and 2 rows
    batches = list(distribute.pad_batches(ds, 4).as_numpy_iterator())
    assert [len(b[0]) for b in batches] == [4, 4]
    last_x, last_y, last_w = batches[1]
    np.testing.assert_array_equal(last_x, [[6, 7], [8, 9], [8, 9], [8, 9]])
    np.testing.assert_array_equal(last_y["h"], [3, 4, 4, 4])
    np.testing.assert_array_equal(last_w["h"], [1, 1, 0, 0])
    # batches with at least min_rows rows, and one replica: unchanged
    assert [len(b[0]) for b in distribute.pad_batches(ds, 2).as_numpy_iterator()] == [3, 2]
    assert distribute.pad_batches(ds, 1) is ds


def test_batch_size_must_split_over_the_replicas():
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0"])  # one replica: anything goes
    distribute.check_batch_size(31, mirrored)

    class TwoReplicas:
        num_replicas_in_sync = 2

    with pytest.raises(ValueError, match="multiple of the 2 replicas in sync \\(e.g. 30\\)"):
        distribute.check_batch_size(31, TwoReplicas())
    distribute.check_batch_size(32, TwoReplicas())


def test_atomic_checkpoint_rejects_placeholders(tmp_path):
    with pytest.raises(ValueError, match="fixed file path"):
        checkpointing.AtomicModelCheckpoint(str(tmp_path / "e{epoch}.keras"))
