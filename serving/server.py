"""``python -m serving.server``: a local model server speaking TF Serving's gRPC and REST APIs.

``python -m serving.server --model-base-path runs/demo/export`` serves the newest SavedModel
version under the folder, like ``tensorflow_model_server --model_base_path=...``:

- gRPC (default ``127.0.0.1:8500``): ``tensorflow.serving.PredictionService`` (``Predict``,
  ``GetModelMetadata``) and ``tensorflow.serving.ModelService`` (``GetModelStatus``); the other
  methods answer UNIMPLEMENTED (:mod:`serving.grpc_api`).
- REST (default ``127.0.0.1:8501``): ``POST /v1/models/NAME[/versions/N|/labels/L]:predict``,
  ``GET /v1/models/NAME[/versions/N|/labels/L]`` (status) and ``GET .../metadata``
  (:mod:`serving.rest_api`).

``--port 0`` lets the OS pick both ports (REST too, unless ``--rest-api-port`` is given);
``--port-file PATH`` writes them as JSON once serving and removes the file on exit
(:mod:`serving.ports`; ``python -m serving.client --port-file PATH`` reads it).

:class:`ModelServer` composes them over one :class:`serving.core.ServingCore`. Versions are
loaded from ``DIR/<version>/`` and the folder is watched (see :mod:`serving.manager`);
``--enable-batching`` merges concurrent requests (see :mod:`serving.batching`). The server binds
127.0.0.1 unless told otherwise, refuses gRPC messages and REST bodies over
``--max-request-bytes`` (RESOURCE_EXHAUSTED / HTTP 413), requests of more than
``--max-examples-per-request`` examples and encoded images over ``--max-image-pixels`` (checked
before anything is allocated or decoded, see :mod:`serving.limits`), closes REST connections
silent for ``--rest-read-timeout-seconds``, and answers bad requests with INVALID_ARGUMENT /
NOT_FOUND (HTTP 400 / 404) and a message naming the input, field and value, then keeps serving.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from http.server import ThreadingHTTPServer

import grpc

from serving import DEFAULT_GRPC_PORT, DEFAULT_MODEL_NAME, DEFAULT_REST_PORT, hostport
from serving.batching import BatchingOptions
from serving.core import ServingCore
from serving.grpc_api import create_grpc_server
from serving.limits import (
    DEFAULT_MAX_EXAMPLES_PER_REQUEST,
    DEFAULT_MAX_IMAGE_PIXELS,
    RequestLimits,
)
from serving.manager import ModelManager
from serving.model_config import ModelConfig, load_model_server_config, model_configs_from_proto
from serving.ports import PortFile
from serving.rest_api import DEFAULT_READ_TIMEOUT_S, create_http_server

log = logging.getLogger("serving")

DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024
#: A version that failed to load is retried after the poll interval, doubling up to this.
DEFAULT_LOAD_RETRY_MAX_INTERVAL_S = 60.0


class ModelServer:
    """gRPC + REST serving of one or more models; :meth:`start`, then :meth:`stop`.

    Args:
      models: what to serve (see :class:`serving.model_config.ModelConfig`).
      host: the address to bind; loopback by default (the server has no authentication).
      grpc_port, rest_port: 0 lets the OS choose a free port (read :attr:`grpc_port` /
        :attr:`rest_port` after :meth:`start`); ``rest_port=None`` disables REST.
      batching: merge concurrent requests with these options (``None``: no batching).
      poll_wait_seconds: how often the base paths are re-scanned (0: scan once, at start).
      max_request_bytes: largest gRPC message / REST body accepted.
      grpc_max_threads: gRPC handler threads (concurrent requests that can wait for a batch).
      max_examples_per_request, max_image_pixels: the caps of
        :class:`serving.limits.RequestLimits`.
      rest_read_timeout_seconds: a REST connection sending nothing this long is closed.
      load_retry_max_interval_seconds: a version that failed to load is retried after
        ``poll_wait_seconds`` (1 s when 0), the delay doubling up to this.
    """

    def __init__(
        self,
        models: Sequence[ModelConfig],
        *,
        host: str = "127.0.0.1",
        grpc_port: int = DEFAULT_GRPC_PORT,
        rest_port: int | None = DEFAULT_REST_PORT,
        batching: BatchingOptions | None = None,
        poll_wait_seconds: float = 1.0,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        grpc_max_threads: int = 64,
        max_examples_per_request: int = DEFAULT_MAX_EXAMPLES_PER_REQUEST,
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
        rest_read_timeout_seconds: float = DEFAULT_READ_TIMEOUT_S,
        load_retry_max_interval_seconds: float = DEFAULT_LOAD_RETRY_MAX_INTERVAL_S,
    ) -> None:
        if not models:
            raise ValueError("ModelServer needs at least one model")
        if max_request_bytes < 1:
            raise ValueError(f"max_request_bytes = {max_request_bytes} must be >= 1")
        for field, seconds in (
            ("rest_read_timeout_seconds", rest_read_timeout_seconds),
            ("load_retry_max_interval_seconds", load_retry_max_interval_seconds),
        ):
            if not seconds > 0:
                raise ValueError(f"{field} = {seconds} must be > 0")
        retry_initial = min(poll_wait_seconds or 1.0, load_retry_max_interval_seconds)
        self.managers = {
            m.name: ModelManager(
                m,
                batching,
                retry_initial_s=retry_initial,
                retry_max_s=load_retry_max_interval_seconds,
            )
            for m in models
        }
        self.core = ServingCore(
            self.managers, RequestLimits(max_examples_per_request, max_image_pixels)
        )
        self.rest_read_timeout_seconds = rest_read_timeout_seconds
        self.host = host
        self.batching = batching
        self.poll_wait_seconds = poll_wait_seconds
        self.max_request_bytes = max_request_bytes
        self._requested_ports = (grpc_port, rest_port)
        self._grpc_max_threads = grpc_max_threads
        self._grpc: grpc.Server | None = None
        self._http: ThreadingHTTPServer | None = None
        self._http_serving = False
        self._threads: list[threading.Thread] = []
        self._stopped = threading.Event()
        self.grpc_port: int | None = None
        self.rest_port: int | None = None

    def poll(self) -> None:
        """Re-scans every model's base path now (the watcher does this periodically)."""
        for manager in self.managers.values():
            try:
                manager.poll()
            except Exception:  # noqa: BLE001 - the watcher must survive a bad scan
                log.exception("polling %s failed", manager.name)

    def start(self) -> ModelServer:
        """Binds the ports, loads what is on disk, then serves and starts watching."""
        grpc_port, rest_port = self._requested_ports
        self._grpc, self.grpc_port = create_grpc_server(
            self.core,
            self.host,
            grpc_port,
            max_threads=self._grpc_max_threads,
            max_request_bytes=self.max_request_bytes,
        )
        if rest_port is not None:
            try:
                self._http = create_http_server(
                    self.core,
                    self.host,
                    rest_port,
                    self.max_request_bytes,
                    self.rest_read_timeout_seconds,
                )
            except OSError:
                self._grpc.stop(0)
                raise
            self.rest_port = self._http.server_address[1]
        try:
            self.poll()
        except BaseException:
            self._grpc.stop(0)
            if self._http is not None:
                self._http.server_close()
            raise
        self._grpc.start()
        if self._http is not None:
            self._spawn(self._http.serve_forever, "rest")
            self._http_serving = True
        if self.poll_wait_seconds > 0:
            self._spawn(self._watch, "watch")
        return self

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _watch(self) -> None:
        while not self._stopped.wait(self.poll_wait_seconds):
            self.poll()

    def stop(self, grace: float = 5.0) -> None:
        """Stops accepting requests, finishes in-flight ones (up to ``grace``), unloads models."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self._http is not None:
            if self._http_serving:
                self._http.shutdown()
            self._http.server_close()
        if self._grpc is not None:
            self._grpc.stop(grace).wait()
        for thread in self._threads:
            thread.join(timeout=grace + 60)
        for manager in self.managers.values():
            manager.unload_all()

    def wait(self) -> None:
        """Blocks until :meth:`stop` is called (from a signal handler or another thread)."""
        self._stopped.wait()

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- command line -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m serving.server",
        description="Serve SavedModel versions from DIR/<version>/ over TF Serving's gRPC and "
        "REST APIs (a local stand-in for tensorflow_model_server).",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model-base-path", help="folder holding <version>/saved_model.pb folders")
    src.add_argument(
        "--model-config-file", help="ModelServerConfig text proto (e.g. serving/models.config)"
    )
    p.add_argument("--model-name", default=DEFAULT_MODEL_NAME, help="with --model-base-path")
    _add_address_arguments(p)
    p.add_argument("--enable-batching", action="store_true", help="merge concurrent requests")
    p.add_argument(
        "--batching-parameters-file",
        help="BatchingParameters text proto (e.g. serving/batching_parameters.txt); implies "
        "--enable-batching",
    )
    p.add_argument("--max-batch-size", type=int, help="overrides the batching file")
    p.add_argument("--batch-timeout-micros", type=int, help="overrides the batching file")
    p.add_argument("--num-batch-threads", type=int, help="overrides the batching file")
    p.add_argument(
        "--file-system-poll-wait-seconds",
        type=float,
        default=1.0,
        help="how often to look for new versions (0: only at start)",
    )
    p.add_argument(
        "--max-request-bytes",
        type=int,
        default=DEFAULT_MAX_REQUEST_BYTES,
        help="largest gRPC message / REST body accepted",
    )
    p.add_argument("--grpc-max-threads", type=int, default=64, help="gRPC handler threads")
    p.add_argument(
        "--max-examples-per-request",
        type=int,
        default=DEFAULT_MAX_EXAMPLES_PER_REQUEST,
        help="most examples (batch size) one Predict request may carry (not --max-batch-size, "
        "which splits requests into model calls)",
    )
    p.add_argument(
        "--max-image-pixels",
        type=int,
        default=DEFAULT_MAX_IMAGE_PIXELS,
        help="most pixels an encoded image may declare in its header (checked before decoding)",
    )
    p.add_argument(
        "--rest-read-timeout-seconds",
        type=float,
        default=DEFAULT_READ_TIMEOUT_S,
        help="close a REST connection that sends nothing for this long (stalled uploads, idle "
        "keep-alive)",
    )
    p.add_argument(
        "--load-retry-max-interval-seconds",
        type=float,
        default=DEFAULT_LOAD_RETRY_MAX_INTERVAL_S,
        help="a version that failed to load is retried after the poll interval, the delay "
        "doubling up to this",
    )
    p.add_argument("--verbose", action="store_true", help="debug logging")
    return p


def _add_address_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    p.add_argument(
        "--port",
        type=int,
        default=DEFAULT_GRPC_PORT,
        help="gRPC port (0: any free one, and REST too unless --rest-api-port is given)",
    )
    p.add_argument(
        "--rest-api-port",
        type=int,
        default=None,
        help=f"REST port (0: any free; default {DEFAULT_REST_PORT}, or any free with --port 0)",
    )
    p.add_argument("--no-rest", action="store_true", help="do not open the REST port")
    p.add_argument(
        "--port-file",
        help="once serving, write the bound ports here as JSON (removed on exit); "
        "python -m serving.client --port-file reads it",
    )


def _options_from_args(args: argparse.Namespace) -> BatchingOptions | None:
    overrides = {
        "max_batch_size": args.max_batch_size,
        "batch_timeout_micros": args.batch_timeout_micros,
        "num_batch_threads": args.num_batch_threads,
    }
    if args.batching_parameters_file:
        return BatchingOptions.from_file(args.batching_parameters_file).replace(**overrides)
    if args.enable_batching:
        return BatchingOptions().replace(**overrides)
    given = [f"--{k.replace('_', '-')}" for k, v in overrides.items() if v is not None]
    if given:
        raise ValueError(f"{', '.join(given)} need --enable-batching")
    return None


def rest_port_from_args(args: argparse.Namespace) -> int | None:
    """The REST port to bind: None with ``--no-rest``; ``--rest-api-port`` when given; else any
    free one when ``--port 0`` (so one ``--port 0`` never collides), else the default 8501."""
    if args.no_rest:
        return None
    if args.rest_api_port is not None:
        return args.rest_api_port
    return 0 if args.port == 0 else DEFAULT_REST_PORT


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        batching = _options_from_args(args)
        if args.model_config_file:
            models = model_configs_from_proto(
                load_model_server_config(args.model_config_file), args.model_config_file
            )
        else:
            models = [ModelConfig(args.model_name, os.path.abspath(args.model_base_path))]
        server = ModelServer(
            models,
            host=args.host,
            grpc_port=args.port,
            rest_port=rest_port_from_args(args),
            batching=batching,
            poll_wait_seconds=args.file_system_poll_wait_seconds,
            max_request_bytes=args.max_request_bytes,
            grpc_max_threads=args.grpc_max_threads,
            max_examples_per_request=args.max_examples_per_request,
            max_image_pixels=args.max_image_pixels,
            rest_read_timeout_seconds=args.rest_read_timeout_seconds,
            load_retry_max_interval_seconds=args.load_retry_max_interval_seconds,
        )
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("binding %s: the server has no authentication", args.host)
        server.start()
    except (OSError, ValueError) as e:
        print(f"serving.server: error: {e}", file=sys.stderr)
        return 2
    return serve_until_signalled(server, args.port_file)


def serve_until_signalled(server: ModelServer, port_file: str | None = None) -> int:
    """Serves (the server started) until SIGINT or SIGTERM, then stops it; the exit status.

    With ``port_file``, writes :class:`serving.ports.PortFile` there once serving and removes it
    on the way out.
    """
    stop_requested = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop_requested.set())
    for name, manager in server.managers.items():
        log.info(
            "model %r from %s: versions %s",
            name,
            manager.config.base_path,
            manager.available_versions(),
        )
    rest = f", REST http://{hostport(server.host, server.rest_port)}" if server.rest_port else ""
    log.info("serving gRPC on %s%s", hostport(server.host, server.grpc_port), rest)
    ports = PortFile(server.host, server.grpc_port, server.rest_port, os.getpid())
    status = 0
    try:
        if port_file:
            ports.write(port_file)
        while not stop_requested.wait(1.0):
            pass
    except OSError as e:
        print(
            f"serving.server: error: cannot write the port file {port_file}: {e}", file=sys.stderr
        )
        status = 2
    finally:
        if port_file:
            ports.remove(port_file)
        log.info("stopping")
        server.stop()
        log.info("stopped")
    return status


if __name__ == "__main__":
    sys.exit(main())
