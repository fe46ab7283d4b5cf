"""Serving benchmark: the local server (``python -m serving.server``) with and without batching.

Builds a model (or loads ``--keras-model``), exports it, starts the server as a separate process on
127.0.0.1 (ports chosen by the OS), and for each mode and each concurrency sends ``--requests``
gRPC ``Predict`` calls of ``--request-batch`` examples. It prints, per row, requests/s,
examples/s, p50/p99 latency and the ratio of the server's throughput to in-process
``model.predict`` on the same batches (``batch_size=--request-batch``); ``vs predict@max`` is the
ratio to ``model.predict`` at the server's ``max_batch_size``, the best the process itself can do.

    .venv/bin/python -m benchmarks.serving_bench                      # tiny model, 64 px
    .venv/bin/python -m benchmarks.serving_bench --keras-model runs/demo/model.keras --json out.json

Not a test: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import grpc  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from fashion_keras.export import IMAGES_INPUT, export_saved_model  # noqa: E402
from fashion_keras.heads import get_heads  # noqa: E402
from fashion_keras.models import build_model  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keras-model", help="a saved .keras model (default: build --backbone)")
    p.add_argument("--backbone", default="seresnet_tiny")
    p.add_argument("--heads", default="deepfashion6")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--requests", type=int, default=512, help="requests per row")
    p.add_argument("--request-batch", type=int, default=1, help="examples per request")
    p.add_argument("--concurrency", default="1,8,32", help="comma-separated client counts")
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--batch-timeout-micros", type=int, default=2000)
    p.add_argument("--num-batch-threads", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    p.add_argument("--json", help="also write the results here")
    return p.parse_args(argv)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def in_process(model, batches: list[np.ndarray], batch_size: int) -> float:
    """Examples/s of ``model.predict`` over the concatenated batches at ``batch_size``."""
    data = np.concatenate(batches)
    model.predict(data[: batch_size * 2], batch_size=batch_size, verbose=0)  # warm up
    start = time.perf_counter()
    model.predict(data, batch_size=batch_size, verbose=0)
    return len(data) / (time.perf_counter() - start)


class Server:
    """``python -m serving.server`` as a child process; stops when the block ends."""

    def __init__(self, base: str, batching: bool, args: argparse.Namespace) -> None:
        self.tmp = tempfile.mkdtemp(prefix="serving_bench_ports_")
        self.port_file = os.path.join(self.tmp, "ports.json")
        cmd = [
            sys.executable,
            "-m",
            "serving.server",
            "--model-base-path",
            base,
            "--port",
            "0",
            "--no-rest",
            "--port-file",
            self.port_file,
            "--file-system-poll-wait-seconds",
            "0",
            "--grpc-max-threads",
            "128",
        ]
        if batching:
            cmd += [
                "--enable-batching",
                f"--max-batch-size={args.max_batch_size}",
                f"--batch-timeout-micros={args.batch_timeout_micros}",
                f"--num-batch-threads={args.num_batch_threads}",
            ]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.DEVNULL)

    def __enter__(self) -> str:
        deadline = time.monotonic() + 300
        while not os.path.exists(self.port_file):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.1)
        with open(self.port_file) as f:
            return f"127.0.0.1:{json.load(f)['grpc_port']}"

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=60)
        shutil.rmtree(self.tmp, ignore_errors=True)


def load(target: str, requests: list[predict_pb2.PredictRequest], clients: int) -> dict:
    """Sends every request once from ``clients`` threads; returns throughput and latencies."""
    channel = grpc.insecure_channel(target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    for request in requests[: min(len(requests), clients * 2)]:  # warm up connections
        stub.Predict(request, timeout=120)
    latencies: list[float] = []
    lock = threading.Lock()

    def worker(share: list[predict_pb2.PredictRequest]) -> None:
        mine = []
        for request in share:
            t0 = time.perf_counter()
            stub.Predict(request, timeout=120)
            mine.append(time.perf_counter() - t0)
        with lock:
            latencies.extend(mine)

    shares = [requests[i::clients] for i in range(clients)]
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, shares))
    elapsed = time.perf_counter() - start
    channel.close()
    return {
        "requests_per_s": len(requests) / elapsed,
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p99_ms": percentile(latencies, 99) * 1e3,
        "mean_ms": statistics.fmean(latencies) * 1e3,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    heads = get_heads(args.heads)
    if args.keras_model:
        model = keras.saving.load_model(args.keras_model, compile=False)  # --heads must match
    else:
        model = build_model(args.backbone, heads, image_size=args.image_size)
    size = int(model.inputs[0].shape[1])
    rng = np.random.default_rng(0)
    batches = [
        rng.uniform(0, 255, (args.request_batch, size, size, 3)).astype(np.float32)
        for _ in range(args.requests)
    ]
    requests = []
    for batch in batches:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "fashion"
        request.model_spec.signature_name = "predict_images"
        request.inputs[IMAGES_INPUT].CopyFrom(tf.make_tensor_proto(batch))
        requests.append(request)

    base = tempfile.mkdtemp(prefix="serving_bench_")
    try:
        return _run(args, model, heads, base, batches, requests, size)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _run(args, model, heads, base, batches, requests, size) -> int:
    export_saved_model(model, base, heads=heads)
    same = in_process(model, batches, args.request_batch)
    best = in_process(model, batches, args.max_batch_size)
    print(
        f"model: {args.keras_model or args.backbone} {size}px, {len(heads)} heads; "
        f"{args.requests} requests x {args.request_batch} examples per row; "
        f"{os.cpu_count()} CPUs"
    )
    print(
        f"in-process model.predict: {same:.1f} examples/s at batch {args.request_batch}, "
        f"{best:.1f} at batch {args.max_batch_size}"
    )
    header = (
        f"{'mode':<12}{'clients':>8}{'req/s':>9}{'ex/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'vs predict':>12}{'vs predict@max':>16}"
    )
    print(header)
    print("-" * len(header))
    rows = []
    for mode in ("no-batching", "batching"):
        with Server(base, mode == "batching", args) as target:
            for clients in (int(c) for c in args.concurrency.split(",")):
                r = load(target, requests, clients)
                examples = r["requests_per_s"] * args.request_batch
                row = {
                    "mode": mode,
                    "clients": clients,
                    **r,
                    "examples_per_s": examples,
                    "ratio_vs_predict": examples / same,
                    "ratio_vs_predict_at_max_batch": examples / best,
                }
                rows.append(row)
                print(
                    f"{mode:<12}{clients:>8}{r['requests_per_s']:>9.1f}{examples:>9.1f}"
                    f"{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{row['ratio_vs_predict']:>12.2f}"
                    f"{row['ratio_vs_predict_at_max_batch']:>16.2f}"
                )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "config": vars(args),
                    "in_process_examples_per_s": {"same_batches": same, "max_batch": best},
                    "rows": rows,
                },
                f,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
