"""Keypoint head cost: the same Keras SE-ResNet-50 with and without a FashionAI keypoint head, CPU.

Two contenders, each in its own process, alternating repetition by repetition (as
``train_bench`` and ``infer_bench``), with as many intra-op threads as CPUs:

- ``attributes``: ``build_model("seresnet50", DEEPFASHION6)``, the six DeepFashion softmax heads;
- ``attributes+keypoints``: the same model plus ``FASHIONAI_KEYPOINTS`` (24 keypoints): the
  SimpleBaselines head on the stride-32 features (3 x ``Conv2DTranspose(256, 4, stride 2)`` +
  BatchNorm + ReLU, a 1x1 conv to 24 heatmaps at stride 4, 56 x 56 at 224 px) and its visibility
  ``Dense``.

Both are compiled as the training compiles them (``trainer.compile_model``): masked focal losses
on the softmax heads, the heatmap and visibility losses on the keypoint head, the taxonomy's
loss weights, the weighted per-head metrics, SGD with momentum, no XLA (the CPU default).
Synthetic batches: random images, one-hot labels on every softmax head, random keypoints
``(x, y, v)`` with ``v`` in {-1, 0, 1}. Per contender:

- ``train``: ``model.train_on_batch`` on one in-memory batch (batch 16, 224 px, as
  ``train_bench``);
- ``infer``: the model's forward under ``tf.function`` (no XLA, as the export) with the keypoint
  head's heatmaps read into ``(x, y, confidence)`` by ``SpatialSoftmaxArgmax`` (batch 32, as
  ``infer_bench``).

Reports images/s and images per CPU-second of the contender's process (per core: steadier under
load from other jobs), the ratios with / without the keypoint head (median of per-repetition
ratios), parameters, and each process's peak memory after inference (timed first) and after
training.
``benchmarks.gpu_bench`` uses :func:`build_and_compile`, :func:`synthetic_targets` and
:func:`decode_keypoints` for the same comparison on a GPU under JAX (backend-agnostic code).

    .venv/bin/python -m benchmarks.keypoint_bench --reps 5
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks.common import (
    contender_main,
    cpu_count,
    paired_ratio,
    run_contenders,
    serve,
    summary,
    timed,
)
from benchmarks.infer_bench import _images, _tf

WITHOUT = "attributes"
WITH = "attributes+keypoints"
CONTENDERS = (WITHOUT, WITH)
KEYPOINT_FILTERS = 256  # SimpleBaselines' deconvolution width
KEYPOINT_STRIDE = 4  # input pixels per heatmap cell: 3 deconvolutions on stride 32


def contender_heads(contender: str) -> tuple[Any, ...]:
    """The head spec of a contender: DeepFashion-6, plus the FashionAI keypoints for ``WITH``."""
    from fashion_keras.heads import DEEPFASHION6, FASHIONAI_KEYPOINTS

    if contender not in CONTENDERS:
        raise ValueError(f"unknown contender {contender!r}; expected one of {CONTENDERS}")
    return (*DEEPFASHION6, FASHIONAI_KEYPOINTS) if contender == WITH else tuple(DEEPFASHION6)


def build_and_compile(
    contender: str, backbone: str, image_size: int, jit_compile: bool
) -> tuple[Any, tuple[Any, ...]]:
    """The contender's model, compiled with the training's losses, loss weights and weighted
    per-head metrics, SGD with momentum; returns ``(model, heads)``."""
    import keras

    from fashion_keras.models import build_model
    from fashion_keras.training import losses
    from fashion_keras.training.metrics import head_metrics

    heads = contender_heads(contender)
    model = build_model(
        backbone,
        heads,
        image_size=image_size,
        keypoint_filters=KEYPOINT_FILTERS,
        keypoint_stride=KEYPOINT_STRIDE,
    )
    loss = losses.focal_losses(heads)
    loss.update(losses.keypoint_losses(heads, KEYPOINT_STRIDE))
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss=loss,
        loss_weights=losses.loss_weights(heads),
        weighted_metrics=head_metrics(heads, KEYPOINT_STRIDE),
        jit_compile=jit_compile,
    )
    return model, heads


def synthetic_targets(
    heads: Sequence[Any], batch_size: int, image_size: int, seed: int = 0
) -> dict[str, np.ndarray]:
    """Training targets keyed by model output: one-hot labels per softmax head; per keypoint
    head ``(N, K, 3)`` keypoints (``x, y`` in input pixels, ``v`` in {-1, 0, 1}) for both its
    heatmaps and its ``<head>_visibility``."""
    from fashion_keras.heads import keypoint_heads, softmax_heads, visibility_output

    rng = np.random.default_rng(seed)
    targets = {
        h.name: np.eye(h.num_classes, dtype=np.float32)[rng.integers(0, h.num_classes, batch_size)]
        for h in softmax_heads(heads)
    }
    for h in keypoint_heads(heads):
        xy = rng.uniform(0, image_size - 1, (batch_size, h.num_keypoints, 2))
        v = rng.integers(-1, 2, (batch_size, h.num_keypoints, 1))
        points = np.concatenate([xy, v], axis=-1).astype(np.float32)
        targets[h.name] = points
        targets[visibility_output(h.name)] = points
    return targets


def decode_keypoints(model: Any, outputs: dict[str, Any]) -> dict[str, Any]:
    """``outputs`` of ``model`` with each keypoint head's heatmap logits replaced by its
    ``(N, K, 3)`` keypoints ``(x, y, confidence)`` in input pixels (``SpatialSoftmaxArgmax``)."""
    from fashion_keras.models import SpatialSoftmaxArgmax

    decoded = dict(outputs)
    for h in model.keypoint_heads:
        decoded[h.name] = SpatialSoftmaxArgmax(stride=model.keypoint_stride)(outputs[h.name])
    return decoded


def _contender(args: argparse.Namespace) -> None:
    tf = _tf(cpu_count())
    model, heads = build_and_compile(args.worker, args.backbone, args.image_size, False)
    train_x = _images(args.train_batch_size, args.image_size, seed=0)
    train_y = synthetic_targets(heads, args.train_batch_size, args.image_size)
    infer_x = tf.constant(_images(args.infer_batch_size, args.image_size, seed=1))
    forward = tf.function(lambda x: decode_keypoints(model, model(x, training=False)))

    def train() -> int:
        for _ in range(args.steps):
            model.train_on_batch(train_x, train_y)
        return args.steps * args.train_batch_size

    def infer() -> int:
        for _ in range(args.batches):
            for v in forward(infer_x).values():
                v.numpy()  # to the host, as a predict does
        return args.batches * args.infer_batch_size

    def handle(request: dict[str, Any]) -> dict[str, Any]:
        return timed(train if request["cmd"] == "train" else infer)

    params = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    ready = {
        "params": params,
        "heads": [h.name for h in heads],
        "output_shapes": {k: list(v.shape[1:]) for k, v in model.output.items()},
        "deconvolutions": {
            h.name: model.get_layer(h.name).num_deconv for h in model.keypoint_heads
        },
    }
    serve(ready, handle)


def run(
    reps: int,
    steps: int,
    batches: int,
    train_batch_size: int = 16,
    infer_batch_size: int = 32,
    image_size: int = 224,
    backbone: str = "seresnet50",
) -> dict[str, Any]:
    """Times inference, then training, of both contenders alternately; returns images/s, the
    ratios with / without the keypoint head and peak memory."""
    workers, results = run_contenders(
        "benchmarks.keypoint_bench",
        CONTENDERS,
        reps,
        steps,
        batches,
        train_batch_size,
        infer_batch_size,
        image_size,
        backbone,
    )
    rates = {
        cmd: {c: [r["items_per_s"] for r in res[c]] for c in CONTENDERS}
        for cmd, res in results.items()
    }
    per_cpu = {
        cmd: {c: [r["items_per_cpu_s"] for r in res[c]] for c in CONTENDERS}
        for cmd, res in results.items()
    }
    keypoints = contender_heads(WITH)[-1]
    heatmaps = workers[1].ready["output_shapes"][keypoints.name]
    return {
        "model": f"{backbone}, {image_size} px",
        "heads": {w.name: w.ready["heads"] for w in workers},
        "keypoint_head": {
            "name": keypoints.name,
            "keypoints": keypoints.num_keypoints,
            "deconvolutions": workers[1].ready["deconvolutions"][keypoints.name],
            "filters": KEYPOINT_FILTERS,
            "stride": KEYPOINT_STRIDE,
            "heatmap_shape": heatmaps,
        },
        "train_batch_size": train_batch_size,
        "infer_batch_size": infer_batch_size,
        "image_size": image_size,
        "steps_per_rep": steps,
        "batches_per_rep": batches,
        "threads": cpu_count(),
        "params": {w.name: w.ready["params"] for w in workers},
        "train_images_per_s": {c: summary(v) for c, v in rates["train"].items()},
        "infer_images_per_s": {c: summary(v) for c, v in rates["infer"].items()},
        "train_ratio": paired_ratio(rates["train"][WITH], rates["train"][WITHOUT]),
        "infer_ratio": paired_ratio(rates["infer"][WITH], rates["infer"][WITHOUT]),
        "train_images_per_cpu_s": {c: summary(v) for c, v in per_cpu["train"].items()},
        "infer_images_per_cpu_s": {c: summary(v) for c, v in per_cpu["infer"].items()},
        "train_ratio_per_cpu_s": paired_ratio(per_cpu["train"][WITH], per_cpu["train"][WITHOUT]),
        "infer_ratio_per_cpu_s": paired_ratio(per_cpu["infer"][WITH], per_cpu["infer"][WITHOUT]),
        "peak_rss_mb": {
            cmd: {c: res[c][-1]["peak_rss_mb"] for c in CONTENDERS} for cmd, res in results.items()
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    return contender_main(argv, __doc__.split("\n\n")[0], CONTENDERS, _contender, run)


if __name__ == "__main__":
    sys.exit(main())
