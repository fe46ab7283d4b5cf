"""Model versions as TF Serving manages them: load from ``<base_path>/<version>/``, watch, swap.

A :class:`ModelManager` serves one model name. :meth:`ModelManager.poll` scans the base path for
integer version folders holding a ``saved_model.pb``, picks the versions its policy wants
(``latest`` N, the default being the newest one; ``all``; ``specific`` versions), loads new ones
first (running ``assets.extra/tf_serving_warmup_requests``), and only then unloads the versions
no longer wanted, waiting for their in-flight requests. So a request never sees "no version"
during a swap, and a version that fails to load leaves the previous one serving.

A version that failed to load (say ``saved_model.pb`` was copied before ``variables/``) is
retried on later polls, after a delay that doubles from ``retry_initial_s`` up to
``retry_max_s``, and at once when its ``saved_model.pb`` changes; its status reports the error
and when it will be retried, until it loads, is no longer wanted, or its folder is removed.

What to serve is a :class:`serving.model_config.ModelConfig`; each loaded version is a
:class:`serving.servable.Servable`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator

import grpc

from serving.batching import BatchingOptions
from serving.errors import ServingError, not_found
from serving.model_config import ModelConfig
from serving.servable import Servable

log = logging.getLogger("serving")


@dataclasses.dataclass
class VersionState:
    """A version's state as ``GetModelStatus`` reports it."""

    state: str  # START | LOADING | AVAILABLE | UNLOADING | END
    error_code: grpc.StatusCode = grpc.StatusCode.OK
    error_message: str = ""


@dataclasses.dataclass(frozen=True)
class _Failure:
    """A version's failed loads: when to try again."""

    mtime: float  # saved_model.pb's mtime at the last attempt (a change retries at once)
    attempts: int  # failed attempts in a row on these files
    retry_at: float  # clock time of the next attempt
    state: VersionState  # what the status reports


class ModelManager:
    """Loads, serves and unloads the versions of one model (see the module docstring).

    Args:
      config: what to serve.
      batching: batch each version's requests with these options (``None``: no batching).
      retry_initial_s, retry_max_s: a failed version is retried after ``retry_initial_s``
        seconds, doubling after each failure up to ``retry_max_s``.
      clock: the time source of the retry delays (``time.monotonic``).
    """

    def __init__(
        self,
        config: ModelConfig,
        batching: BatchingOptions | None = None,
        *,
        retry_initial_s: float = 1.0,
        retry_max_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < retry_initial_s <= retry_max_s:
            raise ValueError(
                f"load retry delays must satisfy 0 < initial ({retry_initial_s}) <= maximum "
                f"({retry_max_s}) seconds"
            )
        self.config = config
        self.batching = batching
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self._clock = clock
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._available: dict[int, Servable] = {}
        self._states: dict[int, VersionState] = {}
        self._failed: dict[int, _Failure] = {}

    @property
    def name(self) -> str:
        """The model name requests use."""
        return self.config.name

    def available_versions(self) -> list[int]:
        """The loaded versions, ascending."""
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
            self._forget_failures(wanted)
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

    def _forget_failures(self, wanted: set[int]) -> None:
        """Stops retrying versions no longer wanted (or gone); their last error stays."""
        for version in sorted(set(self._failed) - wanted):
            failure = self._failed.pop(version)
            with self._lock:
                self._states[version] = failure.state

    def _load(self, version: int, path: str) -> None:
        mtime = os.path.getmtime(os.path.join(path, "saved_model.pb"))
        failure = self._failed.get(version)
        if failure is not None and failure.mtime == mtime and self._clock() < failure.retry_at:
            return
        with self._lock:
            self._states[version] = VersionState("LOADING")
        log.info("loading %s version %d from %s", self.name, version, path)
        try:
            servable = Servable(self.name, version, path, self.batching)
        except Exception as e:  # noqa: BLE001 - any load failure is reported in the status
            attempts = failure.attempts + 1 if failure and failure.mtime == mtime else 1
            self._failed_load(version, path, e, mtime, attempts)
            return
        self._failed.pop(version, None)
        with self._lock:
            self._available[version] = servable
            self._states[version] = VersionState("AVAILABLE")
        log.info("serving %s version %d", self.name, version)

    def _failed_load(
        self, version: int, path: str, error: Exception, mtime: float, attempts: int
    ) -> None:
        code = error.code if isinstance(error, ServingError) else grpc.StatusCode.UNKNOWN
        message = f"{self.name} version {version} failed to load from {path}: {error}"
        delay = min(self.retry_initial_s * 2.0 ** min(attempts - 1, 64), self.retry_max_s)
        retrying = VersionState(
            "END", code, f"{message}; will retry in {delay:g} s (failed attempts: {attempts})"
        )
        self._failed[version] = _Failure(
            mtime, attempts, self._clock() + delay, VersionState("END", code, message)
        )
        log.error("%s", retrying.error_message)
        with self._lock:
            self._states[version] = retrying

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
