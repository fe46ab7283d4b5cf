"""Shared fixtures: tiny images made in the test, tiny demo datasets."""

from __future__ import annotations

import io
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402


def encode(array: np.ndarray, fmt: str = "JPEG", **kwargs) -> bytes:
    """Encodes an HxWx3 uint8 array (JPEG quality 95 by default)."""
    buf = io.BytesIO()
    if fmt == "JPEG":
        kwargs.setdefault("quality", 95)
    Image.fromarray(array.astype(np.uint8)).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def run_under_jax(script: str, *args: str, timeout: int = 600) -> str:
    """Runs ``python -c script args`` with ``KERAS_BACKEND=jax`` on the CPU and returns its
    stdout; skips the test when the script exits 77 (jax is not installed) and fails with the
    script's stderr on any other error."""
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-c", script, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode == 77:
        pytest.skip("jax is not installed (pip install 'jax[cpu]')")
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


def tiny_train_config(small_demo: dict, output_dir, **overrides):
    """A ``TrainConfig`` for a few seconds of training on the ``small_demo`` release: the tiny
    backbone at 32 px, batches of 16, 2 epochs (``overrides`` by field name)."""
    from fashion_keras.training.config import TrainConfig

    base = dict(
        heads="deepfashion6",
        data_dir=small_demo["manual_dir"],
        tfds_data_dir=small_demo["tfds_dir"],
        backbone="seresnet_tiny",
        image_size=32,
        batch_size=16,
        epochs=2,
        learning_rate=1e-3,
        output_dir=str(output_dir),
        verbose=0,
    )
    base.update(overrides)
    return TrainConfig(**base)


def drawn_garment(index: int = 3, max_side: int = 300) -> tuple[bytes, np.ndarray]:
    """A drawn garment (the demo generator, seed 5) as JPEG bytes (quality 92), and its box
    normalised as ``(ymin, xmin, ymax, xmax)``."""
    from fashion_keras_datasets.synthetic.demo import sample_example

    example = sample_example(seed=5, split="train", index=index, max_side=max_side)
    image = example["image"]
    x1, y1, x2, y2 = example["bbox"]
    w, h = image.size
    return encode(np.asarray(image), quality=92), np.array(
        [y1 / h, x1 / w, y2 / h, x2 / w], np.float32
    )


def boxed_image(height: int, width: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """Blue image with a red rectangle at pixel box (y0, x0, y1, x1), end-exclusive."""
    img = np.zeros((height, width, 3), np.uint8)
    img[..., 2] = 255
    y0, x0, y1, x1 = box
    img[y0:y1, x0:x1] = (255, 0, 0)
    return img


def xla_flags(model) -> list[bool]:
    """``_XlaMustCompile`` of the step calls in the traced ``train_function`` (Keras 3's TF
    trainer: ``multi_step_on_iterator`` calls the ``one_step_on_data`` tf.function)."""
    f = model.train_function
    cells = dict(zip(f.__code__.co_freevars, f.__closure__, strict=True))
    assert "multi_step_on_iterator" in cells, f"Keras' train_function changed: {list(cells)}"
    traced = cells["multi_step_on_iterator"].cell_contents._list_all_concrete_functions()
    return [
        op.node_def.attr["_XlaMustCompile"].b
        for concrete in traced
        for op in concrete.graph.get_operations()
        if "_XlaMustCompile" in op.node_def.attr
    ]


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory):
    """A small synthetic DeepFashion-layout release prepared by the real TFDS builder."""
    from fashion_keras.data import sources
    from fashion_keras_datasets.synthetic.demo import generate_demo

    root = tmp_path_factory.mktemp("demo")
    manual = root / "manual"
    generate_demo(str(manual), num_train=96, num_val=32, num_test=16, seed=1)
    builder = sources.get_builder("deepfashion_attributes", str(manual), str(root / "tfds"))
    return {"manual_dir": str(manual), "tfds_dir": str(root / "tfds"), "builder": builder}
