"""Fetching checkpoints by name (fashion_keras.models.checkpoints.download) from a real HTTP
server on 127.0.0.1 that serves timm-format checkpoints written here; nothing goes further."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import keras
import numpy as np
import pytest

from fashion_keras.models import checkpoints as C
from fashion_keras.models import create_model, get_backbone
from fashion_keras.models.checkpoints import download
from fashion_keras.models.presets import PRETRAINED, PretrainedInfo, pretrained_table
from tests.models.test_checkpoints import _random_state

HF_ID = "timm/seresnet_tiny.test_in1k"
HF_FILE = f"/{HF_ID}/resolve/main/model.safetensors"
CONFIG = {
    "architecture": "seresnet_tiny",
    "num_classes": 1000,
    "pretrained_cfg": {
        "tag": "test_in1k",
        "input_size": [3, 48, 48],
        "interpolation": "bilinear",
        "crop_pct": 0.9,
        "mean": [0.5, 0.4, 0.3],
        "std": [0.2, 0.25, 0.3],
    },
}


class Site:
    """What the test server serves and what it was asked for."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.headers: dict[str, dict[str, str]] = {}  # extra response headers per path
        self.redirects: dict[str, tuple[str, dict[str, str]]] = {}  # path -> (target, headers)
        self.truncated: set[str] = set()  # full Content-Length, half the body
        self.requests: list[tuple[str, str]] = []
        self.url = ""
        self.stop = lambda: None

    def publish_hf(self, repo_id: str, weights: bytes, config: dict, *, sha256: str = "") -> None:
        """Hugging Face's layout: the LFS file answers with a redirect to the CDN carrying
        X-Linked-Etag (its SHA-256) and X-Linked-Size; config.json is served directly."""
        sha = sha256 or hashlib.sha256(weights).hexdigest()
        cdn = f"/cdn/{hashlib.sha256(weights).hexdigest()}"
        self.files[cdn] = weights
        linked = {"X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(weights))}
        self.redirects[f"/{repo_id}/resolve/main/model.safetensors"] = (cdn, linked)
        self.files[f"/{repo_id}/resolve/main/config.json"] = json.dumps(config).encode()

    def gets(self) -> list[str]:
        return [path for method, path in self.requests if method == "GET"]


@pytest.fixture
def site(tmp_path, monkeypatch) -> Iterator[Site]:
    """A ThreadingHTTPServer on 127.0.0.1; KERAS_HOME and HF_ENDPOINT point at tmp / it."""
    state = Site()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep the test output clean
            pass

        def _answer(self, body: bool) -> None:
            state.requests.append((self.command, self.path))
            if self.path in state.redirects:
                target, headers = state.redirects[self.path]
                self.send_response(302)
                self.send_header("Location", state.url + target)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = state.files.get(self.path)
            if data is None:
                self.send_error(404, "Entry not found")
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            for key, value in state.headers.get(self.path, {}).items():
                self.send_header(key, value)
            self.end_headers()
            if body:
                self.wfile.write(data[: len(data) // 2] if self.path in state.truncated else data)

        def do_GET(self) -> None:
            self._answer(body=True)

        def do_HEAD(self) -> None:
            self._answer(body=False)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_port}"

    def stop() -> None:
        httpd.shutdown()
        httpd.server_close()
        state.stop = lambda: None

    state.stop = stop
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("HF_ENDPOINT", state.url)
    try:
        yield state
    finally:
        state.stop()


def _checkpoint_bytes(tmp_path, seed: int = 0) -> tuple[bytes, dict[str, np.ndarray]]:
    """A timm-format seresnet_tiny state dict (with a classifier) as .safetensors bytes."""
    state = _random_state(get_backbone("seresnet_tiny", image_shape=(32, 32, 3)), seed=seed)
    path = tmp_path / f"src{seed}.safetensors"
    C.save_state_dict(state, str(path))
    return path.read_bytes(), state


def _kernel(backbone: keras.Model, layer: str = "layer1_0_conv1") -> np.ndarray:
    return keras.ops.convert_to_numpy(backbone.get_layer(layer).kernel)


def _models(tmp_path) -> str:
    return str(tmp_path / "keras" / "models")


def test_timm_id_is_downloaded_verified_and_its_config_used(site: Site, tmp_path) -> None:
    data, state = _checkpoint_bytes(tmp_path)
    site.publish_hf(HF_ID, data, CONFIG)
    path, config = C.resolve(HF_ID, "seresnet_tiny")
    target = os.path.join(_models(tmp_path), "seresnet_tiny.test_in1k.safetensors")
    assert path == target
    with open(target, "rb") as f:
        assert f.read() == data
    assert sorted(os.listdir(_models(tmp_path))) == [
        "seresnet_tiny.test_in1k.json",
        "seresnet_tiny.test_in1k.safetensors",
        "seresnet_tiny.test_in1k.safetensors.download.json",
    ]
    record = json.loads(open(target + ".download.json").read())
    assert record == {
        "url": site.url + HF_FILE,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    # timm's config.json became the sidecar: its mean/std (0-1) reach the config in 0-255
    np.testing.assert_allclose(config.mean, (127.5, 102.0, 76.5))
    np.testing.assert_allclose(config.std, (51.0, 63.75, 76.5))
    assert config.input_size == 48 and config.interpolation == "bilinear"
    assert config.source == os.path.join(_models(tmp_path), "seresnet_tiny.test_in1k.json")
    # the weights that were served end up in the model (hf:// spelling, now from the cache)
    model = create_model("seresnet_tiny", "deepfashion6", weights=f"hf://{HF_ID}", image_size=32)
    np.testing.assert_array_equal(
        _kernel(model.backbone), np.transpose(state["layer1.0.conv1.weight"], (2, 3, 1, 0))
    )
    np.testing.assert_allclose(model.get_layer("normalize").mean, (127.5, 102.0, 76.5))
    assert site.gets() == [
        f"/{HF_ID}/resolve/main/config.json",
        HF_FILE,
        site.redirects[HF_FILE][0],
    ]


def test_cache_hit_makes_no_request(site: Site, tmp_path) -> None:
    data, _ = _checkpoint_bytes(tmp_path)
    site.publish_hf(HF_ID, data, CONFIG)
    first, _ = C.resolve(HF_ID, "seresnet_tiny")
    seen = len(site.requests)
    site.stop()  # offline from here on
    path, config = C.resolve(HF_ID, "seresnet_tiny")
    assert path == first and config.input_size == 48
    assert len(site.requests) == seen
    # a cached file that no longer matches its download record is refused, offline
    with open(path, "r+b") as f:
        f.seek(100)
        f.write(b"\xff\xff\xff\xff")
    with pytest.raises(C.CheckpointError) as e:
        C.resolve(HF_ID, "seresnet_tiny")
    msg = str(e.value)
    assert path in msg and "corrupt or incomplete" in msg and "Delete it" in msg
    assert hashlib.sha256(data).hexdigest() in msg


@pytest.fixture
def tiny_in_table(monkeypatch):
    """Gives seresnet_tiny a PRETRAINED entry (``--weights imagenet``)."""

    def set_entry(**kwargs) -> PretrainedInfo:
        info = PretrainedInfo("test_in1k", **kwargs)
        monkeypatch.setitem(PRETRAINED, "seresnet_tiny", info)
        return info

    return set_entry


def test_imagenet_from_a_hub_entry(site: Site, tmp_path, tiny_in_table) -> None:
    data, _ = _checkpoint_bytes(tmp_path)
    site.publish_hf(HF_ID, data, CONFIG)
    tiny_in_table(hf_hub_id=HF_ID, input_size=64)
    path, config = C.resolve("imagenet", "seresnet_tiny")
    assert path == os.path.join(_models(tmp_path), "seresnet_tiny.test_in1k.safetensors")
    assert open(path, "rb").read() == data
    assert config.input_size == 64  # the table's pretrained_cfg, no config.json fetched
    assert f"/{HF_ID}/resolve/main/config.json" not in site.gets()


def test_imagenet_from_a_release_with_a_hash_prefix(site: Site, tmp_path, tiny_in_table) -> None:
    data, _ = _checkpoint_bytes(tmp_path)
    prefix = hashlib.sha256(data).hexdigest()[:8]
    site.files[f"/releases/tiny-{prefix}.safetensors"] = data
    tiny_in_table(url=f"{site.url}/releases/tiny-{prefix}.safetensors")
    path, _ = C.resolve("imagenet", "seresnet_tiny")
    assert path == os.path.join(_models(tmp_path), f"tiny-{prefix}.safetensors")
    assert open(path, "rb").read() == data
    # a release whose bytes do not carry the name's hash prefix is rejected and deleted
    wrong = "deadbeef" if prefix != "deadbeef" else "beefdead"
    site.files[f"/releases/tiny-{wrong}.safetensors"] = data
    tiny_in_table(url=f"{site.url}/releases/tiny-{wrong}.safetensors")
    target = os.path.join(_models(tmp_path), f"tiny-{wrong}.safetensors")
    with pytest.raises(C.CheckpointError) as e:
        C.resolve("imagenet", "seresnet_tiny")
    msg = str(e.value)
    assert f"{site.url}/releases/tiny-{wrong}.safetensors" in msg and target in msg
    assert f"does not start with {wrong}" in msg and "Run again to retry" in msg
    assert sorted(os.listdir(_models(tmp_path))) == [
        f"tiny-{prefix}.safetensors",
        f"tiny-{prefix}.safetensors.download.json",
    ]
    # a hand-copied release file is checked against its name too, with no request
    with open(target, "wb") as f:
        f.write(data)
    seen = len(site.requests)
    with pytest.raises(C.CheckpointError, match=f"does not start with {wrong}"):
        C.resolve("imagenet", "seresnet_tiny")
    assert len(site.requests) == seen


def test_published_sha256_mismatch_is_rejected(site: Site, tmp_path) -> None:
    data, _ = _checkpoint_bytes(tmp_path)
    site.publish_hf(HF_ID, data, CONFIG, sha256="0" * 64)
    target = os.path.join(_models(tmp_path), "seresnet_tiny.test_in1k.safetensors")
    with pytest.raises(C.CheckpointError) as e:
        C.resolve(HF_ID, "seresnet_tiny")
    msg = str(e.value)
    assert site.url + HF_FILE in msg and target in msg
    assert f"SHA-256 {hashlib.sha256(data).hexdigest()}, expected {'0' * 64}" in msg
    assert "it was deleted" in msg
    assert not [n for n in os.listdir(_models(tmp_path)) if "safetensors" in n]


def test_truncated_download_is_rejected(site: Site, tmp_path) -> None:
    data, _ = _checkpoint_bytes(tmp_path)
    site.files["/w/tiny.safetensors"] = data
    site.truncated.add("/w/tiny.safetensors")
    url = site.url + "/w/tiny.safetensors"
    with pytest.raises(C.CheckpointError) as e:
        C.resolve(url, "seresnet_tiny")
    msg = str(e.value)
    target = os.path.join(_models(tmp_path), "tiny.safetensors")
    assert url in msg and target in msg and "stopped early" in msg
    assert f"got only {len(data) // 2} out of {len(data)} bytes" in msg
    assert os.listdir(_models(tmp_path)) == []


def test_size_mismatch_is_rejected(site: Site, tmp_path) -> None:
    """A server that publishes another size than it sends (X-Linked-Size)."""
    data, _ = _checkpoint_bytes(tmp_path)
    site.files["/w/tiny.safetensors"] = data
    site.headers["/w/tiny.safetensors"] = {"X-Linked-Size": str(len(data) + 1)}
    with pytest.raises(C.CheckpointError, match=f"got {len(data)} bytes, the server published"):
        C.resolve(site.url + "/w/tiny.safetensors", "seresnet_tiny")
    assert os.listdir(_models(tmp_path)) == []


def test_not_found_names_the_url_and_known_ids(site: Site, tmp_path) -> None:
    with pytest.raises(C.CheckpointError) as e:
        C.resolve("timm/seresnet_tiny.nope", "seresnet_tiny")
    msg = str(e.value)
    url = f"{site.url}/timm/seresnet_tiny.nope/resolve/main/model.safetensors"
    assert f"there is no checkpoint at {url} (HTTP 404)" in msg
    assert "timm/seresnet50.a1_in1k" in msg and "se_resnet50-ce0d4300.pth" in msg
    assert site.gets() == []  # found out with a HEAD request, nothing downloaded
    with pytest.raises(C.CheckpointError, match="no checkpoint at .*/w/none.pth \\(HTTP 404\\)"):
        C.resolve(site.url + "/w/none.pth", "seresnet_tiny")


def test_no_network_names_the_url_and_where_to_put_the_file(site: Site, tmp_path) -> None:
    site.stop()  # connection refused
    with pytest.raises(C.CheckpointError) as e:
        C.resolve(HF_ID, "seresnet_tiny")
    msg = str(e.value)
    target = os.path.join(_models(tmp_path), "seresnet_tiny.test_in1k.safetensors")
    assert f"cannot download {site.url + HF_FILE}" in msg
    assert f"put it at {target}" in msg and "Connection refused" in msg


def test_plain_url(site: Site, tmp_path) -> None:
    data, state = _checkpoint_bytes(tmp_path, seed=3)
    site.files["/files/my-tiny.safetensors"] = data
    url = site.url + "/files/my-tiny.safetensors"
    path, config = C.resolve(url, "seresnet_tiny")
    assert path == os.path.join(_models(tmp_path), "my-tiny.safetensors")
    assert config == C.default_pretrained_config("seresnet_tiny")
    backbone = get_backbone("seresnet_tiny", image_shape=(32, 32, 3))
    C.load_backbone_weights(backbone, path)
    np.testing.assert_array_equal(
        _kernel(backbone), np.transpose(state["layer1.0.conv1.weight"], (2, 3, 1, 0))
    )
    seen = len(site.requests)
    assert C.resolve(url, "seresnet_tiny")[0] == path and len(site.requests) == seen


def test_names_are_parsed_without_network(monkeypatch) -> None:
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    remote = download.remote_checkpoint("timm/seresnet50.a1_in1k", "seresnet50")
    assert (
        remote.url
        == "https://huggingface.co/timm/seresnet50.a1_in1k/resolve/main/model.safetensors"
    )
    assert remote.file_name == "seresnet50.a1_in1k.safetensors"
    assert remote.config_url.endswith("/timm/seresnet50.a1_in1k/resolve/main/config.json")
    legacy = download.remote_checkpoint("imagenet", "legacy_seresnet50")
    assert legacy.file_name == "se_resnet50-ce0d4300.pth" and legacy.hash_prefix == "ce0d4300"
    assert download.hash_prefix("model-20240101.safetensors") is None  # a date, not a hash
    hub_url = "https://huggingface.co/timm/seresnet50.a1_in1k/resolve/main/model.safetensors"
    assert download.remote_checkpoint(hub_url, "seresnet50").file_name == (
        "seresnet50.a1_in1k.safetensors"
    )
    with pytest.raises(C.CheckpointError) as e:
        download.remote_checkpoint("timm/resnet50.a1_in1k", "seresnet50")
    msg = str(e.value)
    assert "architecture 'resnet50', not of the backbone 'seresnet50'" in msg
    assert "--backbone resnet50" in msg and "timm/seresnet50.a1_in1k" in msg
    assert download.remote_checkpoint("some/local.safetensors", "seresnet50") is None


def test_pretrained_table_lists_sources_files_and_top1() -> None:
    table = pretrained_table()
    assert "| `seresnet50` | `timm/seresnet50.a1_in1k` (Hugging Face) |" in table
    assert "`se_resnet50-ce0d4300.pth`" in table and "77.65 %" in table
    assert "80.01 % (81.11 % at 288 px)" in table
    assert all(i.top1 for i in PRETRAINED.values() if i.source)
    readme = os.path.join(os.path.dirname(C.__file__), os.pardir, "README.md")
    with open(readme, encoding="utf-8") as f:
        assert table in f.read(), "fashion_keras/models/README.md: paste pretrained_table()"
