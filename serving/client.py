"""Clients for TF Serving (``tensorflow_model_server`` or :mod:`serving.server`): gRPC and REST.

Both send encoded photos to a signature taking image bytes (``serving_default`` by default) and
return, per photo, every head's top-k classes with their names and every keypoint head's
keypoints (``x``, ``y`` in the photo's pixels, visibility ``score``) with theirs. The names come
from the model's own outputs (``<head>_probs`` with ``<head>_class_names``, ``<head>_keypoints``
and ``<head>_scores`` with ``<head>_keypoint_names``), never from a copy of the class or
keypoint lists, so a client keeps working when a new model version changes its heads.

>>> with GrpcClient("127.0.0.1:8500", "fashion", timeout=5) as client:
...     [pred] = client.classify([open("shirt.jpg", "rb").read()], top_k=3)
>>> pred.model_version, pred.heads["sleeve"][0].class_name, pred.heads["sleeve"][0].probability
>>> pred.keypoints["fashionai_keypoints"][0]  # a model with a keypoint head
KeypointScore(keypoint_index=0, keypoint_name='neckline_left', x=212.4, y=88.0, score=0.93)

Each class is named as in ``python -m fashion_keras.predict``: ``class_index``, ``class_name``,
``probability``; each keypoint ``keypoint_index``, ``keypoint_name``, ``x``, ``y``, ``score``;
each prediction carries ``model_name`` and ``model_version``, the version that
answered. gRPC's ``PredictResponse.model_spec`` says it. TF Serving's REST API cannot: its
predict answer is ``{"predictions": ...}`` alone (its handler serialises only the response's
outputs), so :class:`RestClient` first resolves the version it means (a pinned ``version``, else
``GET .../metadata``, whose ``model_spec.version`` is the version the server picks for the newest
or the label) and sends the predict to ``/versions/N``, which only version N answers.

Command line::

    python -m serving.client predict shirt.jpg dress.png              # gRPC, 127.0.0.1:8500
    python -m serving.client --protocol rest predict shirt.jpg        # REST, 127.0.0.1:8501
    python -m serving.client --port-file ports.json predict shirt.jpg # where serving.server is
    python -m serving.client --version 2 --signature serving_default predict shirt.jpg
    python -m serving.client status
    python -m serving.client metadata
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving import DEFAULT_GRPC_PORT, DEFAULT_MODEL_NAME, DEFAULT_REST_PORT
from serving.ports import PortFile
from serving.results import (
    ClassScore,
    ClientError,
    KeypointScore,
    Prediction,
    RegionBox,
    keypoint_lists,
    predictions,
    region_boxes,
    top_classes,
)

__all__ = [
    "ClassScore",
    "ClientError",
    "GrpcClient",
    "KeypointScore",
    "Prediction",
    "RegionBox",
    "RestClient",
    "keypoint_lists",
    "region_boxes",
    "main",
    "predictions",
    "top_classes",
]

DEFAULT_SIGNATURE = "serving_default"
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class GrpcClient:
    """``PredictionServiceStub`` / ``ModelServiceStub`` client for one model.

    Args:
      target: ``host:port`` of the gRPC endpoint.
      model_name: the served model's name.
      version, version_label: pin a version number or a label (at most one; default: newest).
      signature_name: the signature :meth:`classify` and :meth:`predict` call by default.
      timeout: seconds per call (the gRPC deadline).
      max_message_bytes: largest message sent or received.
    """

    def __init__(
        self,
        target: str = f"127.0.0.1:{DEFAULT_GRPC_PORT}",
        model_name: str = DEFAULT_MODEL_NAME,
        *,
        version: int | None = None,
        version_label: str | None = None,
        signature_name: str = DEFAULT_SIGNATURE,
        timeout: float = 10.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        if version is not None and version_label:
            raise ValueError(f"give a version ({version}) or a label ({version_label!r}), not both")
        self.target = target
        self.model_name = model_name
        self.version = version
        self.version_label = version_label
        self.signature_name = signature_name
        self.timeout = timeout
        self._channel = grpc.insecure_channel(
            target,
            options=[
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.max_receive_message_length", max_message_bytes),
            ],
        )
        self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)
        self._input_names: dict[str, str] = {}

    def model_spec(self, signature_name: str | None = None) -> model_pb2.ModelSpec:
        """The ``ModelSpec`` of this client's requests."""
        spec = model_pb2.ModelSpec(name=self.model_name)
        if signature_name is not None:
            spec.signature_name = signature_name
        if self.version is not None:
            spec.version.value = self.version
        elif self.version_label:
            spec.version_label = self.version_label
        return spec

    def _call(self, method: str, fn: Any, request: Any) -> Any:
        try:
            return fn(request, timeout=self.timeout)
        except grpc.RpcError as e:
            raise ClientError(
                e.code().name,
                f"{method} on {self.target} (model {self.model_name!r}): {e.details()}",
            ) from None

    def predict(
        self,
        inputs: Mapping[str, np.ndarray | Any],
        *,
        signature_name: str | None = None,
        output_filter: Sequence[str] = (),
    ) -> tuple[model_pb2.ModelSpec, dict[str, np.ndarray]]:
        """Calls ``Predict``; returns the model spec that answered and the outputs as arrays."""
        request = predict_pb2.PredictRequest(
            model_spec=self.model_spec(signature_name or self.signature_name),
            output_filter=list(output_filter),
        )
        for name, value in inputs.items():
            proto = (
                value if isinstance(value, tensor_pb2.TensorProto) else tf.make_tensor_proto(value)
            )
            request.inputs[name].CopyFrom(proto)
        response = self._call("Predict", self._predict.Predict, request)
        return response.model_spec, {k: tf.make_ndarray(v) for k, v in response.outputs.items()}

    def metadata(self) -> get_model_metadata_pb2.GetModelMetadataResponse:
        """``GetModelMetadata`` (signature defs) of the model (version) this client targets."""
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=self.model_spec(), metadata_field=["signature_def"]
        )
        return self._call("GetModelMetadata", self._predict.GetModelMetadata, request)

    def signature_defs(self) -> dict[str, Any]:
        """Signature name -> ``SignatureDef``, from :meth:`metadata`."""
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        self.metadata().metadata["signature_def"].Unpack(sig_map)
        return dict(sig_map.signature_def)

    def status(self) -> get_model_status_pb2.GetModelStatusResponse:
        """``ModelService.GetModelStatus`` of the model (or of the pinned version/label)."""
        request = get_model_status_pb2.GetModelStatusRequest(model_spec=self.model_spec())
        return self._call("GetModelStatus", self._models.GetModelStatus, request)

    def image_input_name(self, signature_name: str | None = None) -> str:
        """The signature's one DT_STRING input (read from the model's metadata, then cached)."""
        signature_name = signature_name or self.signature_name
        if signature_name not in self._input_names:
            defs = self.signature_defs()
            if signature_name not in defs:
                raise ClientError(
                    "NOT_FOUND",
                    f"model {self.model_name!r} on {self.target} has no signature "
                    f"{signature_name!r}; signatures: {sorted(defs)}",
                )
            inputs = defs[signature_name].inputs
            strings = [k for k, v in inputs.items() if v.dtype == types_pb2.DT_STRING]
            if len(inputs) != 1 or len(strings) != 1:
                raise ClientError(
                    "INVALID_ARGUMENT",
                    f"signature {signature_name!r} takes inputs {sorted(inputs)}; classify needs "
                    "a signature with one DT_STRING input (encoded image bytes)",
                )
            self._input_names[signature_name] = strings[0]
        return self._input_names[signature_name]

    def classify(
        self, images: Sequence[bytes], top_k: int = 3, *, signature_name: str | None = None
    ) -> list[Prediction]:
        """Top-k classes of every head and the keypoints of every keypoint head (photo
        pixels) for each encoded photo (JPEG/PNG/...)."""
        signature_name = signature_name or self.signature_name
        name = self.image_input_name(signature_name)
        array = np.array(list(images), dtype=object)
        spec, outputs = self.predict({name: array}, signature_name=signature_name)
        version = spec.version.value if spec.HasField("version") else None
        return predictions(spec.name or self.model_name, version, outputs, top_k)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> GrpcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RestClient:
    """TF Serving REST client for one model (``/v1/models/NAME[/versions/N|/labels/L]``).

    Args mirror :class:`GrpcClient`; ``base_url`` is e.g. ``http://127.0.0.1:8501``.
    """

    def __init__(
        self,
        base_url: str = f"http://127.0.0.1:{DEFAULT_REST_PORT}",
        model_name: str = DEFAULT_MODEL_NAME,
        *,
        version: int | None = None,
        version_label: str | None = None,
        signature_name: str = DEFAULT_SIGNATURE,
        timeout: float = 10.0,
    ) -> None:
        if version is not None and version_label:
            raise ValueError(f"give a version ({version}) or a label ({version_label!r}), not both")
        if urllib.parse.urlsplit(base_url).scheme not in ("http", "https"):
            raise ValueError(f"base_url {base_url!r} must start with http:// or https://")
        self.base_url = base_url.rstrip("/")
        self.model_name = model_name
        self.version = version
        self.version_label = version_label
        self.signature_name = signature_name
        self.timeout = timeout

    def model_url(self, version: int | None = None) -> str:
        """``BASE/v1/models/NAME[/versions/N|/labels/L]``: this client's version or label, or
        ``version`` when given."""
        url = f"{self.base_url}/v1/models/{urllib.parse.quote(self.model_name, safe='')}"
        version = self.version if version is None else version
        if version is not None:
            url += f"/versions/{int(version)}"
        elif self.version_label:
            url += f"/labels/{urllib.parse.quote(self.version_label, safe='')}"
        return url

    def _request(self, url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(
            url, data=data, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                message = json.loads(raw).get("error", raw.decode("utf-8", "replace"))
            except (ValueError, AttributeError):
                message = raw.decode("utf-8", "replace")
            raise ClientError(e.code, f"{url}: {message}") from None
        except urllib.error.URLError as e:
            raise ClientError("UNAVAILABLE", f"{url}: {e.reason}") from None

    def predict(self, body: dict[str, Any]) -> dict[str, Any]:
        """POSTs a predict body (``instances`` or ``inputs``); returns the JSON response."""
        return self._request(self.model_url() + ":predict", body)

    def status(self) -> dict[str, Any]:
        """``GET /v1/models/NAME[...]``: the model's version status."""
        return self._request(self.model_url())

    def metadata(self) -> dict[str, Any]:
        """``GET /v1/models/NAME[...]/metadata``: the signature defs as JSON."""
        return self._request(self.model_url() + "/metadata")

    def resolve_version(self) -> int:
        """The version a request of this client goes to now: the pinned one, else the one the
        server picks for the newest (or the label), from ``model_spec.version`` of
        :meth:`metadata`."""
        if self.version is not None:
            return int(self.version)
        spec = self.metadata().get("model_spec")
        version = spec.get("version") if isinstance(spec, dict) else None
        if not isinstance(version, (int, str)) or not str(version).isdigit():
            raise ClientError(
                "INVALID_RESPONSE",
                f"{self.model_url()}/metadata names no model_spec.version; got {spec!r}",
            )
        return int(version)

    def _predict_on_version(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """``(version, answer)`` of a predict sent to ``/versions/N``, N resolved first; when N
        was unloaded in between (404) and no version is pinned, resolved and sent once more."""
        version = self.resolve_version()
        try:
            return version, self._request(self.model_url(version) + ":predict", body)
        except ClientError as e:
            if e.status != 404 or self.version is not None:
                raise
        version = self.resolve_version()
        return version, self._request(self.model_url(version) + ":predict", body)

    def classify(
        self, images: Sequence[bytes], top_k: int = 3, *, signature_name: str | None = None
    ) -> list[Prediction]:
        """Top-k classes of every head and the keypoints of every keypoint head (photo pixels)
        for each encoded photo, over REST, with the version that answered (see
        :meth:`resolve_version`)."""
        body = {
            "signature_name": signature_name or self.signature_name,
            "instances": [{"b64": base64.b64encode(b).decode("ascii")} for b in images],
        }
        version, answer = self._predict_on_version(body)
        rows = answer.get("predictions")
        if not isinstance(rows, list) or not all(isinstance(p, dict) for p in rows):
            raise ClientError(
                "INVALID_RESPONSE",
                f"{self.model_url()}:predict returned no per-example output objects",
            )
        outputs = {k: [p[k] for p in rows] for k in rows[0]} if rows else {}
        return predictions(self.model_name, version, outputs, top_k)


# -- command line -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m serving.client",
        description="Query a TF Serving model server (tensorflow_model_server or "
        "python -m serving.server) over gRPC or REST.",
    )
    p.add_argument("--protocol", choices=("grpc", "rest"), default="grpc")
    p.add_argument("--target", help=f"gRPC host:port (default 127.0.0.1:{DEFAULT_GRPC_PORT})")
    p.add_argument(
        "--rest-url", help=f"REST base URL (default http://127.0.0.1:{DEFAULT_REST_PORT})"
    )
    p.add_argument(
        "--port-file",
        help="the port file of python -m serving.server --port-file: connect where it says "
        "(instead of --target / --rest-url)",
    )
    p.add_argument("--model-name", default=DEFAULT_MODEL_NAME)
    pin = p.add_mutually_exclusive_group()
    pin.add_argument("--version", type=int, help="model version (default: the newest)")
    pin.add_argument("--label", help="model version label (e.g. stable)")
    p.add_argument("--signature", default=DEFAULT_SIGNATURE, help="signature name")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per call")
    sub = p.add_subparsers(dest="command", required=True)
    predict = sub.add_parser(
        "predict", help="classify photos (and find keypoints); one JSON line per photo"
    )
    predict.add_argument("images", nargs="+", help="encoded photos (JPEG/PNG/GIF/BMP/WebP)")
    predict.add_argument("--top-k", type=int, default=3)
    sub.add_parser("status", help="the model's version status (JSON)")
    sub.add_parser("metadata", help="the model's signature defs (JSON)")
    return p


def endpoint(args: argparse.Namespace) -> str:
    """The gRPC target or REST base URL the arguments name (``--port-file``, ``--target`` /
    ``--rest-url``, else the default ports on 127.0.0.1); ``ValueError`` when they conflict or
    the port file has no REST port, ``OSError`` when it cannot be read."""
    rest = args.protocol == "rest"
    if args.port_file is None:
        if rest:
            return args.rest_url or f"http://127.0.0.1:{DEFAULT_REST_PORT}"
        return args.target or f"127.0.0.1:{DEFAULT_GRPC_PORT}"
    given = [f for f, v in (("--target", args.target), ("--rest-url", args.rest_url)) if v]
    if given:
        raise ValueError(f"give --port-file or {' / '.join(given)}, not both")
    ports = PortFile.read(args.port_file)
    if not rest:
        return ports.grpc_target
    if ports.rest_url is None:
        raise ValueError(f"port file {args.port_file}: the server has no REST port (--no-rest)")
    return ports.rest_url


def _client(args: argparse.Namespace) -> GrpcClient | RestClient:
    kwargs = dict(
        version=args.version,
        version_label=args.label,
        signature_name=args.signature,
        timeout=args.timeout,
    )
    if args.protocol == "rest":
        return RestClient(endpoint(args), args.model_name, **kwargs)
    return GrpcClient(endpoint(args), args.model_name, **kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        client = _client(args)
    except (OSError, ValueError) as e:
        print(f"serving.client: error: {e}", file=sys.stderr)
        return 2
    try:
        if args.command == "predict":
            images = []
            for path in args.images:
                try:
                    with open(path, "rb") as f:
                        images.append(f.read())
                except OSError as e:
                    print(
                        f"serving.client: error: cannot read image {path!r}: {e}", file=sys.stderr
                    )
                    return 2
            results = client.classify(images, top_k=args.top_k)
            for path, pred in zip(args.images, results, strict=True):
                print(json.dumps({"image": path, **pred.to_dict()}))
        else:
            result = client.status() if args.command == "status" else client.metadata()
            if not isinstance(result, dict):
                result = json_format.MessageToDict(result, preserving_proto_field_name=True)
            print(json.dumps(result, indent=2))
    except (ClientError, ValueError) as e:
        print(f"serving.client: error: {e}", file=sys.stderr)
        return 1
    finally:
        if isinstance(client, GrpcClient):
            client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
