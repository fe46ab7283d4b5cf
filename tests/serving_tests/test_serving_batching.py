"""The batcher on its own: deterministic merging, splitting, padding, isolation of bad requests."""

import threading
from concurrent.futures import Future

import grpc
import numpy as np
import pytest

from serving.batching import (
    Batcher,
    BatchingOptions,
    batching_parameters_class,
    parse_batching_parameters,
)
from serving.errors import ServingError, invalid


class FakeModel:
    """Doubles its input; records batch sizes; can block the first call; rejects negatives."""

    def __init__(self, block_first: bool = False) -> None:
        self.calls: list[int] = []
        self.offsets: list[int | None] = []
        self.release = threading.Event()
        self.started = threading.Event()
        self.block_first = block_first

    def __call__(self, signature, inputs, offset):
        x = inputs["x"]
        if self.block_first and not self.calls:
            self.started.set()
            assert self.release.wait(60), "test never released the first batch"
        self.calls.append(len(x))
        self.offsets.append(offset)
        if (x < 0).any():
            raise invalid(f"negative input at offset {offset}")
        return {"y": x * 2, "sig": np.array([signature] * len(x), dtype=object)}


def rows(*values):
    return {"x": np.array(values, dtype=np.float32).reshape(-1, 1)}


def results(futures: list[Future]) -> list:
    return [f.result(timeout=60) for f in futures]


def test_queued_requests_are_merged_into_one_call_and_split_back():
    model = FakeModel(block_first=True)
    batcher = Batcher(
        model, BatchingOptions(max_batch_size=4, batch_timeout_micros=0, num_batch_threads=1)
    )
    try:
        first = batcher.submit("s", rows(0))
        assert model.started.wait(60)
        # the worker is busy: these three queue up and fill one batch (1 + 2 + 1 = 4 rows)
        queued = [
            batcher.submit("s", rows(1)),
            batcher.submit("s", rows(2, 3)),
            batcher.submit("s", rows(4)),
        ]
        model.release.set()
        out = results([first] + queued)
    finally:
        batcher.close()
    assert model.calls == [1, 4]
    assert model.offsets == [0, None], "a merged batch does not name one request's rows"
    np.testing.assert_array_equal(out[2]["y"].ravel(), [4, 6])
    np.testing.assert_array_equal(out[3]["y"].ravel(), [8])
    assert dict(batcher.batch_sizes) == {1: 1, 4: 1}


def test_batch_waits_for_the_timeout_or_a_full_batch():
    model = FakeModel()
    # a huge timeout: the batch only runs once max_batch_size rows are queued
    batcher = Batcher(
        model, BatchingOptions(max_batch_size=3, batch_timeout_micros=10**9, num_batch_threads=2)
    )
    try:
        futures = [batcher.submit("s", rows(i)) for i in range(3)]
        out = results(futures)
    finally:
        batcher.close()
    assert model.calls == [3]
    assert [o["y"].item() for o in out] == [0, 2, 4]


def test_different_signatures_or_shapes_are_never_mixed():
    model = FakeModel(block_first=True)
    batcher = Batcher(
        model, BatchingOptions(max_batch_size=8, batch_timeout_micros=0, num_batch_threads=1)
    )
    try:
        first = batcher.submit("a", rows(0))
        assert model.started.wait(60)
        other = [
            batcher.submit("a", rows(1)),
            batcher.submit("b", rows(2)),
            batcher.submit("a", {"x": np.ones((1, 2), np.float32)}),
        ]
        model.release.set()
        out = results([first] + other)
    finally:
        batcher.close()
    assert sorted(model.calls) == [1, 1, 1, 1]
    assert out[2]["sig"].tolist() == ["b"]


def test_a_bad_request_in_a_merged_batch_fails_alone():
    model = FakeModel(block_first=True)
    batcher = Batcher(
        model, BatchingOptions(max_batch_size=4, batch_timeout_micros=0, num_batch_threads=1)
    )
    try:
        first = batcher.submit("s", rows(0))
        assert model.started.wait(60)
        good1, bad, good2 = (
            batcher.submit("s", rows(1)),
            batcher.submit("s", rows(5, -1)),
            batcher.submit("s", rows(3)),
        )
        model.release.set()
        assert first.result(60)["y"].item() == 0
        assert good1.result(60)["y"].item() == 2
        assert good2.result(60)["y"].item() == 6
        with pytest.raises(ServingError) as err:
            bad.result(60)
    finally:
        batcher.close()
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    # merged batch of 4 failed, then each request ran alone with its own offset
    assert model.calls == [1, 4, 1, 2, 1]
    assert model.offsets[2:] == [0, 0, 0]


def test_large_request_is_split_into_max_batch_size_chunks():
    model = FakeModel()
    batcher = Batcher(
        model, BatchingOptions(max_batch_size=4, batch_timeout_micros=0, num_batch_threads=1)
    )
    try:
        out = batcher.submit("s", rows(*range(10))).result(60)
    finally:
        batcher.close()
    assert max(model.calls) <= 4 and sum(model.calls) == 10
    np.testing.assert_array_equal(out["y"].ravel(), np.arange(10) * 2)


def test_error_in_a_chunk_names_the_global_offset():
    model = FakeModel()
    batcher = Batcher(
        model, BatchingOptions(max_batch_size=4, batch_timeout_micros=0, num_batch_threads=1)
    )
    try:
        future = batcher.submit("s", rows(0, 1, 2, 3, 4, -5, 6))
        with pytest.raises(ServingError, match="offset 4"):
            future.result(60)
    finally:
        batcher.close()


def test_allowed_batch_sizes_pad_and_slice():
    model = FakeModel()
    batcher = Batcher(
        model,
        BatchingOptions(
            max_batch_size=8,
            batch_timeout_micros=0,
            num_batch_threads=1,
            allowed_batch_sizes=(4, 8),
        ),
    )
    try:
        out = batcher.submit("s", rows(1, 2, 3)).result(60)
    finally:
        batcher.close()
    assert model.calls == [4], "3 rows are padded up to the allowed size 4"
    np.testing.assert_array_equal(out["y"].ravel(), [2, 4, 6])
    assert dict(batcher.batch_sizes) == {3: 1}


def test_full_queue_answers_unavailable_and_closed_batcher_refuses():
    model = FakeModel(block_first=True)
    batcher = Batcher(
        model,
        BatchingOptions(
            max_batch_size=2, batch_timeout_micros=0, max_enqueued_batches=1, num_batch_threads=1
        ),
    )
    first = batcher.submit("s", rows(0))
    assert model.started.wait(60)
    queued = batcher.submit("s", rows(1, 2))  # fills the queue (capacity 1 x 2 rows)
    with pytest.raises(ServingError) as err:
        batcher.submit("s", rows(3))
    assert err.value.code == grpc.StatusCode.UNAVAILABLE
    assert "queue is full" in err.value.message
    model.release.set()
    assert results([first, queued])[1]["y"].ravel().tolist() == [2, 4]
    batcher.close()
    with pytest.raises(ServingError, match="unloading"):
        batcher.submit("s", rows(1))


def test_close_runs_what_is_queued():
    model = FakeModel()
    batcher = Batcher(
        model, BatchingOptions(max_batch_size=100, batch_timeout_micros=10**9, num_batch_threads=1)
    )
    future = batcher.submit("s", rows(7))
    batcher.close()
    assert future.result(60)["y"].item() == 14


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_batch_size": 0}, "max_batch_size = 0"),
        ({"num_batch_threads": -1}, "num_batch_threads = -1"),
        ({"batch_timeout_micros": -5}, "batch_timeout_micros = -5"),
        ({"max_batch_size": 8, "allowed_batch_sizes": (4, 2, 8)}, "strictly increasing"),
        ({"max_batch_size": 8, "allowed_batch_sizes": (2, 4)}, "must equal max_batch_size = 8"),
    ],
)
def test_bad_options_name_the_field_and_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BatchingOptions(**kwargs)


def test_batching_parameters_text_proto():
    params = parse_batching_parameters(
        "max_batch_size { value: 16 }\nbatch_timeout_micros { value: 500 }\n"
        "num_batch_threads { value: 3 }\nallowed_batch_sizes: 8\nallowed_batch_sizes: 16\n"
    )
    assert params.DESCRIPTOR.full_name == "tensorflow.serving.BatchingParameters"
    options = BatchingOptions.from_proto(params)
    assert options == BatchingOptions(
        max_batch_size=16,
        batch_timeout_micros=500,
        num_batch_threads=3,
        allowed_batch_sizes=(8, 16),
    )
    # official field numbers: the wire format matches TF Serving's message
    fields = {f.name: f.number for f in batching_parameters_class().DESCRIPTOR.fields}
    assert fields == {
        "max_batch_size": 1,
        "batch_timeout_micros": 2,
        "max_enqueued_batches": 3,
        "num_batch_threads": 4,
        "thread_pool_name": 5,
        "allowed_batch_sizes": 6,
        "pad_variable_length_inputs": 7,
    }
    with pytest.raises(ValueError, match="bad.txt.*max_batch_sise"):
        parse_batching_parameters("max_batch_sise { value: 3 }", "bad.txt")
    with pytest.raises(ValueError, match="pad_variable_length_inputs"):
        BatchingOptions.from_proto(parse_batching_parameters("pad_variable_length_inputs: true"))
