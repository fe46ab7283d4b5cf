"""Bounds on what one request can make the server allocate, decode or hold.

Shapes and element counts are checked against the signature before a tensor is built, a request
carries at most ``--max-examples-per-request`` examples, encoded images over
``--max-image-pixels`` are refused from their header, and the REST server answers oversized,
deeply nested and stalled requests instead of dropping them. All loopback, bounded in count;
every wait has a safety-net timeout that is never the assertion.
"""

import io
import socket
import tracemalloc

import grpc
import pytest
import tensorflow as tf
from PIL import Image
from serving_helpers import SIZE, WAIT_S, b64, local_server, photo, rest_call, tiny_export
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from fashion_keras import export as E
from fashion_keras_datasets.common.images import (
    DEFAULT_MAX_IMAGE_PIXELS as BUILDERS_MAX_IMAGE_PIXELS,
)
from serving import server as server_cli
from serving.errors import ServingError
from serving.limits import DEFAULT_MAX_IMAGE_PIXELS
from serving.signature import Signature
from serving.tensors import tensor_to_array

MAX_REQUEST_BYTES = 256 * 1024
BIG_SIDE = 8000  # an 8000 x 8000 image: 64 megapixels, over the default 40 megapixel cap


@pytest.fixture(scope="module")
def version_dir(tmp_path_factory):
    """The version folder of the tiny export (made once per module)."""
    return tiny_export(tmp_path_factory)[1]


@pytest.fixture(scope="module")
def server(version_dir, tmp_path_factory):
    """A server with the default limits (but a small request-bytes cap)."""
    base = str(tmp_path_factory.mktemp("limits_base"))
    server = local_server(version_dir, base, max_request_bytes=MAX_REQUEST_BYTES).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def big_png():
    """An 8000 x 8000 PNG of a few KB (1-bit, all black): 192 MB once decoded to RGB."""
    buf = io.BytesIO()
    Image.new("1", (BIG_SIDE, BIG_SIDE)).save(buf, format="PNG")
    return buf.getvalue()


def predict(server, inputs, signature="serving_default"):
    """``Predict`` with the bare official stub: the response, or the RpcError raised."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "fashion"
    request.model_spec.signature_name = signature
    for key, proto in inputs.items():
        request.inputs[key].CopyFrom(proto)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    try:
        return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
            request, timeout=WAIT_S
        )
    except grpc.RpcError as e:
        return e
    finally:
        channel.close()


def claimed_tensor(dtype, shape, **values):
    """A TensorProto whose shape claims ``shape`` but which carries only ``values``."""
    proto = tensor_pb2.TensorProto(dtype=dtype, **values)
    for size in shape:
        proto.tensor_shape.dim.add(size=size)
    return proto


def assert_invalid(answer, *fragments):
    assert isinstance(answer, grpc.RpcError), (
        f"the request was answered: {tf.make_ndarray(answer.outputs['fit_probs']).shape[0]} rows"
    )
    assert answer.code() == grpc.StatusCode.INVALID_ARGUMENT, answer.details()
    for fragment in fragments:
        assert fragment in answer.details(), (fragment, answer.details())


def still_serving(server):
    status, body = rest_call(
        server, "POST", "/v1/models/fashion:predict", {"instances": [b64(photo(1))]}
    )
    assert status == 200 and len(body["predictions"]) == 1


# -- gRPC: shapes, element counts and the batch cap, before anything is allocated ---------------


def test_claimed_shape_is_checked_before_the_tensor_is_allocated(server):
    """A 28-byte tensor claiming [20000, S, S, 4] floats (1.3 GB at S=64) allocates nothing."""
    proto = claimed_tensor(types_pb2.DT_FLOAT, [20000, SIZE, SIZE, 4], float_val=[0.0])
    claimed = 20000 * SIZE * SIZE * 4 * 4
    tracemalloc.start()
    try:
        answer = predict(server, {"images": proto}, "predict_images")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert_invalid(answer, "'images'", f"[20000, {SIZE}, {SIZE}, 4]", f"[-1, {SIZE}, {SIZE}, 3]")
    assert peak < claimed / 20, f"{peak} bytes allocated for a {proto.ByteSize()}-byte tensor"


def test_batch_over_the_default_cap_is_refused_before_the_model_runs(server):
    """One small JPEG and a shape of [400]: TF's padding rule would make it 400 images."""
    proto = claimed_tensor(types_pb2.DT_STRING, [400], string_val=[photo(3)])
    assert proto.ByteSize() < 2500
    answer = predict(server, {"image_bytes": proto})
    assert_invalid(answer, "'image_bytes'", "400 examples", "256", "--max-examples-per-request")
    still_serving(server)


def test_a_fill_is_accepted_where_the_signature_bounds_it(server):
    """``make_tensor_proto(0.0, shape=...)`` sends one value; TF Serving fills the rest."""
    proto = tf.make_tensor_proto(0.0, shape=[2, SIZE, SIZE, 3])
    assert len(proto.float_val) == 1 and not proto.tensor_content
    answer = predict(server, {"images": proto}, "predict_images")
    assert not isinstance(answer, grpc.RpcError), answer
    assert tf.make_ndarray(answer.outputs["fit_probs"]).shape[0] == 2


def test_values_must_cover_a_shape_the_signature_leaves_free():
    sig = Signature("s", {"x": tf.TensorSpec([None, None], tf.float32)}, ("y",), None)
    fill = claimed_tensor(types_pb2.DT_FLOAT, [1, 10_000_000], float_val=[1.0])
    with pytest.raises(ServingError) as err:
        tensor_to_array("x", fill, sig, "here")
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    for fragment in ("'x'", "1 value", "[1, 10000000]", "10000000 elements", "[-1, -1]"):
        assert fragment in err.value.message, (fragment, err.value.message)
    short = claimed_tensor(types_pb2.DT_FLOAT, [1, 1000], tensor_content=b"\0" * 12)
    with pytest.raises(ServingError) as err:
        tensor_to_array("x", short, sig, "here")
    for fragment in ("'x'", "malformed TensorProto", "12 bytes", "4000"):
        assert fragment in err.value.message, (fragment, err.value.message)
    exact = claimed_tensor(types_pb2.DT_FLOAT, [2, 2], float_val=[1.0, 2.0, 3.0, 4.0])
    assert tensor_to_array("x", exact, sig, "here").tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_configured_limits_apply_to_grpc_and_rest(version_dir, tmp_path):
    small = [photo(i, shape=(20, 20)) for i in range(3)]  # 400 pixels each
    limited = local_server(
        version_dir, str(tmp_path / "base"), max_examples_per_request=2, max_image_pixels=1000
    )
    with limited as server:
        answer = predict(server, {"image_bytes": tf.make_tensor_proto(small, dtype=tf.string)})
        assert_invalid(answer, "'image_bytes'", "3 examples", "at most 2")
        path = "/v1/models/fashion:predict"
        for body in ({"instances": [b64(x) for x in small]}, {"inputs": [b64(x) for x in small]}):
            status, answer = rest_call(server, "POST", path, body)
            assert status == 400 and "--max-examples-per-request" in answer["error"], answer
        status, answer = rest_call(server, "POST", path, {"instances": [b64(photo(5))]})
        assert status == 400, answer
        for fragment in ("'image_bytes'", "example 0", "30 x 40", "1200 pixels", "1000"):
            assert fragment in answer["error"], (fragment, answer["error"])
        status, answer = rest_call(server, "POST", path, {"instances": [b64(small[0])] * 2})
        assert status == 200 and len(answer["predictions"]) == 2


# -- encoded images: the pixel cap, from the header ---------------------------------------------


def test_default_pixel_cap_is_the_dataset_builders_cap():
    assert DEFAULT_MAX_IMAGE_PIXELS == BUILDERS_MAX_IMAGE_PIXELS == 40_000_000
    args = server_cli.build_parser().parse_args(["--model-base-path", "x"])
    assert args.max_image_pixels == BUILDERS_MAX_IMAGE_PIXELS


def test_oversized_image_is_refused_from_its_header_over_grpc(server, big_png):
    assert len(big_png) < 70_000
    images = tf.make_tensor_proto([photo(1), big_png], dtype=tf.string)
    answer = predict(server, {"image_bytes": images})
    assert_invalid(
        answer,
        "'image_bytes'",
        "example 1",
        f"{BIG_SIDE} x {BIG_SIDE} PNG",
        "40000000",
        "--max-image-pixels",
    )
    example = tf.train.Example()
    example.features.feature[E.EXAMPLE_IMAGE_KEY].bytes_list.value.append(big_png)
    records = tf.make_tensor_proto([example.SerializeToString()], dtype=tf.string)
    answer = predict(server, {"examples": records}, "predict_examples")
    assert_invalid(answer, "'examples'", "example 0", f"feature {E.EXAMPLE_IMAGE_KEY!r}", "PNG")
    still_serving(server)


def test_oversized_image_is_refused_over_rest(server, big_png):
    body = {"instances": [b64(big_png)]}
    status, answer = rest_call(server, "POST", "/v1/models/fashion:predict", body)
    assert status == 400, answer
    for fragment in ("'image_bytes'", "example 0", "PNG", "--max-image-pixels"):
        assert fragment in answer["error"], (fragment, answer["error"])


# -- REST: oversized, deeply nested and stalled requests ----------------------------------------


def test_oversized_body_is_answered_413_not_a_broken_pipe(server):
    body = b" " * (8 * 1024 * 1024)  # far more than the socket buffers hold
    status, answer = rest_call(server, "POST", "/v1/models/fashion:predict", raw=body)
    assert status == 413
    assert str(MAX_REQUEST_BYTES) in answer["error"] and "--max-request-bytes" in answer["error"]
    # with Expect: 100-continue the client learns it before sending the body at all
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=WAIT_S) as sock:
        sock.sendall(
            b"POST /v1/models/fashion:predict HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % len(body)
        )
        head = sock.recv(64)
    assert head.startswith(b"HTTP/1.1 413"), head
    still_serving(server)


def test_deeply_nested_json_is_a_400_not_a_dropped_connection(server):
    path = "/v1/models/fashion:predict"
    status, answer = rest_call(server, "POST", path, raw=b"[" * 100_000 + b"]" * 100_000)
    assert status == 400 and "nest" in answer["error"], answer
    deep = "x"
    for _ in range(500):
        deep = [deep]
    status, answer = rest_call(server, "POST", path, {"instances": [deep]})
    assert status == 400, answer
    for fragment in ("'image_bytes'", "instances[0]", "1 dimension"):
        assert fragment in answer["error"], (fragment, answer["error"])
    still_serving(server)


def test_stalled_uploads_are_timed_out_and_others_are_served(version_dir, tmp_path):
    with local_server(version_dir, str(tmp_path / "base"), rest_read_timeout_seconds=1.0) as server:
        stalled = []
        try:
            for i in range(50):  # half stop inside the headers, half inside the body
                sock = socket.create_connection(("127.0.0.1", server.rest_port), timeout=60)
                stalled.append(sock)
                head = b"POST /v1/models/fashion:predict HTTP/1.1\r\nHost: x\r\n"
                if i % 2:
                    head += b'Content-Length: 1000\r\n\r\n{"instances": '
                sock.sendall(head)
            still_serving(server)
            answers = [_read_to_eof(sock) for sock in stalled]
        finally:
            for sock in stalled:
                sock.close()
        still_serving(server)
    for i, answer in enumerate(answers):
        if i % 2:
            assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
            assert b"--rest-read-timeout-seconds" in answer
        else:
            assert answer == b"", answer[:200]


def _read_to_eof(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (raises on the timeout)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)
