"""The local server's REST API: predict (row and columnar), status, metadata, bad requests."""

import http.client
import json

import numpy as np
import pytest
from serving_helpers import HEADS, SIZE, add_version, b64, photo, reference, rest_call, tiny_export

from serving.batching import BatchingOptions
from serving.client import ClientError, RestClient
from serving.model_config import ModelConfig
from serving.server import ModelServer

MAX_REQUEST_BYTES = 256 * 1024


@pytest.fixture(scope="module")
def version_dir(tmp_path_factory):
    """The version folder of the tiny export (made once per module)."""
    return tiny_export(tmp_path_factory)[1]


@pytest.fixture(scope="module")
def server(version_dir, tmp_path_factory):
    base = str(tmp_path_factory.mktemp("rest_base"))
    add_version(version_dir, base, 3)
    server = ModelServer(
        [ModelConfig("fashion", base, version_labels={"stable": 3})],
        grpc_port=0,
        rest_port=0,
        batching=BatchingOptions(max_batch_size=8, batch_timeout_micros=1000),
        poll_wait_seconds=0,
        max_request_bytes=MAX_REQUEST_BYTES,
    ).start()
    yield server
    server.stop()


def test_rest_client_classify_matches_in_process_model(server, version_dir):
    images = [photo(11), photo(12, "PNG")]
    ref = reference(version_dir, images)
    for kwargs in ({}, {"version": 3}, {"version_label": "stable"}):
        client = RestClient(f"http://127.0.0.1:{server.rest_port}", "fashion", timeout=60, **kwargs)
        preds = client.classify(images, top_k=3)
        assert len(preds) == 2
        for i, pred in enumerate(preds):
            assert (pred.model_name, pred.model_version) == ("fashion", 3), kwargs
            for h in HEADS:
                probs = ref[f"{h.name}_probs"][i]
                order = np.argsort(-probs)[:3]
                assert [c.class_index for c in pred.heads[h.name]] == order.tolist()
                assert [c.class_name for c in pred.heads[h.name]] == [h.classes[j] for j in order]
                np.testing.assert_allclose(
                    [c.probability for c in pred.heads[h.name]], probs[order], atol=1e-5
                )


def test_row_and_columnar_formats(server, version_dir):
    image = photo(13)
    ref = reference(version_dir, [image])
    status, named = rest_call(
        server,
        "POST",
        "/v1/models/fashion:predict",
        {"signature_name": "serving_default", "instances": [{"image_bytes": b64(image)}]},
    )
    assert status == 200
    [row] = named["predictions"]
    assert row["sleeve_label"] == ref["sleeve_label"][0].decode()
    assert row["sleeve_class_names"] == [c.decode() for c in ref["sleeve_class_names"][0]]
    np.testing.assert_allclose(row["fit_probs"], ref["fit_probs"][0], atol=1e-5)
    status, columnar = rest_call(
        server, "POST", "/v1/models/fashion/versions/3:predict", {"inputs": [b64(image)]}
    )
    assert status == 200
    np.testing.assert_allclose(columnar["outputs"]["fit_probs"], ref["fit_probs"], atol=1e-5)
    images = np.full((2, SIZE, SIZE, 3), 127.0).tolist()
    status, floats = rest_call(
        server,
        "POST",
        "/v1/models/fashion:predict",
        {"signature_name": "predict_images", "instances": images},
    )
    assert status == 200 and len(floats["predictions"]) == 2


def test_status_and_metadata(server):
    status, body = rest_call(server, "GET", "/v1/models/fashion")
    assert status == 200
    assert body == {
        "model_version_status": [
            {
                "version": "3",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
    assert rest_call(server, "GET", "/v1/models/fashion/labels/stable")[1] == body
    client = RestClient(f"http://127.0.0.1:{server.rest_port}", timeout=60)
    meta = client.metadata()
    assert meta["model_spec"]["version"] == "3"
    sigs = meta["metadata"]["signature_def"]["signature_def"]
    assert sigs["predict_examples"]["inputs"]["examples"]["dtype"] == "DT_STRING"
    assert client.status() == body


BAD_REST = {
    "not JSON": ("POST", "/v1/models/fashion:predict", b"{instances", 400, ["not valid JSON"]),
    "not an object": ("POST", "/v1/models/fashion:predict", [1, 2], 400, ["JSON object"]),
    "both formats": (
        "POST",
        "/v1/models/fashion:predict",
        {"instances": [], "inputs": []},
        400,
        ["exactly one of 'instances'", "'inputs'"],
    ),
    "unknown field": (
        "POST",
        "/v1/models/fashion:predict",
        {"instance": []},
        400,
        ["unknown field 'instance'"],
    ),
    "empty batch": (
        "POST",
        "/v1/models/fashion:predict",
        {"instances": []},
        400,
        ["'instances' is empty"],
    ),
    "bad base64": (
        "POST",
        "/v1/models/fashion:predict",
        {"instances": [{"b64": "***"}]},
        400,
        ["'image_bytes'", "instances[0].b64", "base64"],
    ),
    "wrong input name": (
        "POST",
        "/v1/models/fashion:predict",
        {"instances": [{"photo": {"b64": ""}}]},
        400,
        ["instances[0]", "['photo']", "['image_bytes']"],
    ),
    "wrong dtype": (
        "POST",
        "/v1/models/fashion:predict",
        {"signature_name": "predict_images", "instances": [{"b64": "AAAA"}]},
        400,
        ["'images'", "DT_FLOAT"],
    ),
    "number for bytes": (
        "POST",
        "/v1/models/fashion:predict",
        {"instances": [3.5]},
        400,
        ["'image_bytes'", "instances[0]", "3.5", "DT_STRING"],
    ),
    "ragged images": (
        "POST",
        "/v1/models/fashion:predict",
        {"signature_name": "predict_images", "inputs": [[[0.0] * 3], [[0.0] * 3] * 2]},
        400,
        ["'images'", "regular nested list"],
    ),
    "undecodable image": (
        "POST",
        "/v1/models/fashion:predict",
        {"instances": [b64(b"GIF89a nope")]},
        400,
        ["example 0", "'image_bytes'"],
    ),
    "unknown model": ("POST", "/v1/models/shoes:predict", {"instances": []}, 404, ["'shoes'"]),
    "unknown signature": (
        "POST",
        "/v1/models/fashion:predict",
        {"signature_name": "predict_shoes", "instances": [b64(b"")]},
        404,
        ["'predict_shoes'"],
    ),
    "unknown version": (
        "POST",
        "/v1/models/fashion/versions/8:predict",
        {"instances": [b64(b"")]},
        404,
        ["Specific(fashion, 8)"],
    ),
    "unknown label": ("GET", "/v1/models/fashion/labels/canary", None, 404, ["'canary'"]),
    "malformed URL": ("GET", "/v2/fashion", None, 404, ["malformed URL"]),
    "version not a number": ("GET", "/v1/models/fashion/versions/x", None, 404, ["'x'"]),
    "GET predict": ("GET", "/v1/models/fashion:predict", None, 405, ["POST"]),
    "classify": (
        "POST",
        "/v1/models/fashion:classify",
        {"examples": []},
        501,
        [":classify", ":predict"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_REST))
def test_bad_rest_requests_get_clear_errors_and_the_server_keeps_serving(server, case):
    method, path, body, code, fragments = BAD_REST[case]
    raw = body if isinstance(body, bytes) else None
    status, answer = rest_call(server, method, path, None if raw else body, raw=raw)
    assert status == code, answer
    for fragment in fragments:
        assert fragment in answer["error"], (fragment, answer["error"])
    status, good = rest_call(
        server, "POST", "/v1/models/fashion:predict", {"instances": [b64(photo(1))]}
    )
    assert status == 200 and len(good["predictions"]) == 1


def test_body_over_the_cap_is_refused_without_reading_it(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=60)
    try:
        conn.putrequest("POST", "/v1/models/fashion:predict")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(MAX_REQUEST_BYTES + 1))
        conn.endheaders()  # the body is never sent: the server answers from the headers
        response = conn.getresponse()
        body = json.loads(response.read())
    finally:
        conn.close()
    assert response.status == 413
    assert str(MAX_REQUEST_BYTES) in body["error"] and "--max-request-bytes" in body["error"]
    status, answer = rest_call(server, "POST", "/v1/models/fashion:predict", raw=b"{}", headers={})
    assert status == 400  # a small body is read and judged normally


def test_rest_client_reports_http_errors(server):
    client = RestClient(f"http://127.0.0.1:{server.rest_port}", "shoes", timeout=60)
    with pytest.raises(ClientError) as err:
        client.classify([photo(1)])
    assert err.value.status == 404 and "'shoes'" in err.value.message
