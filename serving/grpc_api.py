"""TF Serving's gRPC API over a :class:`serving.core.ServingCore`.

``tensorflow.serving.PredictionService`` answers ``Predict`` and ``GetModelMetadata`` and
``tensorflow.serving.ModelService`` answers ``GetModelStatus``; the other methods answer
UNIMPLEMENTED. A :class:`serving.errors.ServingError` becomes its status code and message; any
other error becomes INTERNAL, and the server keeps serving.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from serving import hostport
from serving.core import ServingCore
from serving.errors import ServingError

log = logging.getLogger("serving")


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


def create_grpc_server(
    core: ServingCore, host: str, port: int, *, max_threads: int, max_request_bytes: int
) -> tuple[grpc.Server, int]:
    """Both services bound to ``host:port`` (0: any free port), not started: (server, port).

    Raises OSError when the address cannot be bound.
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="grpc"),
        options=[
            ("grpc.max_receive_message_length", max_request_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 0),
        ],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(core), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(core), server)
    address = hostport(host, port)
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as e:
        raise OSError(f"cannot bind gRPC to {address}: {e}") from e
    if not bound:
        raise OSError(f"cannot bind gRPC to {address} (address in use?)")
    return server, bound
