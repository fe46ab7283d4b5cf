"""A local model server that speaks TF Serving's gRPC and REST APIs (official protos + grpcio).

``python -m serving.server --model-base-path runs/demo/export`` serves the newest SavedModel
version under the folder, like ``tensorflow_model_server --model_base_path=...``:

- gRPC (default ``127.0.0.1:8500``): ``tensorflow.serving.PredictionService`` (``Predict``,
  ``GetModelMetadata``) and ``tensorflow.serving.ModelService`` (``GetModelStatus``); the other
  methods answer UNIMPLEMENTED.
- REST (default ``127.0.0.1:8501``): ``POST /v1/models/NAME[/versions/N|/labels/L]:predict``,
  ``GET /v1/models/NAME[/versions/N|/labels/L]`` (status) and ``GET .../metadata``.

Versions are loaded from ``DIR/<version>/`` and the folder is watched (see
:mod:`serving.manager`); ``--enable-batching`` merges concurrent requests (see
:mod:`serving.batching`). The server binds 127.0.0.1 unless told otherwise, refuses gRPC messages
and REST bodies over ``--max-request-bytes`` (RESOURCE_EXHAUSTED / HTTP 413), and answers bad
requests with INVALID_ARGUMENT / NOT_FOUND (HTTP 400 / 404) and a message naming the input,
field and value, then keeps serving.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import socket
import sys
import tempfile
import threading
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving import DEFAULT_GRPC_PORT, DEFAULT_MODEL_NAME, DEFAULT_REST_PORT
from serving import rest as rest_format
from serving.batching import BatchingOptions
from serving.errors import ServingError, invalid, not_found
from serving.manager import (
    ModelConfig,
    ModelManager,
    Servable,
    Signature,
    array_to_tensor_proto,
    load_model_server_config,
    model_configs_from_proto,
    tensor_to_array,
)

log = logging.getLogger("serving")

DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024
SUPPORTED_METADATA_FIELDS = ("signature_def",)


class ServingCore:
    """The request logic shared by the gRPC servicers and the REST handler."""

    def __init__(self, managers: Mapping[str, ModelManager]) -> None:
        self.managers = dict(managers)

    def manager(self, name: str) -> ModelManager:
        if not name:
            raise invalid(f"model_spec.name is empty; served models: {sorted(self.managers)}")
        if name not in self.managers:
            raise not_found(
                f"servable not found for request: model {name!r} is not served; served models: "
                f"{sorted(self.managers)}"
            )
        return self.managers[name]

    def _predict(
        self,
        name: str,
        version: int | None,
        label: str | None,
        signature_name: str,
        convert: Callable[[Signature, str], dict[str, np.ndarray]],
        output_filter: Sequence[str],
        timeout: float | None,
    ) -> tuple[int, str, dict[str, np.ndarray]]:
        manager = self.manager(name)
        with manager.acquire(version, label) as servable:
            sig = servable.signature(signature_name)
            where = f"{servable.where}, signature {sig.name!r}"
            arrays = convert(sig, where)
            sig.check_inputs(arrays, where)
            wanted = list(dict.fromkeys(output_filter)) or list(sig.outputs)
            unknown = [k for k in wanted if k not in sig.outputs]
            if unknown:
                raise invalid(
                    f"{where}: output_filter names {unknown[0]!r}, which is not an output; "
                    f"outputs: {list(sig.outputs)}"
                )
            outputs = servable.predict(sig.name, arrays, timeout)
            return servable.version, sig.name, {k: outputs[k] for k in wanted}

    def predict(
        self, request: predict_pb2.PredictRequest, timeout: float | None = None
    ) -> predict_pb2.PredictResponse:
        """``PredictionService.Predict``."""
        spec = request.model_spec
        version, label = _version_choice(spec)

        def convert(sig: Signature, where: str) -> dict[str, np.ndarray]:
            return {k: tensor_to_array(k, v, sig, where) for k, v in request.inputs.items()}

        served, sig_name, outputs = self._predict(
            spec.name, version, label, spec.signature_name, convert, request.output_filter, timeout
        )
        response = predict_pb2.PredictResponse()
        response.model_spec.name = spec.name
        response.model_spec.version.value = served
        response.model_spec.signature_name = sig_name
        for key, value in outputs.items():
            response.outputs[key].CopyFrom(array_to_tensor_proto(value))
        return response

    def predict_json(
        self, name: str, version: int | None, label: str | None, payload: Any
    ) -> dict[str, Any]:
        """REST ``:predict``: a parsed JSON body in, the response body out."""
        signature_name, kind = rest_format.parse_request(payload)

        def convert(sig: Signature, where: str) -> dict[str, np.ndarray]:
            return rest_format.json_to_arrays(payload, sig, where)

        _, _, outputs = self._predict(name, version, label, signature_name, convert, (), None)
        return rest_format.arrays_to_json(outputs, row_format=kind == "instances")

    def metadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        """``PredictionService.GetModelMetadata`` (the ``signature_def`` field)."""
        fields = list(request.metadata_field)
        if not fields:
            raise invalid(
                "GetModelMetadataRequest.metadata_field is empty; supported fields: "
                f"{list(SUPPORTED_METADATA_FIELDS)}"
            )
        for field in fields:
            if field not in SUPPORTED_METADATA_FIELDS:
                raise invalid(
                    f"metadata field {field!r} is not supported; supported fields: "
                    f"{list(SUPPORTED_METADATA_FIELDS)}"
                )
        spec = request.model_spec
        version, label = _version_choice(spec)
        with self.manager(spec.name).acquire(version, label) as servable:
            return self._metadata_response(spec.name, servable)

    @staticmethod
    def _metadata_response(
        name: str, servable: Servable
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = name
        response.model_spec.version.value = servable.version
        response.metadata["signature_def"].Pack(servable.signature_def_map)
        return response

    def status(
        self, request: get_model_status_pb2.GetModelStatusRequest
    ) -> get_model_status_pb2.GetModelStatusResponse:
        """``ModelService.GetModelStatus``."""
        spec = request.model_spec
        version, label = _version_choice(spec)
        response = get_model_status_pb2.GetModelStatusResponse()
        for v, state in self.manager(spec.name).status(version, label):
            entry = response.model_version_status.add()
            entry.version = v
            entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(state.state)
            entry.status.error_code = state.error_code.value[0]
            entry.status.error_message = state.error_message
        return response


def _version_choice(spec) -> tuple[int | None, str | None]:
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        return int(spec.version.value), None
    if choice == "version_label":
        if not spec.version_label:
            raise invalid("model_spec.version_label is set but empty")
        return None, spec.version_label
    return None, None


# -- gRPC ---------------------------------------------------------------------------------------


def _grpc_call(context: grpc.ServicerContext, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except ServingError as e:
        error = e
    except Exception as e:  # noqa: BLE001 - reported to the client, the server keeps serving
        log.exception("internal error")
        error = ServingError(grpc.StatusCode.INTERNAL, f"internal error: {type(e).__name__}: {e}")
    context.abort(error.code, error.message)


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """``tensorflow.serving.PredictionService``: Predict and GetModelMetadata."""

    def __init__(self, core: ServingCore) -> None:
        self.core = core

    def Predict(self, request, context):  # noqa: N802 - gRPC method name
        return _grpc_call(context, lambda: self.core.predict(request, context.time_remaining()))

    def GetModelMetadata(self, request, context):  # noqa: N802 - gRPC method name
        return _grpc_call(context, lambda: self.core.metadata(request))


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """``tensorflow.serving.ModelService``: GetModelStatus."""

    def __init__(self, core: ServingCore) -> None:
        self.core = core

    def GetModelStatus(self, request, context):  # noqa: N802 - gRPC method name
        return _grpc_call(context, lambda: self.core.status(request))


# -- REST ---------------------------------------------------------------------------------------

_URL = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    r"(?:(?P<metadata>/metadata)|:(?P<verb>[A-Za-z]+))?/?$"
)


class _RestHandler(BaseHTTPRequestHandler):
    server_version = "fashion-keras-serving"
    protocol_version = "HTTP/1.1"
    core: ServingCore
    max_request_bytes: int

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        log.debug("rest %s - %s", self.address_string(), format % args)

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._send(status, {"error": message})

    def _route(self) -> tuple[str, int | None, str | None, str | None, bool] | None:
        path = urllib.parse.urlsplit(self.path).path
        m = _URL.match(path)
        if not m:
            self._error(
                404,
                f"malformed URL {path!r}; expected /v1/models/NAME[/versions/N|/labels/L]"
                "[:predict|/metadata]",
            )
            return None
        version = m["version"]
        if version is not None and not version.isdigit():
            self._error(404, f"malformed URL {path!r}: version {version!r} is not an integer")
            return None
        name = urllib.parse.unquote(m["name"])
        label = urllib.parse.unquote(m["label"]) if m["label"] else None
        return name, int(version) if version else None, label, m["verb"], bool(m["metadata"])

    def do_GET(self) -> None:  # noqa: N802 - http.server hook
        route = self._route()
        if route is None:
            return
        name, version, label, verb, metadata = route
        if verb:
            self._error(405, f"use POST for :{verb}")
            return
        spec = {"name": name}
        if version is not None:
            spec["version"] = {"value": version}
        if label:
            spec["version_label"] = label
        try:
            if metadata:
                request = get_model_metadata_pb2.GetModelMetadataRequest(
                    model_spec=spec, metadata_field=["signature_def"]
                )
                response = self.core.metadata(request)
            else:
                request = get_model_status_pb2.GetModelStatusRequest(model_spec=spec)
                response = self.core.status(request)
        except ServingError as e:
            self._error(e.http_status, e.message)
            return
        self._send(
            200,
            json_format.MessageToDict(
                response,
                preserving_proto_field_name=True,
                always_print_fields_with_no_presence=True,
            ),
        )

    def do_POST(self) -> None:  # noqa: N802 - http.server hook
        route = self._route()
        if route is None:
            return
        name, version, label, verb, metadata = route
        if metadata or verb is None:
            self._error(405, f"POST needs a :predict verb; got {self.path!r}")
            return
        if verb != "predict":
            self._error(501, f"method :{verb} is not implemented by this server; use :predict")
            return
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            self._error(411, "chunked request bodies are not accepted; send a Content-Length")
            return
        length_header = self.headers.get("Content-Length")
        if length_header is None or not length_header.isdigit():
            self.close_connection = True
            self._error(411, f"a valid Content-Length header is required; got {length_header!r}")
            return
        length = int(length_header)
        if length > self.max_request_bytes:
            self.close_connection = True
            self._error(
                413,
                f"request body of {length} bytes exceeds the server's limit of "
                f"{self.max_request_bytes} bytes (--max-request-bytes)",
            )
            return
        body = self.rfile.read(length)
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            self._error(400, f"request body is not valid JSON: {e}")
            return
        try:
            result = self.core.predict_json(name, version, label, payload)
        except ServingError as e:
            self._error(e.http_status, e.message)
            return
        except Exception as e:  # noqa: BLE001 - reported to the client, the server keeps serving
            log.exception("internal error")
            self._error(500, f"internal error: {type(e).__name__}: {e}")
            return
        self._send(200, result)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False


# -- the server ---------------------------------------------------------------------------------


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ModelServer:
    """gRPC + REST serving of one or more models; :meth:`start`, then :meth:`stop`.

    Args:
      models: what to serve (see :class:`serving.manager.ModelConfig`).
      host: the address to bind; loopback by default (the server has no authentication).
      grpc_port, rest_port: 0 lets the OS choose a free port (read :attr:`grpc_port` /
        :attr:`rest_port` after :meth:`start`); ``rest_port=None`` disables REST.
      batching: merge concurrent requests with these options (``None``: no batching).
      poll_wait_seconds: how often the base paths are re-scanned (0: scan once, at start).
      max_request_bytes: largest gRPC message / REST body accepted.
      grpc_max_threads: gRPC handler threads (concurrent requests that can wait for a batch).
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
    ) -> None:
        if not models:
            raise ValueError("ModelServer needs at least one model")
        if max_request_bytes < 1:
            raise ValueError(f"max_request_bytes = {max_request_bytes} must be >= 1")
        self.managers = {m.name: ModelManager(m, batching) for m in models}
        self.core = ServingCore(self.managers)
        self.host = host
        self.batching = batching
        self.poll_wait_seconds = poll_wait_seconds
        self.max_request_bytes = max_request_bytes
        self._requested_ports = (grpc_port, rest_port)
        self._grpc_max_threads = grpc_max_threads
        self._grpc: grpc.Server | None = None
        self._http: _HttpServer | None = None
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
        self._grpc = grpc.server(
            futures.ThreadPoolExecutor(
                max_workers=self._grpc_max_threads, thread_name_prefix="grpc"
            ),
            options=[
                ("grpc.max_receive_message_length", self.max_request_bytes),
                ("grpc.max_send_message_length", -1),
                ("grpc.so_reuseport", 0),
            ],
        )
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionServicer(self.core), self._grpc
        )
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(
            ModelServicer(self.core), self._grpc
        )
        address = _hostport(self.host, grpc_port)
        try:
            bound = self._grpc.add_insecure_port(address)
        except RuntimeError as e:
            raise OSError(f"cannot bind gRPC to {address}: {e}") from e
        if not bound:
            raise OSError(f"cannot bind gRPC to {address} (address in use?)")
        self.grpc_port = bound
        if rest_port is not None:
            handler = type(
                "RestHandler",
                (_RestHandler,),
                {"core": self.core, "max_request_bytes": self.max_request_bytes},
            )
            server_cls = _HttpServer
            if ":" in self.host:
                server_cls = type(
                    "HttpServer6", (_HttpServer,), {"address_family": socket.AF_INET6}
                )
            try:
                self._http = server_cls((self.host, rest_port), handler)
            except OSError as e:
                self._grpc.stop(0)
                raise OSError(f"cannot bind REST to {_hostport(self.host, rest_port)}: {e}") from e
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
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    p.add_argument("--port", type=int, default=DEFAULT_GRPC_PORT, help="gRPC port (0: any free)")
    p.add_argument(
        "--rest-api-port", type=int, default=DEFAULT_REST_PORT, help="REST port (0: any free)"
    )
    p.add_argument("--no-rest", action="store_true", help="do not open the REST port")
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
        "--port-file", help="write the bound ports here as JSON once serving (for scripts)"
    )
    p.add_argument("--verbose", action="store_true", help="debug logging")
    return p


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


def _write_port_file(path: str, server: ModelServer) -> None:
    info = {"grpc_port": server.grpc_port, "rest_port": server.rest_port, "host": server.host}
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".ports-", dir=folder)
    with os.fdopen(fd, "w") as f:
        json.dump(info, f)
    os.replace(tmp, path)


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
            rest_port=None if args.no_rest else args.rest_api_port,
            batching=batching,
            poll_wait_seconds=args.file_system_poll_wait_seconds,
            max_request_bytes=args.max_request_bytes,
            grpc_max_threads=args.grpc_max_threads,
        )
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("binding %s: the server has no authentication", args.host)
        server.start()
    except (OSError, ValueError) as e:
        print(f"serving.server: error: {e}", file=sys.stderr)
        return 2
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
    rest = f", REST http://{_hostport(server.host, server.rest_port)}" if server.rest_port else ""
    log.info("serving gRPC on %s%s", _hostport(server.host, server.grpc_port), rest)
    if args.port_file:
        _write_port_file(args.port_file, server)
    while not stop_requested.wait(1.0):
        pass
    log.info("stopping")
    server.stop()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
