"""A two-stage export (region crops, issue 18) served by the local server: the warm-up
requests replay on load, gRPC and REST answers hold ``collar_box`` / ``collar_found`` equal to
the in-process signatures', ``predict_images`` takes one input per view, and the clients and
command line give the attribute predictions."""

import json

import numpy as np
import pytest
import tensorflow as tf
from serving_helpers import add_version, b64, photo, rest_call
from tensorflow.core.framework import types_pb2

from fashion_keras import export as E
from fashion_keras.export.region_stage import region_output_names
from fashion_keras.heads import get_heads
from fashion_keras.models import build_model
from serving import client as client_cli
from serving.batching import BatchingOptions
from serving.client import GrpcClient, RegionBox, RestClient, predictions, region_boxes
from serving.model_config import ModelConfig
from serving.server import ModelServer

SIZE = 32
BOX, FOUND = region_output_names("collar")
POINTS = get_heads("fashionai_keypoints")[0]
NECKLINE = get_heads("deepfashion6")[3]


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """(version dir, its loaded SavedModel): the joint model whose keypoint head finds the
    collar (three of its keypoints visible) in every photo."""
    model = build_model(
        "seresnet_tiny",
        "deepfashion6,fashionai_keypoints",
        image_size=SIZE,
        regions=("collar",),
        keypoint_filters=16,
    )
    layer = model.get_layer(POINTS.name)
    rng = np.random.default_rng(5)
    for w, scale in [(d.kernel, 3.0) for d in layer.deconvs] + [(layer.final.kernel, 60.0)]:
        fan_in = int(np.prod(w.shape[:-1]))
        w.assign(rng.normal(0.0, scale / np.sqrt(fan_in), w.shape).astype("float32"))
    bias = np.full(POINTS.num_keypoints, -4.0, np.float32)
    bias[[POINTS.index(k) for k in ("neckline_left", "center_front", "shoulder_left")]] = 4.0
    layer.visibility.kernel.assign(np.zeros(layer.visibility.kernel.shape, np.float32))
    layer.visibility.bias.assign(bias)
    path = E.export_saved_model(model, str(tmp_path_factory.mktemp("region_export")))
    return path, tf.saved_model.load(path)


@pytest.fixture(scope="module")
def server(export, tmp_path_factory):
    """Both APIs, with batching; loading the version replays its warm-up requests (one of
    them ``predict_images`` with both views)."""
    base = str(tmp_path_factory.mktemp("region_base"))
    add_version(export[0], base, 1)
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
    """A portrait JPEG and a landscape PNG."""
    return [photo(41, "JPEG", (90, 60)), photo(42, "PNG", (50, 70))]


def reference(export, data, name="serving_default"):
    out = export[1].signatures[name](image_bytes=tf.constant(data))
    return {k: v.numpy() for k, v in out.items()}


def test_grpc_answers_hold_the_region_box(server, export):
    data = images()
    ref = reference(export, data)
    assert ref[FOUND].all(), "the keypoint stage finds the collar"
    assert np.abs(ref[BOX] - [[0, 0, 60, 90], [0, 0, 70, 50]]).max() > 1.0, "not the photo"
    with GrpcClient(f"127.0.0.1:{server.grpc_port}", "fashion", timeout=60) as client:
        _, raw = client.predict({"image_bytes": np.array(data, dtype=object)})
        preds = client.classify(data, top_k=2)
        defs = client.signature_defs()
    assert raw[BOX].dtype == np.float32 and raw[BOX].shape == (2, 4)
    np.testing.assert_allclose(raw[BOX], ref[BOX], atol=1e-4)
    np.testing.assert_array_equal(raw[FOUND], ref[FOUND])
    np.testing.assert_allclose(raw["neckline_probs"], ref["neckline_probs"], atol=1e-5)
    for i, pred in enumerate(preds):
        assert pred.model_version == 1
        order = np.argsort(-ref["neckline_probs"][i])[:2]
        assert [c.class_name for c in pred.heads["neckline"]] == [
            NECKLINE.classes[j] for j in order
        ]
        assert list(pred.keypoints) == [POINTS.name]
    for name in ("serving_default", "predict_examples"):
        box = defs[name].outputs[BOX]
        assert box.dtype == types_pb2.DT_FLOAT
        assert [d.size for d in box.tensor_shape.dim] == [-1, 4]
        assert defs[name].outputs[FOUND].dtype == types_pb2.DT_BOOL
    assert set(defs["predict_images"].inputs) == {E.IMAGES_INPUT, "collar_crop"}
    assert BOX not in defs["predict_images"].outputs


def test_grpc_predict_examples_and_predict_images(server, export):
    jpeg = images()[0]
    example = tf.train.Example()
    example.features.feature[E.EXAMPLE_IMAGE_KEY].bytes_list.value.append(jpeg)
    example.features.feature[E.EXAMPLE_BBOX_KEY].float_list.value.extend([0.1, 0.2, 0.8, 0.9])
    serialized = example.SerializeToString()
    target = f"127.0.0.1:{server.grpc_port}"
    with GrpcClient(target, timeout=60, signature_name="predict_examples") as client:
        _, out = client.predict({"examples": np.array([serialized], dtype=object)})
    direct = export[1].signatures["predict_examples"](examples=tf.constant([serialized]))
    np.testing.assert_allclose(out[BOX], direct[BOX], atol=1e-4)
    assert np.abs(out[BOX] - reference(export, [jpeg])[BOX]).max() > 0.5, "the box is used"
    rng = np.random.default_rng(3)
    views = {
        n: rng.uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
        for n in (E.IMAGES_INPUT, "collar_crop")
    }
    with GrpcClient(target, timeout=60, signature_name="predict_images") as client:
        _, out = client.predict(views)
    direct = export[1].signatures["predict_images"](**{k: tf.constant(v) for k, v in views.items()})
    np.testing.assert_allclose(out["neckline_probs"], direct["neckline_probs"], atol=1e-5)


def test_rest_answers_hold_the_region_box(server, export):
    data = images()
    ref = reference(export, data)
    status, rows = rest_call(
        server, "POST", "/v1/models/fashion:predict", {"instances": [b64(b) for b in data]}
    )
    assert status == 200, rows
    for i, row in enumerate(rows["predictions"]):
        np.testing.assert_allclose(row[BOX], ref[BOX][i], atol=1e-3)
        assert row[FOUND] is True
    status, columns = rest_call(
        server, "POST", "/v1/models/fashion:predict", {"inputs": [b64(b) for b in data]}
    )
    assert status == 200, columns
    np.testing.assert_allclose(columns["outputs"][BOX], ref[BOX], atol=1e-3)
    client = RestClient(f"http://127.0.0.1:{server.rest_port}", "fashion", timeout=60)
    preds = client.classify(data, top_k=1)
    for i, pred in enumerate(preds):
        best = int(np.argmax(ref["neckline_probs"][i]))
        assert [c.class_name for c in pred.heads["neckline"]] == [NECKLINE.classes[best]]
        np.testing.assert_allclose(pred.regions["collar"].box, ref[BOX][i], atol=1e-3)
        assert pred.regions["collar"].found is bool(ref[FOUND][i])


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_command_line_predicts_with_the_region_export(server, tmp_path, capsys, protocol):
    paths = []
    for i, image in enumerate(images()):
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
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["image"] for line in lines] == paths
    for line in lines:
        assert "neckline" in line["heads"] and len(line["heads"]["neckline"]) == 1
        box = line["regions"]["collar"]["box"]
        assert len(box) == 4 and box[0] < box[2] and box[1] < box[3]


def test_results_read_region_boxes_and_name_a_bad_shape():
    outputs = {
        "neckline_probs": np.array([[0.9, 0.1], [0.2, 0.8]]),
        "neckline_class_names": np.array([[b"crew", b"v"], [b"crew", b"v"]]),
        BOX: np.array([[1.0, 2.0, 30.0, 40.0], [0.0, 0.0, 50.0, 60.0]]),
        FOUND: np.array([True, False]),
    }
    first, second = predictions("m", 1, outputs, top_k=1)
    assert first.regions == {"collar": RegionBox((1.0, 2.0, 30.0, 40.0), True)}
    assert second.to_dict()["regions"] == {"collar": {"box": [0, 0, 50, 60], "found": False}}
    assert region_boxes({"neckline_probs": outputs["neckline_probs"]}) == []
    with pytest.raises(ValueError, match=r"collar_box has shape \[2, 3\]"):
        predictions("m", 1, {**outputs, BOX: np.zeros((2, 3))})
