"""TF Serving's REST API over a :class:`serving.core.ServingCore`: the HTTP handler and routing.

- ``POST /v1/models/NAME[/versions/N|/labels/L]:predict``: the JSON body of
  :mod:`serving.rest_format` in, ``predictions`` / ``outputs`` out;
- ``GET /v1/models/NAME[/versions/N|/labels/L]``: ``GetModelStatus`` as JSON;
- ``GET /v1/models/NAME[/versions/N|/labels/L]/metadata``: ``GetModelMetadata`` as JSON.

Errors answer ``{"error": message}`` with the HTTP status of their gRPC code
(:data:`serving.errors.HTTP_STATUS`). Bodies over ``max_request_bytes`` answer 413 (before the
body with ``Expect: 100-continue``, else after reading and discarding it, so the client sees the
answer rather than a reset connection); JSON nested too deeply to parse answers 400; a client
that sends nothing for ``read_timeout`` seconds is disconnected (408 inside a body), so stalled
uploads do not hold their threads.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

from serving import hostport, rest_format
from serving.core import ServingCore
from serving.errors import ServingError
from serving.signature import Signature

log = logging.getLogger("serving")

#: Seconds a REST connection may send nothing before it is closed (--rest-read-timeout-seconds).
DEFAULT_READ_TIMEOUT_S = 30.0
#: An oversized body is read and dropped up to this size before the connection closes.
DRAIN_LIMIT_BYTES = 256 * 1024 * 1024
READ_CHUNK_BYTES = 1024 * 1024

_URL = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    r"(?:(?P<metadata>/metadata)|:(?P<verb>[A-Za-z]+))?/?$"
)


def predict_json(
    core: ServingCore, name: str, version: int | None, label: str | None, payload: Any
) -> dict[str, Any]:
    """REST ``:predict``: a parsed JSON body in, the response body out."""
    signature_name, kind = rest_format.parse_request(payload)

    def convert(sig: Signature, where: str) -> dict[str, np.ndarray]:
        return rest_format.json_to_arrays(payload, sig, where, core.limits)

    _, _, outputs = core.predict_arrays(name, version, label, signature_name, convert, (), None)
    return rest_format.arrays_to_json(outputs, row_format=kind == "instances")


class _RestHandler(BaseHTTPRequestHandler):
    server_version = "fashion-keras-serving"
    protocol_version = "HTTP/1.1"
    core: ServingCore
    max_request_bytes: int
    #: the socket timeout (``--rest-read-timeout-seconds``): a stalled read or write ends the
    #: connection (``StreamRequestHandler.setup`` applies it)
    timeout: float

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

    def _too_large(self, length: int) -> None:
        self.close_connection = True
        self._error(
            413,
            f"request body of {length} bytes exceeds the server's limit of "
            f"{self.max_request_bytes} bytes (--max-request-bytes)",
        )

    def handle_expect_100(self) -> bool:
        """Refuses an oversized body before the client sends it (else: 100 Continue)."""
        length = self.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.max_request_bytes:
            self._too_large(int(length))
            return False
        return super().handle_expect_100()

    def _read_body(self) -> bytearray | None:
        """The request body, or ``None`` once an error is sent (no length, chunked, too big,
        stalled)."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            self._error(411, "chunked request bodies are not accepted; send a Content-Length")
            return None
        length_header = self.headers.get("Content-Length")
        if length_header is None or not length_header.isdigit():
            self.close_connection = True
            self._error(411, f"a valid Content-Length header is required; got {length_header!r}")
            return None
        length = int(length_header)
        if length > self.max_request_bytes:
            self._too_large(length)
            self._discard(min(length, DRAIN_LIMIT_BYTES))
            return None
        body = bytearray()
        try:
            while len(body) < length:
                chunk = self.rfile.read1(min(length - len(body), READ_CHUNK_BYTES))
                if not chunk:
                    break  # the client closed its side: judged below as a short body
                body += chunk
        except TimeoutError:
            self.close_connection = True
            self._error(
                408,
                f"request body stalled: received {len(body)} of {length} bytes, then nothing "
                f"for {self.timeout:g} s (--rest-read-timeout-seconds)",
            )
            return None
        return body

    def _discard(self, length: int) -> None:
        """Reads and drops ``length`` body bytes, so closing does not reset the connection
        before the client has read the answer."""
        try:
            while length > 0:
                chunk = self.rfile.read1(min(length, READ_CHUNK_BYTES))
                if not chunk:
                    return
                length -= len(chunk)
        except OSError:  # a stalled or reset client: nothing more to do
            return

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
        body = self._read_body()
        if body is None:
            return
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            self._error(400, f"request body is not valid JSON: {e}")
            return
        except RecursionError:
            self._error(
                400,
                "request body nests JSON arrays or objects too deeply to parse; a predict body "
                "nests as deep as its inputs' shapes",
            )
            return
        try:
            result = predict_json(self.core, name, version, label, payload)
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


def create_http_server(
    core: ServingCore,
    host: str,
    port: int,
    max_request_bytes: int,
    read_timeout: float = DEFAULT_READ_TIMEOUT_S,
) -> ThreadingHTTPServer:
    """The REST API bound to ``host:port`` (0: any free port), not yet serving.

    ``read_timeout``: seconds a connection may send nothing (mid-request or idle between
    requests) before it is closed. Raises OSError when the address cannot be bound.
    """
    if not read_timeout > 0:
        raise ValueError(f"REST read timeout = {read_timeout!r} s must be > 0")
    handler = type(
        "RestHandler",
        (_RestHandler,),
        {"core": core, "max_request_bytes": max_request_bytes, "timeout": read_timeout},
    )
    server_cls = _HttpServer
    if ":" in host:
        server_cls = type("HttpServer6", (_HttpServer,), {"address_family": socket.AF_INET6})
    try:
        return server_cls((host, port), handler)
    except OSError as e:
        raise OSError(f"cannot bind REST to {hostport(host, port)}: {e}") from e
