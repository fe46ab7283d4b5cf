"""Inference benchmark: the exported SavedModel against ONNX Runtime on the same weights, on CPU.

A setup process builds SE-ResNet-50 with the DeepFashion-6 heads at 224 px, exports it with
:func:`fashion_keras.export.export_saved_model` and converts the export's ``predict_images``
signature to ONNX with tf2onnx (the same SavedModel, so the same weights and outputs). Then,
each in its own process and alternating, on batches of 32:

- ``SavedModel``: ``tf.saved_model.load(...).signatures["predict_images"]``;
- ``ONNX Runtime``: the converted model on the CPU execution provider;
- ``XLA``: the same Keras model with the export's weights under
  ``tf.function(jit_compile=True)``, to tell whether XLA helps.

Before timing, each contender's probabilities on a fixed batch are compared with the
SavedModel's (max absolute difference).

    .venv/bin/python -m benchmarks.infer_bench --reps 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks.common import (
    Worker,
    cpu_count,
    interleave,
    paired_ratio,
    serve,
    summary,
    timed,
)

CONTENDERS = ("SavedModel", "ONNX Runtime", "XLA")
GOAL = 0.8  # SavedModel / ONNX Runtime
HEADS = "deepfashion6"
BACKBONE = "seresnet50"
SIGNATURE = "predict_images"
OPSET = 17


def _images(batch_size: int, image_size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (batch_size, image_size, image_size, 3)).astype(np.float32)


def _tf(threads: int) -> Any:
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    return tf


def _setup(args: argparse.Namespace) -> None:
    """Builds, exports and converts the model into ``args.dir``."""
    _tf(cpu_count())
    from fashion_keras.export import export_saved_model
    from fashion_keras.models import build_model

    model = build_model(BACKBONE, HEADS, image_size=args.image_size)
    # non-trivial BatchNorm statistics, so the comparison is not of a degenerate network
    rng = np.random.default_rng(1)
    for layer in model.backbone.layers:
        for var in layer.non_trainable_weights:
            shape = tuple(var.shape)
            var.assign(
                rng.uniform(0.5, 1.5, shape)
                if "variance" in var.path
                else rng.normal(0, 0.1, shape)
            )
    start = time.perf_counter()
    version = export_saved_model(model, os.path.join(args.dir, "export"), version=1)
    export_s = time.perf_counter() - start
    model.save_weights(os.path.join(args.dir, "model.weights.h5"))
    start = time.perf_counter()
    onnx_path = os.path.join(args.dir, "model.onnx")
    cmd = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", version]
    cmd += ["--signature_def", SIGNATURE, "--opset", str(OPSET), "--output", onnx_path]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"tf2onnx failed:\n{proc.stderr[-3000:]}")
    convert_s = time.perf_counter() - start
    info = {"export_s": export_s, "convert_s": convert_s, "saved_model": version}
    print(json.dumps({"ok": True, **info}))


def _contender(args: argparse.Namespace) -> None:
    threads = cpu_count()
    batch = _images(args.batch_size, args.image_size, seed=0)
    check = _images(4, args.image_size, seed=1)
    heads = None
    if args.worker == "ONNX Runtime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(
            os.path.join(args.dir, "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        names = [o.name for o in session.get_outputs()]
        input_name = session.get_inputs()[0].name

        def predict(x: np.ndarray) -> dict[str, np.ndarray]:
            return dict(zip(names, session.run(None, {input_name: x}), strict=True))

    elif args.worker == "SavedModel":
        tf = _tf(threads)
        signature = tf.saved_model.load(os.path.join(args.dir, "export", "1")).signatures[SIGNATURE]

        def predict(x: np.ndarray) -> dict[str, np.ndarray]:
            return {k: v.numpy() for k, v in signature(images=tf.constant(x)).items()}

    else:
        tf = _tf(threads)
        from fashion_keras.models import build_model

        model = build_model(BACKBONE, HEADS, image_size=args.image_size)
        model.load_weights(os.path.join(args.dir, "model.weights.h5"))
        heads = model.head_names
        forward = tf.function(lambda x: model(x, training=False), jit_compile=True)

        def predict(x: np.ndarray) -> dict[str, np.ndarray]:
            return {f"{k}_probs": v.numpy() for k, v in forward(tf.constant(x)).items()}

    check_probs = {k: v.tolist() for k, v in predict(check).items() if k.endswith("_probs")}
    predict(batch)  # builds/compiles for the timed batch shape

    def batches() -> int:
        for _ in range(args.batches):
            predict(batch)
        return args.batches * args.batch_size

    serve({"check_probs": check_probs, "heads": heads}, lambda request: timed(batches))


def run(
    reps: int,
    batches: int,
    batch_size: int = 32,
    image_size: int = 224,
    work_dir: str | None = None,
) -> dict[str, Any]:
    """Exports, converts, checks the outputs agree, then times the contenders alternately."""
    own_dir = work_dir is None
    work_dir = work_dir or tempfile.mkdtemp(prefix="infer_bench_")
    argv = ["--dir", work_dir, "--image-size", str(image_size)]
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.infer_bench", "--setup", *argv],
            capture_output=True,
            text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        if proc.returncode != 0:
            raise RuntimeError(f"inference setup failed:\n{proc.stderr[-3000:]}")
        setup = json.loads(proc.stdout.strip().splitlines()[-1])
        argv += ["--batch-size", str(batch_size), "--batches", str(batches)]
        workers = []
        try:
            for name in CONTENDERS:
                workers.append(Worker(name, "benchmarks.infer_bench", ["--worker", name, *argv]))
            reference = workers[0].ready["check_probs"]
            max_diff = {
                w.name: max(
                    float(np.max(np.abs(np.asarray(w.ready["check_probs"][k]) - np.asarray(v))))
                    for k, v in reference.items()
                )
                for w in workers[1:]
            }
            results = interleave(workers, reps, cmd="batches")
        finally:
            for w in workers:
                w.close()
    finally:
        if own_dir:
            shutil.rmtree(work_dir, ignore_errors=True)
    rates = {c: [r["items_per_s"] for r in results[c]] for c in CONTENDERS}
    return {
        "model": f"{BACKBONE}, {HEADS} heads, {image_size} px",
        "batch_size": batch_size,
        "batches_per_rep": batches,
        "threads": cpu_count(),
        "export_s": setup["export_s"],
        "tf2onnx_convert_s": setup["convert_s"],
        "max_abs_diff_vs_saved_model": max_diff,
        "images_per_s": {c: summary(v) for c, v in rates.items()},
        "ratio": paired_ratio(rates["SavedModel"], rates["ONNX Runtime"]),
        "xla_speedup": paired_ratio(rates["XLA"], rates["SavedModel"]),
        "goal": GOAL,
        "peak_rss_mb": {c: results[c][-1]["peak_rss_mb"] for c in CONTENDERS},
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--batches", type=int, default=1, help="batches per repetition")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--setup", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--worker", choices=CONTENDERS, help=argparse.SUPPRESS)
    p.add_argument("--dir", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.setup:
        _setup(args)
    elif args.worker:
        _contender(args)
    else:
        result = run(args.reps, args.batches, args.batch_size, args.image_size)
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
