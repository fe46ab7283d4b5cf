"""Server-side batching: concurrent requests to one model version are merged into one model call.

The knobs are TF Serving's ``BatchingParameters`` (the ``--batching_parameters_file`` text proto,
see ``serving/batching_parameters.txt``): a worker takes the oldest queued request, waits at most
``batch_timeout_micros`` for more requests with the same signature and input shapes until
``max_batch_size`` examples are queued, concatenates them along the batch axis, runs the model
once and hands each request its rows. ``allowed_batch_sizes`` pads a batch up to the next allowed
size (repeating its last row). A request larger than ``max_batch_size`` is split into chunks of at
most ``max_batch_size`` (TF Serving's large-batch splitting), so no model call exceeds it. When
the queue holds ``max_enqueued_batches * max_batch_size`` examples, new requests get UNAVAILABLE.

If a merged batch fails (say one request holds an undecodable image), each request of the batch
is run again on its own, so only the bad request fails.

The ``tensorflow-serving-api`` wheel does not ship ``session_bundle_config.proto``, so
:func:`batching_parameters_class` builds ``tensorflow.serving.BatchingParameters`` from the
official definition (fields 1-7 of ``tensorflow_serving/servables/tensorflow/
session_bundle_config.proto``) in a private descriptor pool and parses the file with protobuf's
own text format parser.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future

import grpc
import numpy as np
from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message,
    message_factory,
    text_format,
    wrappers_pb2,
)

from serving.errors import ServingError

#: ``run(signature, inputs, index_offset)``: runs a signature on a batch. ``index_offset`` is the
#: request's first row (to name a bad example in errors), ``None`` for a merged batch.
RunFn = Callable[[str, Mapping[str, np.ndarray], "int | None"], dict[str, np.ndarray]]

_WRAPPED_FIELDS = (
    ("max_batch_size", 1, "Int64Value"),
    ("batch_timeout_micros", 2, "Int64Value"),
    ("max_enqueued_batches", 3, "Int64Value"),
    ("num_batch_threads", 4, "Int64Value"),
    ("thread_pool_name", 5, "StringValue"),
)


@functools.cache
def batching_parameters_class() -> type[message.Message]:
    """The ``tensorflow.serving.BatchingParameters`` message class (official field numbers)."""
    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    file = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/servables/tensorflow/session_bundle_config.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=[wrappers.name],
    )
    msg = file.message_type.add(name="BatchingParameters")
    F = descriptor_pb2.FieldDescriptorProto
    for name, number, wrapper in _WRAPPED_FIELDS:
        msg.field.add(
            name=name,
            number=number,
            label=F.LABEL_OPTIONAL,
            type=F.TYPE_MESSAGE,
            type_name=f".google.protobuf.{wrapper}",
        )
    msg.field.add(name="allowed_batch_sizes", number=6, label=F.LABEL_REPEATED, type=F.TYPE_INT64)
    msg.field.add(
        name="pad_variable_length_inputs", number=7, label=F.LABEL_OPTIONAL, type=F.TYPE_BOOL
    )
    pool.Add(file)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters")
    )


def parse_batching_parameters(text: str, source: str = "<string>") -> message.Message:
    """Parses a ``BatchingParameters`` text proto; errors name ``source`` and the bad line."""
    params = batching_parameters_class()()
    try:
        text_format.Parse(text, params)
    except text_format.ParseError as e:
        raise ValueError(f"{source}: not a valid BatchingParameters text proto: {e}") from e
    return params


@dataclasses.dataclass(frozen=True)
class BatchingOptions:
    """Batching knobs (the fields of TF Serving's ``BatchingParameters``)."""

    max_batch_size: int = 32
    batch_timeout_micros: int = 2000
    max_enqueued_batches: int = 100
    num_batch_threads: int = 2
    allowed_batch_sizes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed_batch_sizes", tuple(self.allowed_batch_sizes))
        for field in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"batching option {field} = {value!r} must be an integer >= 1")
        if not isinstance(self.batch_timeout_micros, int) or self.batch_timeout_micros < 0:
            raise ValueError(
                f"batching option batch_timeout_micros = {self.batch_timeout_micros!r} "
                "must be an integer >= 0"
            )
        sizes = self.allowed_batch_sizes
        if sizes:
            if any(b <= a for a, b in zip(sizes, sizes[1:], strict=False)) or sizes[0] < 1:
                raise ValueError(
                    f"batching option allowed_batch_sizes = {list(sizes)} must be positive and "
                    "strictly increasing"
                )
            if sizes[-1] != self.max_batch_size:
                raise ValueError(
                    f"batching option allowed_batch_sizes = {list(sizes)}: the last entry must "
                    f"equal max_batch_size = {self.max_batch_size}"
                )

    @classmethod
    def from_proto(cls, params: message.Message, source: str = "<proto>") -> BatchingOptions:
        """Options from a ``BatchingParameters`` message; unset fields keep the defaults."""
        if params.pad_variable_length_inputs:
            raise ValueError(
                f"{source}: pad_variable_length_inputs: true is not supported by the local "
                "server (the exported signatures take fixed-shape examples)"
            )
        kwargs = {}
        for name, _, wrapper in _WRAPPED_FIELDS:
            if wrapper == "Int64Value" and params.HasField(name):
                kwargs[name] = int(getattr(params, name).value)
        if params.allowed_batch_sizes:
            kwargs["allowed_batch_sizes"] = tuple(int(s) for s in params.allowed_batch_sizes)
        try:
            return cls(**kwargs)
        except ValueError as e:
            raise ValueError(f"{source}: {e}") from e

    @classmethod
    def from_file(cls, path: str) -> BatchingOptions:
        """Options from a ``--batching_parameters_file`` (text proto)."""
        with open(path, encoding="utf-8") as f:
            return cls.from_proto(parse_batching_parameters(f.read(), path), path)

    def replace(self, **overrides: int | None) -> BatchingOptions:
        """A copy with the given (non-None) fields replaced."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})

    @property
    def capacity(self) -> int:
        """How many examples the queue holds before it refuses requests."""
        return self.max_enqueued_batches * self.max_batch_size


@dataclasses.dataclass
class _Task:
    signature: str
    inputs: dict[str, np.ndarray]
    size: int
    offset: int
    future: Future
    key: tuple
    enqueued: float = dataclasses.field(default_factory=time.monotonic)


def batch_size_of(inputs: Mapping[str, np.ndarray]) -> int:
    """The common leading dimension of ``inputs`` (validated by the caller)."""
    return int(next(iter(inputs.values())).shape[0])


class Batcher:
    """Merges concurrent requests for one servable into batches run by worker threads."""

    def __init__(self, run: RunFn, options: BatchingOptions, name: str = "batcher") -> None:
        self.options = options
        self.name = name
        self._run = run
        self._cond = threading.Condition()
        self._queues: dict[tuple, collections.deque[_Task]] = {}
        self._queued_rows: collections.Counter[tuple] = collections.Counter()
        self._queued = 0
        self._closed = False
        #: executed batch size (examples, before padding) -> number of model calls
        self.batch_sizes: collections.Counter[int] = collections.Counter()
        self._workers = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(options.num_batch_threads)
        ]
        for worker in self._workers:
            worker.start()

    def submit(self, signature: str, inputs: Mapping[str, np.ndarray]) -> Future:
        """Queues one request; the future resolves to its outputs (or a :class:`ServingError`)."""
        inputs = dict(inputs)
        size = batch_size_of(inputs)
        key = (signature,) + tuple(
            sorted((k, v.dtype.str, tuple(v.shape[1:])) for k, v in inputs.items())
        )
        step = self.options.max_batch_size
        chunks = [(start, min(start + step, size)) for start in range(0, size, step)]
        tasks = [
            _Task(
                signature,
                {k: v[a:b] for k, v in inputs.items()} if len(chunks) > 1 else inputs,
                b - a,
                a,
                Future(),
                key,
            )
            for a, b in chunks
        ]
        with self._cond:
            if self._closed:
                raise ServingError(
                    grpc.StatusCode.UNAVAILABLE, f"{self.name}: the servable is unloading"
                )
            if self._queued + size > self.options.capacity:
                raise ServingError(
                    grpc.StatusCode.UNAVAILABLE,
                    f"{self.name}: the batch queue is full ({self._queued} examples queued, "
                    f"max_enqueued_batches={self.options.max_enqueued_batches} x "
                    f"max_batch_size={self.options.max_batch_size}); retry later",
                )
            for task in tasks:
                self._queues.setdefault(key, collections.deque()).append(task)
                self._queued_rows[key] += task.size
                self._queued += task.size
            self._cond.notify_all()
        if len(tasks) == 1:
            return tasks[0].future
        return _gather([t.future for t in tasks])

    def close(self, timeout: float | None = 60.0) -> None:
        """Stops accepting requests, runs what is queued and joins the workers."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for worker in self._workers:
            if worker is not threading.current_thread():
                worker.join(timeout)

    # -- workers ---------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                batch = self._next_batch_locked()
            if batch is None:
                return
            self._execute(batch)

    def _next_batch_locked(self) -> list[_Task] | None:
        timeout = self.options.batch_timeout_micros / 1e6
        limit = self.options.max_batch_size
        while True:
            while not self._queues and not self._closed:
                self._cond.wait()
            if not self._queues:
                return None
            key = min(self._queues, key=lambda k: self._queues[k][0].enqueued)
            queue = self._queues[key]
            deadline = queue[0].enqueued + timeout
            while not self._closed and self._queued_rows[key] < limit and queue:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            if not queue:
                continue  # another worker took these requests
            batch: list[_Task] = []
            total = 0
            while queue and (not batch or total + queue[0].size <= limit):
                task = queue.popleft()
                batch.append(task)
                total += task.size
            self._queued_rows[key] -= total
            self._queued -= total
            if not queue:
                del self._queues[key]
                del self._queued_rows[key]
            return batch

    def _padded_run(self, signature: str, inputs: dict[str, np.ndarray], offset: int | None):
        size = batch_size_of(inputs)
        target = next((s for s in self.options.allowed_batch_sizes if s >= size), size)
        if target > size:
            inputs = {
                k: np.concatenate([v, np.repeat(v[-1:], target - size, axis=0)])
                for k, v in inputs.items()
            }
        outputs = self._run(signature, inputs, offset)
        with self._cond:
            self.batch_sizes[size] += 1
        if target > size:
            outputs = {k: v[:size] for k, v in outputs.items()}
        return outputs

    def _run_one(self, task: _Task) -> None:
        try:
            task.future.set_result(self._padded_run(task.signature, task.inputs, task.offset))
        except BaseException as e:  # noqa: BLE001 - handed to the waiting request
            task.future.set_exception(e)

    def _execute(self, batch: list[_Task]) -> None:
        if len(batch) == 1:
            self._run_one(batch[0])
            return
        names = list(batch[0].inputs)
        merged = {k: np.concatenate([t.inputs[k] for t in batch]) for k in names}
        total = sum(t.size for t in batch)
        try:
            outputs = self._padded_run(batch[0].signature, merged, None)
            if any(np.ndim(v) == 0 or v.shape[0] != total for v in outputs.values()):
                raise ValueError("an output is not batch-major; cannot split it")
        except BaseException:  # noqa: BLE001 - rerun each request alone; only bad ones fail
            for task in batch:
                self._run_one(task)
            return
        start = 0
        for task in batch:
            end = start + task.size
            task.future.set_result({k: v[start:end] for k, v in outputs.items()})
            start = end


def _gather(futures: list[Future]) -> Future:
    """One future for chunked request: concatenated outputs, or the first chunk's error."""
    combined: Future = Future()
    lock = threading.Lock()
    pending = [len(futures)]

    def _done(_: Future) -> None:
        with lock:
            pending[0] -= 1
            if combined.done():
                return
            for f in futures:
                if f.done() and f.exception() is not None:
                    combined.set_exception(f.exception())
                    return
            if pending[0]:
                return
        parts = [f.result() for f in futures]
        combined.set_result({k: np.concatenate([p[k] for p in parts]) for k in parts[0]})

    for f in futures:
        f.add_done_callback(_done)
    return combined
