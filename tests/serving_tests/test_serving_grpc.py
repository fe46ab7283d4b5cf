"""The local server over gRPC: the project client, the bare official stub, and bad requests."""

import threading

import grpc
import numpy as np
import pytest
import tensorflow as tf
from serving_helpers import HEADS, SIZE, add_version, photo, reference, signature, tiny_export
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from fashion_keras import export as E
from serving.batching import BatchingOptions
from serving.client import ClientError, GrpcClient
from serving.model_config import ModelConfig
from serving.server import ModelServer

MAX_REQUEST_BYTES = 256 * 1024


@pytest.fixture(scope="module")
def version_dir(tmp_path_factory):
    """The version folder of the tiny export (made once per module)."""
    return tiny_export(tmp_path_factory)[1]


def _serve(version_dir, tmp_path_factory, batching):
    base = str(tmp_path_factory.mktemp("grpc_base"))
    add_version(version_dir, base, 1)
    server = ModelServer(
        [ModelConfig("fashion", base, version_labels={"stable": 1})],
        grpc_port=0,
        rest_port=None,
        batching=batching,
        poll_wait_seconds=0,
        max_request_bytes=MAX_REQUEST_BYTES,
    )
    return server.start()


@pytest.fixture(scope="module")
def batching_server(version_dir, tmp_path_factory):
    server = _serve(
        version_dir, tmp_path_factory, BatchingOptions(max_batch_size=8, batch_timeout_micros=2000)
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def direct_server(version_dir, tmp_path_factory):
    server = _serve(version_dir, tmp_path_factory, None)
    yield server
    server.stop()


@pytest.fixture(params=["batching", "direct"])
def server(request):
    return request.getfixturevalue(f"{request.param}_server")


def target(server):
    return f"127.0.0.1:{server.grpc_port}"


def test_client_classify_matches_in_process_model(server, version_dir):
    images = [photo(1), photo(2, "PNG", (25, 50))]
    ref = reference(version_dir, images)
    with GrpcClient(target(server), "fashion", timeout=60) as client:
        preds = client.classify(images, top_k=2)
        spec, raw = client.predict({"image_bytes": np.array(images, dtype=object)})
    assert spec.name == "fashion" and spec.version.value == 1
    assert spec.signature_name == "serving_default"
    assert len(preds) == 2
    for i, pred in enumerate(preds):
        assert pred.model_version == 1
        assert set(pred.heads) == {h.name for h in HEADS}
        for h in HEADS:
            probs = ref[f"{h.name}_probs"][i]
            order = np.argsort(-probs)[:2]
            assert [c.class_index for c in pred.heads[h.name]] == order.tolist()
            assert [c.class_name for c in pred.heads[h.name]] == [h.classes[j] for j in order]
            np.testing.assert_allclose(
                [c.probability for c in pred.heads[h.name]], probs[order], atol=1e-5
            )
    for key, value in ref.items():
        if value.dtype == object:
            assert raw[key].tolist() == value.tolist()
        else:
            np.testing.assert_allclose(raw[key], value, atol=1e-5)


def test_version_and_label_and_other_signatures(server, version_dir):
    images = np.random.default_rng(0).uniform(0, 255, (3, SIZE, SIZE, 3)).astype(np.float32)
    for kwargs in ({"version": 1}, {"version_label": "stable"}):
        with GrpcClient(target(server), timeout=60, signature_name="predict_images", **kwargs) as c:
            spec, out = c.predict(
                {"images": images}, output_filter=["sleeve_probs", "sleeve_label"]
            )
        assert spec.version.value == 1 and spec.signature_name == "predict_images"
        assert set(out) == {"sleeve_probs", "sleeve_label"}
        direct = signature(version_dir, "predict_images")(images=images)
        np.testing.assert_allclose(out["sleeve_probs"], direct["sleeve_probs"], atol=1e-5)
    with GrpcClient(target(server), timeout=60, signature_name="predict_examples") as client:
        example = tf.train.Example()
        example.features.feature[E.EXAMPLE_IMAGE_KEY].bytes_list.value.append(photo(3))
        _, out = client.predict({"examples": np.array([example.SerializeToString()], dtype=object)})
    ref = reference(version_dir, [photo(3)])
    np.testing.assert_allclose(out["fit_probs"], ref["fit_probs"], atol=1e-5)


def test_metadata_and_status(server):
    with GrpcClient(target(server), timeout=60) as client:
        defs = client.signature_defs()
        status = client.status()
        assert client.image_input_name() == E.SERVING_INPUT
    assert {"serving_default", "predict_images", "predict_examples"} <= set(defs)
    assert list(defs["predict_images"].inputs) == [E.IMAGES_INPUT]
    assert set(defs["serving_default"].outputs) == {n for h in HEADS for n in E.output_names(h)}
    [entry] = status.model_version_status
    assert entry.version == 1
    assert entry.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert entry.status.error_code == 0


def test_official_stub_only(batching_server):
    """A client written with nothing but grpcio and tensorflow_serving.apis."""
    channel = grpc.insecure_channel(target(batching_server))
    try:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "fashion"
        request.model_spec.signature_name = "serving_default"
        request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([photo(7)], dtype=tf.string))
        response = stub.Predict(request)  # no deadline at all
        assert response.model_spec.version.value == 1
        probs = tf.make_ndarray(response.outputs["texture_probs"])
        assert probs.shape == (1, 7)
        np.testing.assert_allclose(probs.sum(), 1.0, atol=1e-5)
        label = tf.make_ndarray(response.outputs["texture_label"])[0].decode()
        names = [n.decode() for n in tf.make_ndarray(response.outputs["texture_class_names"])[0]]
        assert label == names[int(probs.argmax())]

        meta = stub.GetModelMetadata(
            get_model_metadata_pb2.GetModelMetadataRequest(
                model_spec={"name": "fashion"}, metadata_field=["signature_def"]
            ),
            timeout=60,
        )
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        assert meta.metadata["signature_def"].Unpack(sig_map)
        assert "predict_examples" in sig_map.signature_def

        models = model_service_pb2_grpc.ModelServiceStub(channel)
        status = models.GetModelStatus(
            get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "fashion"}), timeout=60
        )
        assert [s.version for s in status.model_version_status] == [1]
    finally:
        channel.close()


def _predict_request(
    inputs=None, name="fashion", signature="serving_default", output_filter=(), **spec
):
    request = predict_pb2.PredictRequest(output_filter=list(output_filter))
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    for key, proto in (inputs or {}).items():
        request.inputs[key].CopyFrom(proto)
    return request


def _jpegs(*seeds):
    return tf.make_tensor_proto([photo(s) for s in seeds], dtype=tf.string)


def _malformed_tensor():
    proto = tf.make_tensor_proto(np.zeros([1, SIZE, SIZE, 3], np.float32))
    proto.tensor_content = proto.tensor_content[:-7]
    return proto


BAD_REQUESTS = {
    "wrong input name": (
        _predict_request({"photo": _jpegs(1)}),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["'photo'", "['image_bytes']"],
    ),
    "wrong dtype": (
        _predict_request({"image_bytes": tf.make_tensor_proto(np.zeros([1], np.float32))}),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["'image_bytes'", "DT_FLOAT", "DT_STRING"],
    ),
    "undecodable image": (
        _predict_request(
            {"image_bytes": tf.make_tensor_proto([photo(1), b"not an image"], dtype=tf.string)}
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["example 1", "'image_bytes'", "Unknown image file format"],
    ),
    "empty batch": (
        _predict_request(
            {"image_bytes": tf.make_tensor_proto(np.array([], dtype=object), tf.string)}
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["'image_bytes'", "empty batch", "[0]"],
    ),
    "no inputs": (
        _predict_request({}),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["no inputs", "['image_bytes']"],
    ),
    "wrong image size": (
        _predict_request(
            {"images": tf.make_tensor_proto(np.zeros([1, SIZE + 1, SIZE, 3], np.float32))},
            signature="predict_images",
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["'images'", f"[1, {SIZE + 1}, {SIZE}, 3]", f"[-1, {SIZE}, {SIZE}, 3]"],
    ),
    "truncated tensor content": (
        _predict_request({"images": _malformed_tensor()}, signature="predict_images"),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["'images'", "malformed TensorProto"],
    ),
    "unknown output in filter": (
        _predict_request({"image_bytes": _jpegs(1)}, output_filter=["colour_probs"]),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["'colour_probs'", "not an output"],
    ),
    "unknown model": (
        _predict_request({"image_bytes": _jpegs(1)}, name="shoes"),
        grpc.StatusCode.NOT_FOUND,
        ["'shoes'", "['fashion']"],
    ),
    "empty model name": (
        _predict_request({"image_bytes": _jpegs(1)}, name=""),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["model_spec.name is empty"],
    ),
    "unknown signature": (
        _predict_request({"image_bytes": _jpegs(1)}, signature="predict_shoes"),
        grpc.StatusCode.NOT_FOUND,
        ["'predict_shoes'", "serving_default"],
    ),
    "unknown version": (
        _predict_request({"image_bytes": _jpegs(1)}, version=9),
        grpc.StatusCode.NOT_FOUND,
        ["Specific(fashion, 9)", "[1]"],
    ),
    "unknown label": (
        _predict_request({"image_bytes": _jpegs(1)}, version_label="canary"),
        grpc.StatusCode.NOT_FOUND,
        ["'canary'", "'stable'"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_malformed_predict_gets_a_clear_status_and_the_server_keeps_serving(server, case):
    request, code, fragments = BAD_REQUESTS[case]
    channel = grpc.insecure_channel(target(server))
    try:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.Predict(request, timeout=60)
        assert err.value.code() == code, err.value.details()
        for fragment in fragments:
            assert fragment in err.value.details(), (fragment, err.value.details())
        good = stub.Predict(_predict_request({"image_bytes": _jpegs(1)}), timeout=60)
        assert good.model_spec.version.value == 1
    finally:
        channel.close()


def test_bad_metadata_and_status_requests(server):
    channel = grpc.insecure_channel(target(server))
    try:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for fields, fragment in (([], "metadata_field is empty"), (["colour"], "'colour'")):
            with pytest.raises(grpc.RpcError) as err:
                stub.GetModelMetadata(
                    get_model_metadata_pb2.GetModelMetadataRequest(
                        model_spec={"name": "fashion"}, metadata_field=fields
                    ),
                    timeout=60,
                )
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert fragment in err.value.details()
        models = model_service_pb2_grpc.ModelServiceStub(channel)
        for spec, code in (
            ({"name": "shoes"}, grpc.StatusCode.NOT_FOUND),
            ({"name": "fashion", "version": {"value": 4}}, grpc.StatusCode.NOT_FOUND),
        ):
            with pytest.raises(grpc.RpcError) as err:
                models.GetModelStatus(
                    get_model_status_pb2.GetModelStatusRequest(model_spec=spec), timeout=60
                )
            assert err.value.code() == code
        with pytest.raises(grpc.RpcError) as err:
            models.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(), timeout=60)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        channel.close()


def test_request_over_the_size_cap_is_refused(server):
    big = np.random.default_rng(0).bytes(MAX_REQUEST_BYTES + 1000)
    with GrpcClient(target(server), timeout=60) as client:
        with pytest.raises(ClientError) as err:
            client.predict({"image_bytes": np.array([big], dtype=object)})
        assert err.value.status == "RESOURCE_EXHAUSTED"
        assert client.classify([photo(4)])[0].model_version == 1


def test_concurrent_good_and_bad_requests_only_the_bad_one_fails(batching_server, version_dir):
    images = [photo(20 + i) for i in range(7)]
    outcomes: dict[int, object] = {}

    def call(i):
        with GrpcClient(target(batching_server), timeout=60) as client:
            payload = [b"\x89PNG broken"] if i == 7 else [images[i]]
            try:
                outcomes[i] = client.predict({"image_bytes": np.array(payload, dtype=object)})[1]
            except ClientError as e:
                outcomes[i] = e

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    ref = reference(version_dir, images)
    assert isinstance(outcomes[7], ClientError) and outcomes[7].status == "INVALID_ARGUMENT"
    for i in range(7):
        np.testing.assert_allclose(
            outcomes[i]["sleeve_probs"][0], ref["sleeve_probs"][i], atol=1e-5
        )
