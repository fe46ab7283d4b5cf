"""Load tests: hot swap under traffic, a bounded soak, end-to-end batching, version handling.

All traffic is loopback, every loop has a fixed request budget, every wait is bounded.
"""

import os
import shutil
import threading

import grpc
import numpy as np
import pytest
import tensorflow as tf
from serving_helpers import add_version, photo, reference, tiny_export, wait_until
from tensorflow_serving.apis import get_model_status_pb2, predict_pb2, prediction_log_pb2

from serving.batching import BatchingOptions
from serving.client import ClientError, GrpcClient, RestClient
from serving.manager import ModelManager
from serving.model_config import ModelConfig
from serving.server import ModelServer

State = get_model_status_pb2.ModelVersionStatus.State


@pytest.fixture(scope="module")
def version_dir(tmp_path_factory):
    """The version folder of the tiny export (made once per module)."""
    return tiny_export(tmp_path_factory)[1]


@pytest.mark.parametrize(
    "batching",
    [pytest.param(True, id="batching"), pytest.param(False, id="direct", marks=pytest.mark.slow)],
)
def test_hot_swap_drops_no_request(version_dir, tmp_path, batching):
    base = str(tmp_path / "base")
    add_version(version_dir, base, 1)
    options = BatchingOptions(max_batch_size=8, batch_timeout_micros=1000) if batching else None
    server = ModelServer(
        [ModelConfig("fashion", base)],
        grpc_port=0,
        rest_port=None,
        batching=options,
        poll_wait_seconds=0.1,
    ).start()
    image = photo(5)
    seen: list[list[int]] = [[] for _ in range(4)]
    failures: list[str] = []
    after_swap = 25  # each client keeps going for this many answers from version 2
    budget = 5000  # hard cap on requests per client

    def client_loop(i):
        with GrpcClient(f"127.0.0.1:{server.grpc_port}", timeout=60) as client:
            for _ in range(budget):
                try:
                    seen[i].append(client.classify([image])[0].model_version)
                except ClientError as e:
                    failures.append(str(e))
                if seen[i].count(2) >= after_swap:
                    return

    try:
        threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        wait_until(lambda: all(s.count(1) >= 5 for s in seen), "traffic on version 1")
        add_version(version_dir, base, 2)  # dropped in while the clients loop
        for t in threads:
            t.join(180)
        assert not any(t.is_alive() for t in threads)
        status = server.core.managers["fashion"].status()
    finally:
        server.stop()
    assert failures == []
    for versions in seen:
        assert versions.count(2) == after_swap, "every client ends on version 2"
        first_two = versions.index(2)
        assert set(versions[:first_two]) == {1} and set(versions[first_two:]) == {2}
    assert [(v, s.state) for v, s in status] == [(1, "END"), (2, "AVAILABLE")]


def test_bounded_soak_8_clients_zero_errors(version_dir, tmp_path):
    base = str(tmp_path / "base")
    add_version(version_dir, base, 1)
    server = ModelServer(
        [ModelConfig("fashion", base)],
        grpc_port=0,
        rest_port=0,
        batching=BatchingOptions(max_batch_size=8, batch_timeout_micros=2000),
        poll_wait_seconds=0,
    ).start()
    images = [photo(100 + i) for i in range(8)]
    ref = reference(version_dir, images)
    requests_per_client = 25
    errors: list[str] = []
    mismatches: list[tuple[int, int]] = []
    done = [0] * 8

    def client_loop(i):
        # clients 0-5 speak gRPC, 6-7 REST; each sends its own photo so rows can't mix
        if i < 6:
            client = GrpcClient(f"127.0.0.1:{server.grpc_port}", timeout=60)
        else:
            client = RestClient(f"http://127.0.0.1:{server.rest_port}", timeout=60)
        try:
            for n in range(requests_per_client):
                try:
                    [pred] = client.classify([images[i]], top_k=1)
                except ClientError as e:
                    errors.append(f"client {i} request {n}: {e}")
                    continue
                expected = ref["texture_probs"][i].max()
                if abs(pred.heads["texture"][0].probability - expected) > 1e-5:
                    mismatches.append((i, n))
                done[i] += 1
        finally:
            if isinstance(client, GrpcClient):
                client.close()

    try:
        threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert not any(t.is_alive() for t in threads)
        batches = server.core.managers["fashion"]._available[1].batcher.batch_sizes
    finally:
        server.stop()
    assert errors == []
    assert mismatches == []
    assert done == [requests_per_client] * 8
    assert sum(size * n for size, n in batches.items()) == 8 * requests_per_client


def test_server_side_batching_merges_concurrent_requests(version_dir, tmp_path):
    """max_batch_size 4 with an hour-long timeout: 4 concurrent requests form one model call."""
    base = str(tmp_path / "base")
    add_version(version_dir, base, 1)
    server = ModelServer(
        [ModelConfig("fashion", base)],
        grpc_port=0,
        rest_port=None,
        batching=BatchingOptions(max_batch_size=4, batch_timeout_micros=3_600_000_000),
        poll_wait_seconds=0,
    ).start()
    images = [photo(200 + i) for i in range(4)]
    results: dict[int, object] = {}

    def call(i):
        with GrpcClient(f"127.0.0.1:{server.grpc_port}", timeout=120) as client:
            results[i] = client.classify([images[i]], top_k=1)[0]

    try:
        threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(150)
        batches = dict(server.core.managers["fashion"]._available[1].batcher.batch_sizes)
    finally:
        server.stop()
    assert batches == {4: 1}
    ref = reference(version_dir, images)
    for i in range(4):
        np.testing.assert_allclose(
            results[i].heads["sleeve"][0].probability, ref["sleeve_probs"][i].max(), atol=1e-5
        )


def test_version_policy_labels_failed_load_and_removal(version_dir, tmp_path):
    base = str(tmp_path / "base")
    for v in (1, 2):
        add_version(version_dir, base, v)
    manager = ModelManager(
        ModelConfig(
            "fashion",
            base,
            policy="specific",
            versions=(1, 2, 3),
            version_labels={"stable": 1, "canary": 2},
        )
    )
    try:
        manager.poll()
        assert manager.available_versions() == [1, 2]
        assert manager.resolve_version(None, None) == 2
        assert manager.resolve_version(None, "stable") == 1
        assert manager.resolve_version(None, "canary") == 2
        # a broken version 3 fails to load, is reported, and the others keep serving
        broken = os.path.join(base, "3")
        os.makedirs(broken)
        with open(os.path.join(broken, "saved_model.pb"), "wb") as f:
            f.write(b"not a SavedModel")
        manager.poll()
        assert manager.available_versions() == [1, 2]
        [(_, state)] = manager.status(3)
        assert state.state == "END" and state.error_code != grpc.StatusCode.OK
        assert "version 3 failed to load" in state.error_message
        manager.poll()  # not retried before its backoff has passed
        assert manager.status(3)[0][1].error_message == state.error_message
        # removing a folder unloads its version
        shutil.rmtree(broken)
        shutil.rmtree(os.path.join(base, "2"))
        manager.poll()
        assert manager.available_versions() == [1]
        assert manager.status(2)[0][1].state == "END"
    finally:
        manager.unload_all()


def test_failed_version_is_retried_with_a_doubling_capped_backoff(tmp_path):
    base = str(tmp_path / "base")
    broken = os.path.join(base, "3")
    os.makedirs(broken)
    with open(os.path.join(broken, "saved_model.pb"), "wb") as f:
        f.write(b"not a SavedModel")
    now = [100.0]
    manager = ModelManager(
        ModelConfig("fashion", base), retry_initial_s=0.5, retry_max_s=2.0, clock=lambda: now[0]
    )

    def message():
        [(_, state)] = manager.status(3)
        assert state.state == "END" and state.error_code != grpc.StatusCode.OK
        return state.error_message

    manager.poll()
    assert "failed to load" in message() and "will retry in 0.5 s (failed attempts: 1)" in message()
    manager.poll()  # too early: no new attempt
    assert "(failed attempts: 1)" in message()
    for step, (wait, expected) in enumerate([(0.5, 1), (1, 2), (2, 2), (2, 2)], start=2):
        now[0] += wait
        manager.poll()
        assert f"will retry in {expected} s (failed attempts: {step})" in message()
    os.utime(os.path.join(broken, "saved_model.pb"), (1, 1))  # rewritten: retried at once
    manager.poll()
    assert "will retry in 0.5 s (failed attempts: 1)" in message()
    shutil.rmtree(broken)
    manager.poll()  # gone: no more retries, the last error stays reported
    assert "failed to load" in message() and "will retry" not in message()


def test_version_copied_in_two_steps_loads_once_its_variables_arrive(version_dir, tmp_path):
    """A plain ``cp -r``: saved_model.pb lands before variables/, and nothing touches it again."""
    base = tmp_path / "base"
    target = base / "1"
    target.mkdir(parents=True)
    shutil.copy(os.path.join(version_dir, "saved_model.pb"), target)
    with ModelServer(
        [ModelConfig("fashion", str(base))], grpc_port=0, rest_port=0, poll_wait_seconds=0.1
    ) as server:
        with GrpcClient(f"127.0.0.1:{server.grpc_port}", timeout=60) as client:
            failed = client.status().model_version_status[0]
            rest = RestClient(f"http://127.0.0.1:{server.rest_port}", timeout=60)
            failed_rest = rest.status()["model_version_status"][0]
            for entry in sorted(os.listdir(version_dir)):  # the rest of the copy, later
                source = os.path.join(version_dir, entry)
                if os.path.isdir(source):
                    shutil.copytree(source, target / entry)
                elif entry != "saved_model.pb":
                    shutil.copy(source, target)
            manager = server.managers["fashion"]
            wait_until(lambda: manager.available_versions() == [1], "version 1 to load")
            assert client.classify([photo(2)])[0].model_version == 1
            [loaded] = client.status().model_version_status
    assert failed.state == State.END and failed.status.error_code != 0
    assert "failed to load" in failed.status.error_message
    assert "will retry in" in failed.status.error_message
    assert (
        failed_rest["state"] == "END" and "will retry in" in failed_rest["status"]["error_message"]
    )
    assert loaded.state == State.AVAILABLE and loaded.status.error_message == ""


def test_latest_policy_falls_back_when_the_newest_version_is_removed(version_dir, tmp_path):
    base = str(tmp_path / "base")
    for v in (4, 7):
        add_version(version_dir, base, v)
    manager = ModelManager(ModelConfig("fashion", base, num_versions=1))
    try:
        manager.poll()
        assert manager.available_versions() == [7]
        assert [v for v, _ in manager.status()] == [7], "version 4 is not wanted"
        shutil.rmtree(os.path.join(base, "7"))
        manager.poll()  # like TF Serving: the newest remaining version is loaded, 7 unloaded
        assert manager.available_versions() == [4]
        assert [(v, s.state) for v, s in manager.status()] == [(4, "AVAILABLE"), (7, "END")]
    finally:
        manager.unload_all()


def test_failed_new_version_keeps_the_old_one_serving(version_dir, tmp_path):
    base = str(tmp_path / "base")
    add_version(version_dir, base, 1)
    with ModelServer(
        [ModelConfig("fashion", base)], grpc_port=0, rest_port=None, poll_wait_seconds=0
    ) as server:
        staging = os.path.join(base, ".staging")
        os.makedirs(staging)
        with open(os.path.join(staging, "saved_model.pb"), "wb") as f:
            f.write(b"\x00garbage")
        os.rename(staging, os.path.join(base, "2"))
        server.poll()
        with GrpcClient(f"127.0.0.1:{server.grpc_port}", timeout=60) as client:
            status = client.status()
            assert client.classify([photo(1)])[0].model_version == 1
    states = {s.version: s for s in status.model_version_status}
    assert states[1].state == State.AVAILABLE
    assert states[2].state == State.END and states[2].status.error_code != 0
    assert "failed to load" in states[2].status.error_message


def test_warmup_records_are_replayed_on_load(version_dir, tmp_path):
    """A version whose warmup request is broken does not load (like TF Serving)."""
    base = str(tmp_path / "base")
    path = add_version(version_dir, base, 1)
    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = "serving_default"
    request.inputs["nope"].CopyFrom(tf.make_tensor_proto([b"x"]))
    with tf.io.TFRecordWriter(
        os.path.join(path, "assets.extra", "tf_serving_warmup_requests")
    ) as w:
        w.write(
            prediction_log_pb2.PredictionLog(predict_log={"request": request}).SerializeToString()
        )
    manager = ModelManager(ModelConfig("fashion", base))
    manager.poll()
    assert manager.available_versions() == []
    [(_, state)] = manager.status()
    assert "warmup record 0 failed" in state.error_message
    assert "'nope'" in state.error_message
