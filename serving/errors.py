"""The error type the local server raises, with its gRPC status code and HTTP mapping."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

import grpc

T = TypeVar("T")

#: gRPC status -> HTTP status, as TF Serving's REST API maps them.
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 413,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}

#: TensorFlow's canonical error codes (``tf.errors.OpError.error_code``) are gRPC's numbers.
_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


class ServingError(Exception):
    """A request the server refuses or cannot answer: a gRPC status code and a clear message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


def status_code_from_number(number: int) -> grpc.StatusCode:
    """The gRPC status for a canonical error number (UNKNOWN for numbers it does not know)."""
    return _BY_NUMBER.get(int(number), grpc.StatusCode.UNKNOWN)


def invalid(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.NOT_FOUND, message)


def lookup(table: Mapping[str, T], key: str, message: str) -> T:
    """``table[key]``, else a NOT_FOUND error with ``message``."""
    if key not in table:
        raise not_found(message)
    return table[key]
