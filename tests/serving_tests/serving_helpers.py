"""Shared pieces of the serving tests: one tiny export per process, photos, waiting helpers.

Everything binds 127.0.0.1 with ports the OS picks; every wait is bounded.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import shutil
import threading
import time
from collections.abc import Callable

import numpy as np
import tensorflow as tf
from PIL import Image

from fashion_keras import export as E
from fashion_keras.heads import KeypointHead, get_heads
from fashion_keras.models import build_model
from serving import CONFIG_DIR, startup
from serving.model_config import ModelConfig
from serving.server import ModelServer

SIZE = 32
HEADS = get_heads("deepfashion6")
#: Upper bound for any wait in these tests (a safety net, never asserted on).
WAIT_S = 180.0

#: A piece of each line TensorFlow prints as it starts (absl's preamble, then its own).
TF_START_UP_LINES = (
    "All log messages before absl::InitializeLog() is called",
    "oneDNN custom operations are on",
    "Could not find cuda drivers",
    "This TensorFlow binary is optimized",
)

_lock = threading.Lock()
_cache: dict[str, object] = {}


def tiny_export(tmp_path_factory) -> tuple[object, str]:
    """(keras model, version dir) of one tiny export, made once per test process."""
    with _lock:
        if "export" not in _cache:
            model = build_model("seresnet_tiny", HEADS, image_size=SIZE)
            base = str(tmp_path_factory.mktemp("serving_export"))
            _cache["export"] = (model, E.export_saved_model(model, base))
        return _cache["export"]


#: A small keypoint head served next to the softmax head ``sleeve`` by :func:`keypoint_export`.
POINTS = KeypointHead(
    "garment_points",
    ("collar_left", "collar_right", "hem_left", "hem_right"),
    (("collar_left", "collar_right"), ("hem_left", "hem_right")),
    {"top": (("collar_left", "collar_right", "hem_left", "hem_right"), None)},
)
KEYPOINT_SIZE = 64


def keypoint_export(tmp_path_factory) -> tuple[object, str]:
    """(keras model, version dir) of a tiny export with the softmax head ``sleeve`` and the
    keypoint head :data:`POINTS`, made once per test process. Its keypoint kernels are drawn
    large, so the untrained heatmaps peak in different places per keypoint and photo."""
    with _lock:
        if "keypoint_export" not in _cache:
            model = build_model(
                "seresnet_tiny", (HEADS[1], POINTS), image_size=KEYPOINT_SIZE, keypoint_filters=16
            )
            layer = model.get_layer(POINTS.name)
            rng = np.random.default_rng(5)
            for w, scale in [(d.kernel, 3.0) for d in layer.deconvs] + [(layer.final.kernel, 60.0)]:
                fan_in = int(np.prod(w.shape[:-1]))
                w.assign(rng.normal(0.0, scale / np.sqrt(fan_in), w.shape).astype("float32"))
            base = str(tmp_path_factory.mktemp("serving_keypoint_export"))
            _cache["keypoint_export"] = (model, E.export_saved_model(model, base))
        return _cache["keypoint_export"]


def add_version(version_dir: str, base: str, version: int) -> str:
    """Copies an export into ``base/<version>`` atomically (staging folder + rename)."""
    os.makedirs(base, exist_ok=True)
    staging = os.path.join(base, f".staging-{version}")
    shutil.copytree(version_dir, staging)
    final = os.path.join(base, str(version))
    os.rename(staging, final)
    return final


def local_server(version_dir: str, base: str, **kwargs) -> ModelServer:
    """A server (not started) of ``version_dir`` as version 1 under ``base``, on ports the OS
    picks, scanning once; ``kwargs`` override any other :class:`ModelServer` argument."""
    add_version(version_dir, base, 1)
    options = {"grpc_port": 0, "rest_port": 0, "poll_wait_seconds": 0, **kwargs}
    return ModelServer([ModelConfig("fashion", base)], **options)


def rest_call(server, method, path, body=None, raw=None, headers=None):
    """(status, parsed JSON body) of one HTTP request to the server: ``body`` as JSON or
    ``raw`` bytes."""
    conn = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=WAIT_S)
    try:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        conn.request(method, path, body=data, headers=headers or {})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def b64(data: bytes) -> dict:
    """A REST binary string."""
    return {"b64": base64.b64encode(data).decode()}


def photo(seed: int, fmt: str = "JPEG", shape: tuple[int, int] = (40, 30)) -> bytes:
    """A small random photo, encoded."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (*shape, 3), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def signature(version_dir: str, name: str = "serving_default"):
    """A signature of the SavedModel at ``version_dir``, loaded in-process once."""
    with _lock:
        key = f"loaded:{version_dir}"
        if key not in _cache:
            _cache[key] = tf.saved_model.load(version_dir)
        return _cache[key].signatures[name]


def reference(version_dir: str, images: list[bytes]) -> dict[str, np.ndarray]:
    """In-process ``serving_default`` outputs for ``images`` (the ground truth)."""
    fn = signature(version_dir)
    return {k: v.numpy() for k, v in fn(image_bytes=tf.constant(images)).items()}


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    """Polls ``condition`` until it holds; fails the test (never hangs) after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def command_env() -> dict[str, str]:
    """The environment of a command run as a process: every TensorFlow log line shown
    (``TF_CPP_MIN_LOG_LEVEL=0``), the repository importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP_")}
    return {**env, "TF_CPP_MIN_LOG_LEVEL": "0", "PYTHONPATH": os.path.dirname(CONFIG_DIR)}


def assert_quiet_start(stderr: str) -> None:
    """A command's stderr holds each TensorFlow start-up line at most once and, on a machine
    without the CUDA driver, no cuInit error."""
    counts = {line: stderr.count(line) for line in TF_START_UP_LINES}
    assert any(counts.values()), f"none of TensorFlow's start-up lines to check:\n{stderr}"
    assert max(counts.values()) == 1, f"start-up lines repeated: {counts}\n{stderr}"
    if not startup.cuda_driver_present():
        assert "cuInit" not in stderr, stderr
