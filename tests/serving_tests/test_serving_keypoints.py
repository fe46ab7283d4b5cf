"""A model with a keypoint head next to a softmax head, served by the local server: gRPC and
REST answers, both clients and the command line name each keypoint, in the photo's pixels."""

import json

import numpy as np
import pytest
import tensorflow as tf
from serving_helpers import (
    HEADS,
    KEYPOINT_SIZE,
    POINTS,
    add_version,
    b64,
    keypoint_export,
    photo,
    rest_call,
    signature,
)
from tensorflow.core.framework import types_pb2

from fashion_keras import export as E
from serving import client as client_cli
from serving.batching import BatchingOptions
from serving.client import GrpcClient, KeypointScore, RestClient
from serving.model_config import ModelConfig
from serving.results import ClassScore, Prediction, keypoint_lists, predictions
from serving.server import ModelServer

SLEEVE = HEADS[1]
K = POINTS.num_keypoints
KEYPOINT_OUTPUTS = set(E.output_names(POINTS))


@pytest.fixture(scope="module")
def version_dir(tmp_path_factory):
    return keypoint_export(tmp_path_factory)[1]


@pytest.fixture(scope="module")
def server(version_dir, tmp_path_factory):
    """Both APIs, with batching; loading the version replays its warm-up requests."""
    base = str(tmp_path_factory.mktemp("keypoint_base"))
    add_version(version_dir, base, 1)
    server = ModelServer(
        [ModelConfig("fashion", base)],
        grpc_port=0,
        rest_port=0,
        batching=BatchingOptions(max_batch_size=8, batch_timeout_micros=1000),
        poll_wait_seconds=0,
    ).start()
    yield server
    server.stop()


def images() -> list[bytes]:
    """A portrait JPEG and a landscape PNG (the pad to square on different sides)."""
    return [photo(31, "JPEG", (90, 60)), photo(32, "PNG", (50, 70))]


def reference(version_dir, data):
    """In-process ``serving_default`` outputs (the ground truth)."""
    out = signature(version_dir)(image_bytes=tf.constant(data))
    return {k: v.numpy() for k, v in out.items()}


def check_prediction(pred, ref, i, top_k, atol=1e-4):
    probs = ref["sleeve_probs"][i]
    order = np.argsort(-probs)[:top_k]
    assert [c.class_name for c in pred.heads[SLEEVE.name]] == [SLEEVE.classes[j] for j in order]
    [points] = pred.keypoints.values()
    assert list(pred.keypoints) == [POINTS.name]
    assert [p.keypoint_index for p in points] == list(range(K))
    assert [p.keypoint_name for p in points] == list(POINTS.keypoints)
    np.testing.assert_allclose(
        [(p.x, p.y) for p in points], ref["garment_points_keypoints"][i], atol=atol
    )
    np.testing.assert_allclose(
        [p.score for p in points], ref["garment_points_scores"][i], atol=atol
    )


def test_grpc_answers_and_client_name_the_keypoints(server, version_dir):
    data = images()
    ref = reference(version_dir, data)
    assert np.abs(ref["garment_points_keypoints"][0] - ref["garment_points_keypoints"][1]).max() > 1
    with GrpcClient(f"127.0.0.1:{server.grpc_port}", "fashion", timeout=60) as client:
        preds = client.classify(data, top_k=2)
        _, raw = client.predict({"image_bytes": np.array(data, dtype=object)})
        defs = client.signature_defs()
    for i, pred in enumerate(preds):
        assert pred.model_version == 1
        check_prediction(pred, ref, i, top_k=2)
    assert raw["garment_points_keypoints"].dtype == np.float32
    assert raw["garment_points_keypoints"].shape == (2, K, 2)
    np.testing.assert_allclose(raw["garment_points_keypoints"], ref["garment_points_keypoints"])
    assert (
        raw["garment_points_keypoint_names"].tolist()
        == [[k.encode() for k in POINTS.keypoints]] * 2
    )
    for name in E.SIGNATURES:
        outputs = defs[name].outputs
        assert KEYPOINT_OUTPUTS | set(E.output_names(SLEEVE)) == set(outputs), name
        kp = outputs["garment_points_keypoints"]
        assert kp.dtype == types_pb2.DT_FLOAT
        assert [d.size for d in kp.tensor_shape.dim] == [-1, K, 2]
        assert outputs["garment_points_keypoint_names"].dtype == types_pb2.DT_STRING


def test_grpc_predict_examples_with_a_box_and_predict_images(server, version_dir):
    jpeg = images()[0]
    example = tf.train.Example()
    example.features.feature[E.EXAMPLE_IMAGE_KEY].bytes_list.value.append(jpeg)
    example.features.feature[E.EXAMPLE_BBOX_KEY].float_list.value.extend([0.1, 0.2, 0.8, 0.9])
    target = f"127.0.0.1:{server.grpc_port}"
    with GrpcClient(target, timeout=60, signature_name="predict_examples") as client:
        _, out = client.predict({"examples": np.array([example.SerializeToString()], dtype=object)})
    direct = signature(version_dir, "predict_examples")(
        examples=tf.constant([example.SerializeToString()])
    )
    np.testing.assert_allclose(
        out["garment_points_keypoints"], direct["garment_points_keypoints"], atol=1e-4
    )
    plain = reference(version_dir, [jpeg])["garment_points_keypoints"]
    assert np.abs(out["garment_points_keypoints"] - plain).max() > 1.0, "the box is used"
    views = np.random.default_rng(3).uniform(0, 255, (2, KEYPOINT_SIZE, KEYPOINT_SIZE, 3))
    with GrpcClient(target, timeout=60, signature_name="predict_images") as client:
        _, out = client.predict({"images": views.astype(np.float32)})
    direct = signature(version_dir, "predict_images")(images=tf.constant(views, tf.float32))
    np.testing.assert_allclose(
        out["garment_points_keypoints"], direct["garment_points_keypoints"], atol=1e-4
    )


def test_rest_answers_and_client_name_the_keypoints(server, version_dir):
    data = images()
    ref = reference(version_dir, data)
    client = RestClient(f"http://127.0.0.1:{server.rest_port}", "fashion", timeout=60)
    preds = client.classify(data, top_k=3)
    for i, pred in enumerate(preds):
        assert pred.model_version == 1
        check_prediction(pred, ref, i, top_k=3)
    status, rows = rest_call(
        server, "POST", "/v1/models/fashion:predict", {"instances": [b64(b) for b in data]}
    )
    assert status == 200
    row = rows["predictions"][1]
    assert row["garment_points_keypoint_names"] == list(POINTS.keypoints)
    np.testing.assert_allclose(
        row["garment_points_keypoints"], ref["garment_points_keypoints"][1], atol=1e-4
    )
    status, columns = rest_call(
        server, "POST", "/v1/models/fashion:predict", {"inputs": [b64(b) for b in data]}
    )
    assert status == 200
    np.testing.assert_allclose(
        columns["outputs"]["garment_points_scores"], ref["garment_points_scores"], atol=1e-6
    )


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_command_line_prints_a_keypoint_section(server, version_dir, tmp_path, capsys, protocol):
    data = images()
    paths = []
    for i, image in enumerate(data):
        path = tmp_path / f"photo{i}"
        path.write_bytes(image)
        paths.append(str(path))
    where = (
        ["--target", f"127.0.0.1:{server.grpc_port}"]
        if protocol == "grpc"
        else ["--protocol", "rest", "--rest-url", f"http://127.0.0.1:{server.rest_port}"]
    )
    code = client_cli.main([*where, "--timeout", "60", "predict", "--top-k", "1", *paths])
    out = capsys.readouterr().out
    assert code == 0
    ref = reference(version_dir, data)
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["image"] for line in lines] == paths
    for i, line in enumerate(lines):
        assert set(line) == {"image", "model_name", "model_version", "heads", "keypoints"}
        assert list(line["heads"]) == [SLEEVE.name] and len(line["heads"][SLEEVE.name]) == 1
        points = line["keypoints"][POINTS.name]
        assert [p["keypoint_name"] for p in points] == list(POINTS.keypoints)
        assert set(points[0]) == {"keypoint_index", "keypoint_name", "x", "y", "score"}
        np.testing.assert_allclose(
            [(p["x"], p["y"]) for p in points], ref["garment_points_keypoints"][i], atol=1e-3
        )


def _outputs(n=2):
    rng = np.random.default_rng(0)
    names = np.array([[k.encode() for k in POINTS.keypoints]] * n, dtype=object)
    return {
        "garment_points_keypoints": rng.uniform(0, 100, (n, K, 2)).astype(np.float32),
        "garment_points_scores": rng.uniform(0, 1, (n, K)).astype(np.float32),
        "garment_points_keypoint_names": names,
    }


def test_results_of_a_keypoint_only_model_and_of_a_softmax_only_one():
    outputs = _outputs()
    [first, second] = predictions("fashion", 4, outputs)
    assert first.heads == {} and list(second.keypoints) == [POINTS.name]
    p = second.keypoints[POINTS.name][3]
    xy = outputs["garment_points_keypoints"][1, 3]
    assert p == KeypointScore(
        3, "hem_right", float(xy[0]), float(xy[1]), float(outputs["garment_points_scores"][1, 3])
    )
    assert first.to_dict()["keypoints"][POINTS.name][0]["keypoint_name"] == "collar_left"
    softmax_only = Prediction("fashion", 1, {"sleeve": [ClassScore(0, "long", 0.9)]})
    assert "keypoints" not in softmax_only.to_dict()
    assert keypoint_lists({"sleeve_probs": np.ones((1, 2))}) == []


@pytest.mark.parametrize(
    "change, fragment",
    [
        (lambda o: o.pop("garment_points_keypoint_names"), "no garment_points_keypoint_names"),
        (lambda o: o.pop("garment_points_scores"), "no garment_points_scores"),
        (
            lambda o: o.update(garment_points_scores=np.zeros((2, K + 1), np.float32)),
            f"[2, {K + 1}]",
        ),
        (lambda o: [o.pop(k) for k in list(o)], "no '<head>_probs' or '<head>_keypoints'"),
    ],
)
def test_results_name_what_is_missing_or_mismatched(change, fragment):
    outputs = _outputs()
    change(outputs)
    with pytest.raises(ValueError) as err:
        predictions("fashion", 1, outputs)
    assert fragment in str(err.value)
