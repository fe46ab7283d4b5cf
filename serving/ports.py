"""The port file: where ``python -m serving.server --port-file PATH`` says it listens.

The server writes it (atomically) once both APIs are serving and removes it when it stops;
``python -m serving.client --port-file PATH`` reads it instead of ``--target`` / ``--rest-url``.
It is one JSON object::

    {"host": "127.0.0.1", "grpc_port": 41231, "rest_port": 41232, "pid": 5120}

``host`` is the address the server bound, ``rest_port`` is ``null`` with ``--no-rest`` and
``pid`` is the server's process id (a server removes the file only while it still holds its own
pid, so a second server writing the same path keeps its file).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile

from serving import hostport

#: (field, type, may be null) of the file's object.
_FIELDS = (
    ("host", str, False),
    ("grpc_port", int, False),
    ("rest_port", int, True),
    ("pid", int, False),
)
#: Addresses that bind every interface: a client connects to the loopback address instead.
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


@dataclasses.dataclass(frozen=True)
class PortFile:
    """The contents of a port file."""

    host: str
    grpc_port: int
    rest_port: int | None
    pid: int

    @property
    def connect_host(self) -> str:
        """The address a client on this machine connects to (loopback for a wildcard bind)."""
        return _WILDCARDS.get(self.host, self.host)

    @property
    def grpc_target(self) -> str:
        """``host:port`` of the gRPC API."""
        return hostport(self.connect_host, self.grpc_port)

    @property
    def rest_url(self) -> str | None:
        """``http://host:port`` of the REST API, or None when the server has none."""
        if self.rest_port is None:
            return None
        return f"http://{hostport(self.connect_host, self.rest_port)}"

    def write(self, path: str) -> None:
        """Writes the file atomically (a reader never sees it half written)."""
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=".ports-", dir=folder)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(dataclasses.asdict(self), f)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise

    @classmethod
    def read(cls, path: str) -> PortFile:
        """The port file at ``path``; ``ValueError`` naming the file and field when malformed
        (``OSError`` when it cannot be read, e.g. the server has not written it yet)."""
        with open(path, encoding="utf-8") as f:
            text = f.read()
        try:
            data = json.loads(text)
        except ValueError as e:
            raise ValueError(f"port file {path}: not JSON ({e})") from None
        if not isinstance(data, dict):
            raise ValueError(f"port file {path}: expected a JSON object, got {text[:80]!r}")
        for field, kind, optional in _FIELDS:
            value = data.get(field)
            if not (isinstance(value, kind) and not isinstance(value, bool)) and not (
                optional and value is None
            ):
                wanted = f"{kind.__name__}{' or null' if optional else ''}"
                raise ValueError(f"port file {path}: {field} = {value!r}, expected {wanted}")
        return cls(data["host"], data["grpc_port"], data.get("rest_port"), data["pid"])

    def remove(self, path: str) -> bool:
        """Removes the file if it is still this one (same pid); returns whether it did."""
        try:
            if PortFile.read(path).pid != self.pid:
                return False
            os.remove(path)
        except (OSError, ValueError):
            return False
        return True
