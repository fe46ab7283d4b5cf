"""GPU benchmark: the Keras SE-ResNet-50 under ``KERAS_BACKEND=jax`` on an NVIDIA GPU, bf16.

Training images/s (forward, loss, backward, SGD with momentum; ``mixed_bfloat16``: bf16 compute,
float32 variables and softmax) at batch 128 and 256, 224 px, on one in-memory device batch.
Needs only JAX with CUDA and Keras (no TensorFlow: the model code is ``keras.ops`` only). Without
a GPU it says so and skips. Anchors (published training throughput): NVIDIA's TensorFlow
ResNet-50 v1.5 on an A100 with AMP + XLA, 2,375 img/s; MLPerf Training ResNet-50, about 7,160
img/s per H100. Goal: >= 3,000 img/s for SE-ResNet-50 on an H100.

Input -> train step (``fed_images_per_s`` in each row; ``--loader none`` skips it): the same
steps, each on the next batch of the training input pipeline over generated 300 px JPEGs (the
input benchmark's), moved to the device, repetitions alternating with the device-batch ones;
``fed_ratio`` below 1 means the input does not keep up. The pipeline is ``tf.data``
(``make_dataset``) where TensorFlow is installed, else the PIL + NumPy loader.

The view made on the device (``view_images_per_s``, ``view_ratio`` in each row): the same steps
on a device-resident batch of decoded garment windows (``augment_on = accelerator``: the step
crops, resizes, mirrors and jitters them first, :mod:`fashion_keras.models.batch_view`), against
the step on ready images: what making the view costs the accelerator.

Keypoint head cost (``keypoints`` in the result; off with ``--no-keypoints``): at the batch size
that gave the best img/s, training and inference images/s of the model with the DeepFashion-6
heads with and without the FashionAI keypoint head (``benchmarks.keypoint_bench``'s contenders:
compiled as training compiles them; XLA), alternating repetition by
repetition in this process; inference is the jitted forward with the keypoints read off the
heatmaps.

    KERAS_BACKEND=jax .venv/bin/python -m benchmarks.gpu_bench
    KERAS_BACKEND=jax .venv/bin/python -m benchmarks.gpu_bench --cpu-smoke  # code path on CPU
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "jax")

from benchmarks import keypoint_bench  # noqa: E402
from benchmarks.common import paired_ratio, summary  # noqa: E402
from benchmarks.infer_bench import _images  # noqa: E402

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


def _rate(model: Any, steps: int, batch_size: int, next_x: Callable[[], Any], y: Any) -> float:
    """Images/s of ``steps`` training steps, each on ``next_x()``."""
    start = time.perf_counter()
    for _ in range(steps):
        logs = model.train_on_batch(next_x(), {"imagenet": y}, return_dict=True)
    float(logs["loss"])  # waits for the device
    return steps * batch_size / (time.perf_counter() - start)


def measure(
    batch_size: int,
    image_size: int,
    steps: int,
    reps: int,
    backbone: str,
    num_classes: int,
    feed: Callable[[], Any] | None = None,
) -> dict[str, Any]:
    """Training images/s of ``backbone`` at ``batch_size`` (reps of ``steps`` steps each).

    ``images_per_s``: on one in-memory device batch (the step alone); with ``feed`` (an endless
    iterator of numpy image batches, :func:`input_feed`), also ``fed_images_per_s``: each step
    on the next batch of the input pipeline, moved to the device (the whole input -> train step
    path), alternating with the synthetic repetitions, and ``fed_ratio`` = fed / synthetic (1:
    the input keeps up)."""
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
    batches = feed() if feed is not None else None
    if batches is not None:
        model.train_on_batch(jax.device_put(next(batches), device), {"imagenet": y})

    # the view made on the device (augment_on = accelerator): window batches -> views -> step
    windows = {
        k: jax.device_put(v, device) for k, v in window_batch(rng, batch_size, image_size).items()
    }
    model.train_on_batch(windows, {"imagenet": y})  # compiles the step for window batches
    put = partial(jax.device_put, device=device)
    rates, fed_rates, view_rates = [], [], []
    for _ in range(reps):
        rates.append(_rate(model, steps, batch_size, lambda: x, y))
        view_rates.append(_rate(model, steps, batch_size, lambda: windows, y))
        if batches is not None:
            fed_rates.append(_rate(model, steps, batch_size, lambda: put(next(batches)), y))
    stats = device.memory_stats() or {}
    keras.mixed_precision.set_global_policy("float32")
    fed_stats = (
        {"fed_images_per_s": summary(fed_rates), "fed_ratio": paired_ratio(fed_rates, rates)}
        if fed_rates
        else {}
    )
    return {
        "batch_size": batch_size,
        "images_per_s": summary(rates),
        "view_images_per_s": summary(view_rates),
        "view_ratio": paired_ratio(view_rates, rates),
        **fed_stats,
        "compile_s": compile_s,
        "peak_device_memory_mib": stats.get("peak_bytes_in_use", 0) / 2**20 or None,
    }


def window_batch(rng: Any, batch_size: int, image_size: int) -> dict[str, Any]:
    """A batch for the model's training call to make views of
    (:mod:`fashion_keras.models.batch_view`), as the pipeline pads it: random uint8 windows
    of 50-100 % of the padded side (twice the resized side: 468 px at 224 px) per side,
    zero-padded, and plans with the training view's draws."""
    import numpy as np

    from fashion_keras.data.config import resize_size
    from fashion_keras.models.batch_view import PHOTO_KEY, PLAN_KEY, window_extent

    window = window_extent(image_size)
    room = resize_size(image_size) - image_size + 1
    hw = np.floor(rng.uniform(0.5, 1.0, (batch_size, 2)) * window)
    pixels = rng.integers(0, 256, (batch_size, window, window, 3), dtype=np.uint8)
    rows, cols = np.arange(window)[None, :, None], np.arange(window)[None, None, :]
    inside = (rows < hw[:, :1, None]) & (cols < hw[:, None, 1:])
    draws = np.stack(
        [
            rng.integers(0, room, batch_size),
            rng.integers(0, room, batch_size),
            rng.integers(0, 2, batch_size),
            rng.uniform(-25.5, 25.5, batch_size),
            rng.uniform(0.8, 1.2, batch_size),
            rng.uniform(0.8, 1.2, batch_size),
        ],
        axis=1,
    )
    return {
        PHOTO_KEY: pixels * inside[..., None].astype(np.uint8),
        PLAN_KEY: np.concatenate([hw, draws], axis=1).astype(np.float32),
    }


def input_feed(
    folder: str, batch_size: int, image_size: int, loader: str = "auto"
) -> tuple[str, Callable[[], Any]]:
    """``(loader name, a function making an endless iterator of training batches)`` over the
    input benchmark's JPEG folder (``benchmarks.input_bench.make_images``).

    ``tf.data``: the training pipeline (``make_dataset``, training views, batched, prefetched
    in its own threads), where TensorFlow is installed, as on a user's training machine;
    ``PIL``: the PIL + NumPy thread-pool loader (``input_bench.PilLoader``), the one that runs
    where only JAX is (the GPU machines lent here carry no TensorFlow wheel). ``auto``: tf.data
    where TensorFlow imports, else PIL.
    """
    import importlib.util

    from benchmarks import input_bench

    if loader == "auto":
        loader = "tf.data" if importlib.util.find_spec("tensorflow") else "PIL"
    paths, boxes = input_bench.read_index(folder)

    def tf_batches() -> Any:
        import numpy as np
        import tensorflow as tf

        from fashion_keras.data.pipeline import make_dataset
        from fashion_keras.heads import get_heads

        heads = get_heads("deepfashion6")
        labels = {h.name: np.zeros(len(paths), np.int64) for h in heads}
        examples = tf.data.Dataset.from_tensor_slices(
            {"path": paths, "bbox": boxes, "labels": labels}
        ).map(lambda ex: {**ex, "image": tf.io.read_file(ex["path"])})
        ds = make_dataset(examples.repeat(), heads, image_size, batch_size, True, seed=0)
        return (images for images, _, _ in ds.as_numpy_iterator())

    def pil_batches() -> Any:
        pil = input_bench.PilLoader(image_size, batch_size)
        epoch = 0
        while True:
            epoch += 1
            yield from pil.epoch(paths, boxes, seed=epoch)

    return loader, tf_batches if loader == "tf.data" else pil_batches


def _jax_forward(model: Any) -> Callable[[Any], Any]:
    """The model's jitted inference forward (keypoints decoded) on its current weights."""
    import jax

    def forward(trainable: Any, non_trainable: Any, x: Any) -> Any:
        outputs, _ = model.stateless_call(trainable, non_trainable, x, training=False)
        return keypoint_bench.decode_keypoints(model, outputs)

    fn = jax.jit(forward)
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    return lambda x: fn(trainable, non_trainable, x)


def _alternate(
    calls: dict[str, Callable[[], Any]], items: int, steps: int, reps: int
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Each entry once (compiles; timed) and twice more (warm-up), then items/s of ``steps``
    calls of each per repetition, the order rotating every repetition; every timing waits for
    the device. Returns ``(rates, compile seconds)``."""
    import jax

    names = list(calls)
    compile_s = {}
    for c in names:
        start = time.perf_counter()
        jax.block_until_ready(calls[c]())
        compile_s[c] = time.perf_counter() - start
        for _ in range(2):
            jax.block_until_ready(calls[c]())
    rates: dict[str, list[float]] = {c: [] for c in names}
    for r in range(reps):
        k = r % len(names)
        for c in names[k:] + names[:k]:
            start = time.perf_counter()
            for _ in range(steps):
                out = calls[c]()
            jax.block_until_ready(out)
            rates[c].append(steps * items / (time.perf_counter() - start))
    return rates, compile_s


def measure_keypoints(
    batch_size: int, image_size: int, steps: int, reps: int, backbone: str
) -> dict[str, Any]:
    """Training and inference images/s of the DeepFashion-6 model with and without the
    FashionAI keypoint head at ``batch_size``, bf16, XLA, repetitions alternating (inference
    first: the training steps donate the weight buffers the forward holds)."""
    import jax
    import keras
    import numpy as np

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    keras.utils.clear_session()
    device = jax.devices()[0]
    x = jax.device_put(_images(batch_size, image_size, seed=0), device)
    train, infer, params = {}, {}, {}
    for c in keypoint_bench.CONTENDERS:
        model, heads = keypoint_bench.build_and_compile(c, backbone, image_size, jit_compile=True)
        targets = keypoint_bench.synthetic_targets(heads, batch_size, image_size)
        y = {k: jax.device_put(v, device) for k, v in targets.items()}
        params[c] = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        forward = _jax_forward(model)
        infer[c] = lambda f=forward: f(x)
        train[c] = lambda m=model, y=y: m.train_on_batch(x, y, return_dict=True)["loss"]
    infer_rates, infer_compile_s = _alternate(infer, batch_size, steps, reps)
    train_rates, train_compile_s = _alternate(train, batch_size, steps, reps)
    keras.mixed_precision.set_global_policy("float32")
    with_, without = keypoint_bench.WITH, keypoint_bench.WITHOUT
    return {
        "batch_size": batch_size,
        "params": params,
        "compile_s": {"train": train_compile_s, "infer": infer_compile_s},
        "train_images_per_s": {c: summary(v) for c, v in train_rates.items()},
        "infer_images_per_s": {c: summary(v) for c, v in infer_rates.items()},
        "train_ratio": paired_ratio(train_rates[with_], train_rates[without]),
        "infer_ratio": paired_ratio(infer_rates[with_], infer_rates[without]),
    }


def run(
    batch_sizes: Sequence[int] = (128, 256),
    image_size: int = 224,
    steps: int = 20,
    reps: int = 5,
    backbone: str = "seresnet50",
    num_classes: int = 1000,
    cpu_smoke: bool = False,
    keypoints: bool = True,
    loader: str = "auto",
    images: int = 2000,
    cache_dir: str | None = None,
) -> dict[str, Any]:
    """Measures every batch size on the GPU, on a device batch and fed by the input pipeline
    (``loader``: :func:`input_feed`, over ``images`` generated 300 px JPEGs; ``none``: no
    fed rows), then (``keypoints``) the keypoint head's cost at the best one;
    ``{"skipped": reason}`` without a GPU."""
    import jax
    import keras

    if keras.backend.backend() != "jax":
        return {"skipped": f"needs KERAS_BACKEND=jax, not {keras.backend.backend()!r}"}
    gpus = gpu_devices()
    if not gpus and not cpu_smoke:
        platforms = sorted({d.platform for d in jax.devices()})
        return {"skipped": f"no GPU: JAX sees only {', '.join(platforms)} devices"}
    device = gpus[0] if gpus else jax.devices()[0]
    feeds: dict[int, Callable[[], Any] | None] = {b: None for b in batch_sizes}
    if loader != "none":
        from benchmarks import input_bench

        folder = input_bench.make_images(
            cache_dir or input_bench.default_cache_dir(), "deepfashion300", images
        )
        for b in batch_sizes:
            loader, feeds[b] = input_feed(folder, b, image_size, loader)
    rows = [
        measure(b, image_size, steps, reps, backbone, num_classes, feeds[b]) for b in batch_sizes
    ]
    best_row = max(rows, key=lambda r: r["images_per_s"]["median"])
    best = best_row["images_per_s"]["median"]
    is_h100 = "H100" in getattr(device, "device_kind", "")
    result = {
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
        "loader": loader,
    }
    if keypoints:
        result["keypoints"] = measure_keypoints(
            best_row["batch_size"], image_size, steps, reps, backbone
        )
    return result


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
    p.add_argument(
        "--no-keypoints",
        dest="keypoints",
        action="store_false",
        help="skip the keypoint head comparison",
    )
    p.add_argument(
        "--loader",
        choices=("auto", "tf.data", "PIL", "none"),
        default="auto",
        help="input pipeline of the fed rows (auto: tf.data where TensorFlow imports, else PIL)",
    )
    p.add_argument("--images", type=int, default=2000, help="JPEGs the fed rows read")
    p.add_argument("--cache-dir", default=None, help="where the generated JPEGs are kept")
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
        keypoints=args.keypoints,
        loader=args.loader,
        images=args.images,
        cache_dir=args.cache_dir,
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
            view, ratio = row["view_images_per_s"], row["view_ratio"]
            print(
                f"{result['device']}: view made on the device (augment_on = accelerator), "
                f"batch {row['batch_size']}: {view['median']:.0f} img/s, with / without "
                f"{ratio['median']:.2f} [{ratio['min']:.2f}-{ratio['max']:.2f}]"
            )
            if "fed_images_per_s" in row:
                fed, ratio = row["fed_images_per_s"], row["fed_ratio"]
                print(
                    f"{result['device']}: fed by {result['loader']} (input -> train step), "
                    f"batch {row['batch_size']}: {fed['median']:.0f} img/s, fed / device batch "
                    f"{ratio['median']:.2f} [{ratio['min']:.2f}-{ratio['max']:.2f}] (1: input "
                    "keeps up)"
                )
        kp = result.get("keypoints")
        if kp:
            for what in ("train", "infer"):
                rates, ratio = kp[f"{what}_images_per_s"], kp[f"{what}_ratio"]
                print(
                    f"{result['device']}: keypoint head cost, {what}, batch {kp['batch_size']}: "
                    + ", ".join(f"{c} {s['median']:.0f} img/s" for c, s in rates.items())
                    + f"; with/without {ratio['median']:.2f} "
                    f"[{ratio['min']:.2f}-{ratio['max']:.2f}]"
                )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
