"""Model versions as TF Serving manages them: load from ``<base_path>/<version>/``, watch, swap.

A :class:`ModelManager` serves one model name. :meth:`ModelManager.poll` scans the base path for
integer version folders holding a ``saved_model.pb``, picks the versions its policy wants
(``latest`` N, the default being the newest one; ``all``; ``specific`` versions), loads new ones
first (running ``assets.extra/tf_serving_warmup_requests``), and only then unloads the versions
no longer wanted, waiting for their in-flight requests. So a request never sees "no version"
during a swap, and a version that fails to load leaves the previous one serving.

A :class:`Servable` is one loaded version: its signatures (from the SavedModel), input checks
that produce INVALID_ARGUMENT errors naming the input, and optional server-side batching.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, prediction_log_pb2
from tensorflow_serving.config import model_server_config_pb2

from serving.batching import Batcher, BatchingOptions, batch_size_of
from serving.errors import ServingError, invalid, not_found, status_code_from_number

log = logging.getLogger("serving")

DEFAULT_SIGNATURE = "serving_default"
WARMUP_PATH = os.path.join("assets.extra", "tf_serving_warmup_requests")
#: TF Serving replays at most this many warmup records.
MAX_WARMUP_RECORDS = 1000
#: How many examples of a failing request are re-run one by one to name the bad one.
MAX_PROBED_EXAMPLES = 64
#: Longer waits than this mean "no deadline".
MAX_WAIT_S = 365 * 24 * 3600.0


def dtype_name(dtype: tf.DType | int) -> str:
    """``DT_FLOAT``-style name of a dtype (as TF Serving's messages spell it)."""
    enum = dtype if isinstance(dtype, int) else tf.as_dtype(dtype).as_datatype_enum
    try:
        return types_pb2.DataType.Name(enum)
    except ValueError:
        return f"dtype enum {enum}"


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


@dataclasses.dataclass(frozen=True)
class Signature:
    """One callable signature of a loaded version: its name, input specs and output names."""

    name: str
    inputs: Mapping[str, tf.TensorSpec]
    outputs: tuple[str, ...]
    function: object

    def check_inputs(self, arrays: Mapping[str, np.ndarray], where: str) -> int:
        """Validates names, dtypes, shapes and batch sizes; returns the batch size."""
        expected = sorted(self.inputs)
        if not arrays:
            raise invalid(f"{where}: the request has no inputs; signature expects {expected}")
        unknown = sorted(set(arrays) - set(self.inputs))
        if unknown:
            raise invalid(
                f"{where}: input {unknown[0]!r} is not an input of signature {self.name!r}; "
                f"expected inputs: {expected}"
            )
        missing = sorted(set(self.inputs) - set(arrays))
        if missing:
            raise invalid(f"{where}: input {missing[0]!r} is missing; expected inputs: {expected}")
        sizes = {}
        for name, array in arrays.items():
            spec = self.inputs[name]
            shape = list(array.shape)
            if not spec.shape.is_compatible_with(shape):
                raise invalid(
                    f"{where}: input {name!r} has shape {shape}; signature {self.name!r} expects "
                    f"{_shape_str(spec.shape)} (-1: any size)"
                )
            if shape and shape[0] == 0:
                raise invalid(
                    f"{where}: input {name!r} is an empty batch (shape {shape}); send at least "
                    "one example"
                )
            sizes[name] = shape[0] if shape else None
        if len(set(sizes.values())) > 1:
            raise invalid(f"{where}: inputs have different batch sizes: {sizes}")
        size = next(iter(sizes.values()))
        if size is None:
            raise invalid(f"{where}: inputs must have a batch dimension; got scalars")
        return int(size)


def _shape_str(shape: tf.TensorShape) -> str:
    if shape.rank is None:
        return "any shape"
    return str([-1 if d is None else int(d) for d in shape.as_list()])


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
        if name not in self.signatures:
            raise not_found(
                f"{self.where}: serving signature key {name!r} not found; signatures: "
                f"{sorted(self.signatures)}"
            )
        return self.signatures[name]

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
        with self._cond:
            self._in_flight += 1

    def release(self) -> None:
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


def tensor_to_array(name: str, proto, sig: Signature, where: str) -> np.ndarray:
    """A request ``TensorProto`` as a numpy array, checking its dtype against the signature."""
    if name not in sig.inputs:
        raise invalid(
            f"{where}: input {name!r} is not an input of signature {sig.name!r}; expected "
            f"inputs: {sorted(sig.inputs)}"
        )
    expected = sig.inputs[name].dtype
    if proto.dtype != expected.as_datatype_enum:
        raise invalid(
            f"{where}: input {name!r} has dtype {dtype_name(proto.dtype)}; signature "
            f"{sig.name!r} expects {dtype_name(expected)}"
        )
    try:
        return tf.make_ndarray(proto)
    except (TypeError, ValueError) as e:
        raise invalid(f"{where}: input {name!r} is a malformed TensorProto: {e}") from None


def array_to_tensor_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """A numpy array as a ``TensorProto`` (what ``tf.make_tensor_proto`` gives, built faster:
    numbers as ``tensor_content`` bytes, strings as ``string_val``)."""
    proto = tensor_pb2.TensorProto()
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    if array.dtype.kind in "OSU":
        proto.dtype = types_pb2.DT_STRING
        proto.string_val.extend(
            v if isinstance(v, bytes) else str(v).encode("utf-8") for v in array.ravel().tolist()
        )
    else:
        proto.dtype = tf.as_dtype(array.dtype).as_datatype_enum
        proto.tensor_content = np.ascontiguousarray(array).tobytes()
    return proto


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


# -- configuration ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """One served model: name, base path, version policy and version labels."""

    name: str
    base_path: str
    policy: str = "latest"  # "latest" | "all" | "specific"
    num_versions: int = 1
    versions: tuple[int, ...] = ()
    version_labels: Mapping[str, int] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("model config: 'name' is empty")
        if not self.base_path:
            raise ValueError(f"model config {self.name!r}: 'base_path' is empty")
        if self.policy not in ("latest", "all", "specific"):
            raise ValueError(f"model config {self.name!r}: unknown version policy {self.policy!r}")
        if self.policy == "latest" and self.num_versions < 1:
            raise ValueError(
                f"model config {self.name!r}: latest.num_versions = {self.num_versions} must be >= 1"
            )
        if self.policy == "specific" and not self.versions:
            raise ValueError(f"model config {self.name!r}: specific policy lists no versions")

    def select(self, on_disk: Sequence[int]) -> set[int]:
        """The versions this policy wants among those on disk."""
        if self.policy == "all":
            return set(on_disk)
        if self.policy == "specific":
            return set(on_disk) & set(self.versions)
        return set(sorted(on_disk)[-self.num_versions :])


def load_model_server_config(path: str) -> model_server_config_pb2.ModelServerConfig:
    """Parses a ``--model_config_file`` (``ModelServerConfig`` text proto)."""
    config = model_server_config_pb2.ModelServerConfig()
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as e:
        raise ValueError(f"{path}: not a valid ModelServerConfig text proto: {e}") from e
    return config


def model_configs_from_proto(
    config: model_server_config_pb2.ModelServerConfig, source: str = "<config>"
) -> list[ModelConfig]:
    """The model list of a ``ModelServerConfig`` (``model_config_list`` only)."""
    if config.WhichOneof("config") != "model_config_list":
        raise ValueError(f"{source}: only model_config_list is supported")
    result = []
    for i, m in enumerate(config.model_config_list.config):
        where = f"{source}: model_config_list.config[{i}]"
        if m.model_platform not in ("", "tensorflow"):
            raise ValueError(f"{where}: model_platform {m.model_platform!r} is not 'tensorflow'")
        policy = m.model_version_policy.WhichOneof("policy_choice") or "latest"
        try:
            result.append(
                ModelConfig(
                    name=m.name,
                    base_path=m.base_path,
                    policy=policy,
                    num_versions=m.model_version_policy.latest.num_versions or 1,
                    versions=tuple(int(v) for v in m.model_version_policy.specific.versions),
                    version_labels={k: int(v) for k, v in m.version_labels.items()},
                )
            )
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from e
    names = [c.name for c in result]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{source}: model names appear twice: {dupes}")
    if not result:
        raise ValueError(f"{source}: model_config_list has no models")
    return result


# -- the manager --------------------------------------------------------------------------------


@dataclasses.dataclass
class VersionState:
    """A version's state as ``GetModelStatus`` reports it."""

    state: str  # START | LOADING | AVAILABLE | UNLOADING | END
    error_code: grpc.StatusCode = grpc.StatusCode.OK
    error_message: str = ""


class ModelManager:
    """Loads, serves and unloads the versions of one model (see the module docstring)."""

    def __init__(self, config: ModelConfig, batching: BatchingOptions | None = None) -> None:
        self.config = config
        self.batching = batching
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._available: dict[int, Servable] = {}
        self._states: dict[int, VersionState] = {}
        self._failed: dict[int, float] = {}  # version -> saved_model.pb mtime when it failed

    @property
    def name(self) -> str:
        return self.config.name

    def available_versions(self) -> list[int]:
        with self._lock:
            return sorted(self._available)

    def scan(self) -> dict[int, str]:
        """Version folders under the base path that hold a SavedModel: {version: path}."""
        base = self.config.base_path
        found = {}
        if not os.path.isdir(base):
            return found
        for entry in os.listdir(base):
            if re.fullmatch(r"\d+", entry):
                path = os.path.join(base, entry)
                if os.path.isfile(os.path.join(path, "saved_model.pb")):
                    found[int(entry)] = path
        return found

    def poll(self) -> None:
        """One watch step: load newly wanted versions, then unload the unwanted ones."""
        with self._poll_lock:
            on_disk = self.scan()
            wanted = self.config.select(list(on_disk))
            with self._lock:
                loaded = set(self._available)
            for version in sorted(wanted - loaded, reverse=True):
                self._load(version, on_disk[version])
            with self._lock:
                loaded = set(self._available)
            if not loaded & wanted:
                return  # keep serving what we have until a wanted version loads
            for version in sorted(loaded - wanted):
                self._unload(version)

    def _load(self, version: int, path: str) -> None:
        mtime = os.path.getmtime(os.path.join(path, "saved_model.pb"))
        if self._failed.get(version) == mtime:
            return
        with self._lock:
            self._states[version] = VersionState("LOADING")
        log.info("loading %s version %d from %s", self.name, version, path)
        try:
            servable = Servable(self.name, version, path, self.batching)
        except Exception as e:  # noqa: BLE001 - any load failure is reported in the status
            self._failed[version] = mtime
            code = e.code if isinstance(e, ServingError) else grpc.StatusCode.UNKNOWN
            message = f"{self.name} version {version} failed to load from {path}: {e}"
            log.error("%s", message)
            with self._lock:
                self._states[version] = VersionState("END", code, message)
            return
        self._failed.pop(version, None)
        with self._lock:
            self._available[version] = servable
            self._states[version] = VersionState("AVAILABLE")
        log.info("serving %s version %d", self.name, version)

    def _unload(self, version: int) -> None:
        with self._lock:
            servable = self._available.pop(version)
            self._states[version] = VersionState("UNLOADING")
        log.info("unloading %s version %d", self.name, version)
        servable.close()
        with self._lock:
            self._states[version] = VersionState("END")

    def unload_all(self) -> None:
        """Unloads every version (server shutdown)."""
        with self._poll_lock:
            for version in self.available_versions():
                self._unload(version)

    def resolve_version(self, version: int | None, label: str | None) -> int:
        """The version a request means (``None`` + no label: the newest available one)."""
        with self._lock:
            return self._resolve_locked(version, label)

    def _resolve_locked(self, version: int | None, label: str | None) -> int:
        if label:
            labels = dict(self.config.version_labels)
            if label not in labels:
                raise not_found(
                    f"model {self.name!r} has no version label {label!r}; labels: {labels}"
                )
            version = labels[label]
            if version not in self._available:
                raise not_found(
                    f"model {self.name!r}: label {label!r} points to version {version}, which is "
                    f"not available; available versions: {sorted(self._available)}"
                )
            return version
        if version is None:
            if not self._available:
                raise not_found(
                    f"servable not found for request: Latest({self.name}): no version of model "
                    f"{self.name!r} is loaded yet (base path {self.config.base_path})"
                )
            return max(self._available)
        if version not in self._available:
            raise not_found(
                f"servable not found for request: Specific({self.name}, {version}); available "
                f"versions: {sorted(self._available)}"
            )
        return version

    @contextlib.contextmanager
    def acquire(self, version: int | None = None, label: str | None = None) -> Iterator[Servable]:
        """Holds a version for one request; unloading waits until it is released."""
        with self._lock:
            servable = self._available[self._resolve_locked(version, label)]
            servable.acquire()
        try:
            yield servable
        finally:
            servable.release()

    def status(
        self, version: int | None = None, label: str | None = None
    ) -> list[tuple[int, VersionState]]:
        """``(version, state)`` of every version seen (or of the one asked for), ascending."""
        with self._lock:
            if label:
                version = self._resolve_locked(None, label)
            if version is not None:
                if version not in self._states:
                    raise not_found(
                        f"model {self.name!r} has no version {version}; versions seen: "
                        f"{sorted(self._states)}"
                    )
                return [(version, dataclasses.replace(self._states[version]))]
            if not self._states:
                raise not_found(
                    f"model {self.name!r}: no version found under {self.config.base_path} yet"
                )
            return [(v, dataclasses.replace(s)) for v, s in sorted(self._states.items())]
