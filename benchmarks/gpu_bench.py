"""GPU benchmark: the Keras SE-ResNet-50 under ``KERAS_BACKEND=jax`` on an NVIDIA GPU, bf16.

Training images/s (forward, loss, backward, SGD with momentum; ``mixed_bfloat16``: bf16 compute,
float32 variables and softmax) at batch 128 and 256, 224 px, on one in-memory device batch.
Needs only JAX with CUDA and Keras (no TensorFlow: the model code is ``keras.ops`` only). Without
a GPU it says so and skips. Anchors (published training throughput): NVIDIA's TensorFlow
ResNet-50 v1.5 on an A100 with AMP + XLA, 2,375 img/s; MLPerf Training ResNet-50, about 7,160
img/s per H100. Goal: >= 3,000 img/s for SE-ResNet-50 on an H100.

    KERAS_BACKEND=jax .venv/bin/python -m benchmarks.gpu_bench
    KERAS_BACKEND=jax .venv/bin/python -m benchmarks.gpu_bench --cpu-smoke  # code path on CPU
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "jax")

from benchmarks.common import summary  # noqa: E402

GOAL_H100 = 3000.0
ANCHORS = {
    "NVIDIA TF ResNet-50 v1.5, A100, AMP+XLA": 2375.0,
    "MLPerf Training ResNet-50, per H100": 7160.0,
}


def gpu_devices() -> list[Any]:
    """JAX's GPU devices ([] without a GPU or without a CUDA-enabled jaxlib)."""
    import jax

    try:
        return list(jax.devices("gpu"))
    except RuntimeError:
        return []


def measure(
    batch_size: int, image_size: int, steps: int, reps: int, backbone: str, num_classes: int
) -> dict[str, Any]:
    """Training images/s of ``backbone`` at ``batch_size`` (reps of ``steps`` steps each)."""
    import jax
    import keras
    import numpy as np

    from fashion_keras.heads import heads_from_dict
    from fashion_keras.models import build_model

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    keras.utils.clear_session()
    heads = heads_from_dict(
        {"heads": [{"name": "imagenet", "classes": [f"c{i}" for i in range(num_classes)]}]}
    )
    model = build_model(backbone, heads, image_size=image_size)
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss={"imagenet": "categorical_crossentropy"},
        jit_compile=True,
    )
    rng = np.random.default_rng(0)
    device = jax.devices()[0]
    x = jax.device_put(
        rng.uniform(0, 255, (batch_size, image_size, image_size, 3)).astype(np.float32), device
    )
    labels = rng.integers(0, num_classes, batch_size)
    y = jax.device_put(np.eye(num_classes, dtype=np.float32)[labels], device)
    start = time.perf_counter()
    model.train_on_batch(x, {"imagenet": y})  # compiles
    compile_s = time.perf_counter() - start
    for _ in range(2):
        model.train_on_batch(x, {"imagenet": y})
    rates = []
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(steps):
            logs = model.train_on_batch(x, {"imagenet": y}, return_dict=True)
        float(logs["loss"])  # waits for the device
        rates.append(steps * batch_size / (time.perf_counter() - start))
    stats = device.memory_stats() or {}
    keras.mixed_precision.set_global_policy("float32")
    return {
        "batch_size": batch_size,
        "images_per_s": summary(rates),
        "compile_s": compile_s,
        "peak_device_memory_mib": stats.get("peak_bytes_in_use", 0) / 2**20 or None,
    }


def run(
    batch_sizes: Sequence[int] = (128, 256),
    image_size: int = 224,
    steps: int = 20,
    reps: int = 5,
    backbone: str = "seresnet50",
    num_classes: int = 1000,
    cpu_smoke: bool = False,
) -> dict[str, Any]:
    """Measures every batch size on the GPU; ``{"skipped": reason}`` without one."""
    import jax
    import keras

    if keras.backend.backend() != "jax":
        return {"skipped": f"needs KERAS_BACKEND=jax, not {keras.backend.backend()!r}"}
    gpus = gpu_devices()
    if not gpus and not cpu_smoke:
        platforms = sorted({d.platform for d in jax.devices()})
        return {"skipped": f"no GPU: JAX sees only {', '.join(platforms)} devices"}
    device = gpus[0] if gpus else jax.devices()[0]
    rows = [measure(b, image_size, steps, reps, backbone, num_classes) for b in batch_sizes]
    best = max(r["images_per_s"]["median"] for r in rows)
    is_h100 = "H100" in getattr(device, "device_kind", "")
    return {
        "device": getattr(device, "device_kind", str(device)),
        "backbone": backbone,
        "image_size": image_size,
        "precision": "mixed_bfloat16",
        "rows": rows,
        "best_images_per_s": best,
        "goal_images_per_s": GOAL_H100,
        "goal_applies": is_h100,
        "anchors": ANCHORS,
        "cpu_smoke": cpu_smoke and not gpus,
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-sizes", default="128,256")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--steps", type=int, default=20, help="training steps per repetition")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--backbone", default="seresnet50")
    p.add_argument(
        "--cpu-smoke",
        action="store_true",
        help="without a GPU, run the code path on the CPU (use small sizes) instead of skipping",
    )
    p.add_argument("--json", help="also write the result here")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(
        [int(b) for b in args.batch_sizes.split(",")],
        args.image_size,
        args.steps,
        args.reps,
        args.backbone,
        cpu_smoke=args.cpu_smoke,
    )
    if "skipped" in result:
        print(f"GPU benchmark skipped: {result['skipped']}")
    else:
        for row in result["rows"]:
            s = row["images_per_s"]
            print(
                f"{result['device']}: {result['backbone']} bf16 batch {row['batch_size']}: "
                f"{s['median']:.0f} img/s (spread {s['spread']:.0%}), "
                f"compile {row['compile_s']:.0f} s"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
