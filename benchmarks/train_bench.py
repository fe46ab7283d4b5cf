"""Training step benchmark: Keras SE-ResNet-50 against timm ``seresnet50`` in PyTorch, on CPU.

Both train on one in-memory batch, repeated (forward, loss, backward, SGD with momentum), at the
same batch size, image size, class count and intra-op thread count, each in its own process:

- ``Keras``: ``fashion_keras.models.build_model("seresnet50", ...)`` with one 1000-class head,
  ``model.compile`` (categorical cross-entropy, the library's default: no XLA on CPU) and
  ``model.train_on_batch``;
- ``timm``: ``timm.create_model("seresnet50", num_classes=1000)`` in train mode,
  ``CrossEntropyLoss``, ``torch.optim.SGD``, PyTorch's default NCHW layout.

Reports images/s and each process's peak resident memory.

    .venv/bin/python -m benchmarks.train_bench --reps 5
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks.common import (
    Worker,
    cpu_count,
    interleave,
    paired_ratio,
    rss_mb,
    serve,
    summary,
    timed,
)

CONTENDERS = ("Keras", "timm")
GOAL = 1.0
NUM_CLASSES = 1000


def _batch(batch_size: int, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (batch_size, image_size, image_size, 3)).astype(np.float32)
    return images, rng.integers(0, NUM_CLASSES, batch_size)


def _keras_contender(args: argparse.Namespace, threads: int) -> None:
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    from fashion_keras.heads import heads_from_dict
    from fashion_keras.models import build_model

    heads = heads_from_dict(
        {"heads": [{"name": "imagenet", "classes": [f"c{i}" for i in range(NUM_CLASSES)]}]}
    )
    images, labels = _batch(args.batch_size, args.image_size)
    targets = {"imagenet": keras.utils.to_categorical(labels, NUM_CLASSES)}
    model = build_model("seresnet50", heads, image_size=args.image_size)
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss={"imagenet": "categorical_crossentropy"},
        jit_compile=False,
    )
    built_rss = rss_mb()

    def steps() -> int:
        for _ in range(args.steps):
            model.train_on_batch(images, targets)
        return args.steps * args.batch_size

    params = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    ready = {"params": params, "rss_after_build_mb": built_rss}
    serve(ready, lambda request: timed(steps))


def _timm_contender(args: argparse.Namespace, threads: int) -> None:
    import timm
    import torch

    torch.set_num_threads(threads)
    images, labels = _batch(args.batch_size, args.image_size)
    mean = np.array([123.675, 116.28, 103.53], np.float32)
    std = np.array([58.395, 57.12, 57.375], np.float32)
    x = torch.from_numpy(((images - mean) / std).transpose(0, 3, 1, 2).copy())
    y = torch.from_numpy(labels)
    model = timm.create_model("seresnet50", num_classes=NUM_CLASSES)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    built_rss = rss_mb()

    def steps() -> int:
        for _ in range(args.steps):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
        return args.steps * args.batch_size

    params = sum(p.numel() for p in model.parameters())
    ready = {"params": params, "rss_after_build_mb": built_rss}
    serve(ready, lambda request: timed(steps))


def run(reps: int, steps: int, batch_size: int = 16, image_size: int = 224) -> dict[str, Any]:
    """Runs both contenders alternately; returns images/s, peak memory and the ratio."""
    threads = cpu_count()
    argv = ["--steps", str(steps), "--batch-size", str(batch_size)]
    argv += ["--image-size", str(image_size)]
    workers = []
    try:
        for name in CONTENDERS:
            workers.append(Worker(name, "benchmarks.train_bench", ["--worker", name, *argv]))
        results = interleave(workers, reps, cmd="steps")
    finally:
        for w in workers:
            w.close()
    rates = {c: [r["items_per_s"] for r in results[c]] for c in CONTENDERS}
    return {
        "batch_size": batch_size,
        "image_size": image_size,
        "steps_per_rep": steps,
        "threads": threads,
        "params": {w.name: w.ready["params"] for w in workers},
        "images_per_s": {c: summary(v) for c, v in rates.items()},
        "ratio": paired_ratio(rates["Keras"], rates["timm"]),
        "goal": GOAL,
        "peak_rss_mb": {c: results[c][-1]["peak_rss_mb"] for c in CONTENDERS},
        "rss_after_build_mb": {w.name: w.ready["rss_after_build_mb"] for w in workers},
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--steps", type=int, default=2, help="training steps per repetition")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--worker", choices=CONTENDERS, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker == "Keras":
        _keras_contender(args, cpu_count())
    elif args.worker == "timm":
        _timm_contender(args, cpu_count())
    else:
        print(json.dumps(run(args.reps, args.steps, args.batch_size, args.image_size), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
