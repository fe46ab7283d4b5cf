"""One loaded SavedModel version: its signatures, warmup, calls and optional batching.

A :class:`Servable` loads ``<base_path>/<version>/``, replays
``assets.extra/tf_serving_warmup_requests`` before it serves, turns TensorFlow runtime errors
into :class:`serving.errors.ServingError` naming the bad example, counts in-flight requests so
unloading can wait for them, and sends requests through a :class:`serving.batching.Batcher`
when batching is on.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Mapping

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, prediction_log_pb2

from serving.batching import Batcher, BatchingOptions, batch_size_of
from serving.errors import ServingError, lookup, status_code_from_number
from serving.signature import DEFAULT_SIGNATURE, Signature
from serving.tensors import tensor_to_array

WARMUP_PATH = os.path.join("assets.extra", "tf_serving_warmup_requests")
#: TF Serving replays at most this many warmup records.
MAX_WARMUP_RECORDS = 1000
#: How many examples of a failing request are re-run one by one to name the bad one.
MAX_PROBED_EXAMPLES = 64
#: Longer waits than this mean "no deadline".
MAX_WAIT_S = 365 * 24 * 3600.0


def clean_tf_message(message: str) -> str:
    """The human part of a TensorFlow runtime error (no node names, stack or op suffix)."""
    lines = []
    for line in message.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(
            ("Graph execution error", "Detected at node", "<stack traces", "[[{{node")
        ):
            continue
        lines.append(re.sub(r"\s*\[Op:[^\]]*\]$", "", stripped))
    return " ".join(lines) or message.strip()


class Servable:
    """One loaded SavedModel version with its signatures, in-flight count and optional batcher."""

    def __init__(
        self,
        model_name: str,
        version: int,
        path: str,
        batching: BatchingOptions | None = None,
    ) -> None:
        self.model_name = model_name
        self.version = int(version)
        self.path = path
        self.where = f"model {model_name!r} version {self.version}"
        self._loaded = tf.saved_model.load(path, tags=["serve"])
        self.signatures: dict[str, Signature] = {}
        for name, fn in self._loaded.signatures.items():
            self.signatures[name] = Signature(
                name=name,
                inputs=dict(fn.structured_input_signature[1]),
                outputs=tuple(sorted(fn.structured_outputs)),
                function=fn,
            )
        self.signature_def_map = _read_signature_defs(path)
        self._cond = threading.Condition()
        self._in_flight = 0
        self.batcher: Batcher | None = None
        self._replay_warmup()
        if batching is not None:
            self.batcher = Batcher(self.run, batching, name=f"{model_name}-v{self.version}")

    # -- requests ---------------------------------------------------------------------------

    def signature(self, name: str) -> Signature:
        """The signature called ``name`` ('' means ``serving_default``), else NOT_FOUND."""
        name = name or DEFAULT_SIGNATURE
        return lookup(
            self.signatures,
            name,
            f"{self.where}: serving signature key {name!r} not found; signatures: "
            f"{sorted(self.signatures)}",
        )

    def run(
        self, signature: str, inputs: Mapping[str, np.ndarray], index_offset: int | None = 0
    ) -> dict[str, np.ndarray]:
        """Calls the signature; TensorFlow errors become :class:`ServingError` naming the example.

        ``index_offset`` is the request's first example (``None``: don't look for the bad one).
        """
        sig = self.signatures[signature]
        try:
            return self._call(sig, inputs)
        except tf.errors.OpError as e:
            code = status_code_from_number(e.error_code)
            detail = clean_tf_message(e.message)
            if index_offset is None:
                raise ServingError(code, f"{self.where}: {detail}") from None
            bad = self._find_bad_example(sig, inputs)
            names = ", ".join(repr(n) for n in sorted(inputs))
            where = f"input {names}"
            if bad is not None:
                index, message = bad
                detail = message or detail
                where = f"example {index_offset + index} of {where}"
            raise ServingError(
                code, f"{self.where}, signature {signature!r}: {where}: {detail}"
            ) from None

    def _call(self, sig: Signature, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        tensors = {k: tf.constant(v, dtype=sig.inputs[k].dtype) for k, v in inputs.items()}
        outputs = sig.function(**tensors)
        return {k: v.numpy() for k, v in outputs.items()}

    def _find_bad_example(
        self, sig: Signature, inputs: Mapping[str, np.ndarray]
    ) -> tuple[int, str | None] | None:
        size = batch_size_of(inputs)
        if size == 1:
            return 0, None
        for i in range(min(size, MAX_PROBED_EXAMPLES)):
            try:
                self._call(sig, {k: v[i : i + 1] for k, v in inputs.items()})
            except tf.errors.OpError as e:
                return i, clean_tf_message(e.message)
        return None

    def predict(
        self, signature: str, inputs: Mapping[str, np.ndarray], timeout: float | None = None
    ) -> dict[str, np.ndarray]:
        """Runs checked inputs, through the batcher when batching is on."""
        if self.batcher is None:
            return self.run(signature, inputs)
        if timeout is not None and timeout > MAX_WAIT_S:
            timeout = None  # no deadline (gRPC reports "none" as a huge time remaining)
        future = self.batcher.submit(signature, inputs)
        try:
            return future.result(timeout)
        except TimeoutError:
            raise ServingError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"{self.where}: the request's deadline passed while it waited for its batch",
            ) from None

    # -- lifecycle --------------------------------------------------------------------------

    def acquire(self) -> None:
        """Counts one more in-flight request (:meth:`close` waits for it)."""
        with self._cond:
            self._in_flight += 1

    def release(self) -> None:
        """Ends one in-flight request."""
        with self._cond:
            self._in_flight -= 1
            self._cond.notify_all()

    def close(self, timeout: float = 120.0) -> None:
        """Waits for in-flight requests (up to ``timeout``), then stops the batcher."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._in_flight and time.monotonic() < deadline:
                self._cond.wait(deadline - time.monotonic())
        if self.batcher is not None:
            self.batcher.close()

    def _replay_warmup(self) -> None:
        path = os.path.join(self.path, WARMUP_PATH)
        if not tf.io.gfile.exists(path):
            return
        for i, record in enumerate(tf.data.TFRecordDataset(path).take(MAX_WARMUP_RECORDS)):
            entry = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            if entry.WhichOneof("log_type") != "predict_log":
                raise ValueError(
                    f"{path}: warmup record {i} is a {entry.WhichOneof('log_type')}; the local "
                    "server replays predict_log records only"
                )
            request = entry.predict_log.request
            try:
                sig = self.signature(request.model_spec.signature_name)
                arrays = {
                    k: tensor_to_array(k, v, sig, self.where) for k, v in request.inputs.items()
                }
                sig.check_inputs(arrays, self.where)
                self.run(sig.name, arrays)
            except ServingError as e:
                raise ValueError(f"{path}: warmup record {i} failed: {e}") from None


def _read_signature_defs(path: str) -> get_model_metadata_pb2.SignatureDefMap:
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    result = get_model_metadata_pb2.SignatureDefMap()
    for meta_graph in saved_model.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            for key, sig in meta_graph.signature_def.items():
                result.signature_def[key].CopyFrom(sig)
            break
    return result
