"""Shared benchmark machinery: contenders in their own processes, interleaved repetitions, stats.

Every contender runs in a child process (:class:`Worker`) so that TensorFlow, PyTorch and ONNX
Runtime never share a process (thread pools, allocators, peak memory are per process). The
parent drives the children over stdin/stdout with one JSON message per line and alternates them
repetition by repetition (:func:`interleave`), so a burst of load from other jobs on the machine
hits every contender alike; ratios are taken per repetition pair and their median reported.

A child module calls :func:`serve` with a handler; every reply carries the child's peak resident
memory so far (``VmHWM``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TAG = "@@bench "


def cpu_count() -> int:
    """CPUs this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (``VmHWM``, else ``ru_maxrss``)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    """Current resident set size of this process in MiB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    """The machine and package versions a result was measured with."""
    cpu_model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gib = None
    try:
        with open("/proc/meminfo") as f:
            mem_gib = round(int(f.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    packages = (
        "tensorflow",
        "keras",
        "numpy",
        "pillow",
        "torch",
        "timm",
        "onnxruntime",
        "tf2onnx",
        "onnx",
        "jax",
        "jaxlib",
    )
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": cpu_model,
        "cpu_count": cpu_count(),
        "machine_cpu_count": os.cpu_count(),
        "memory_gib": mem_gib,
        "load_average": list(os.getloadavg()),
        "packages": {p: _version(p) for p in packages},
    }


# --- child side ----------------------------------------------------------------------------------


def reply(message: Mapping[str, Any]) -> None:
    """Sends one message to the parent (tagged, so stray prints on stdout are ignored)."""
    sys.stdout.write(_TAG + json.dumps({**message, "peak_rss_mb": peak_rss_mb()}) + "\n")
    sys.stdout.flush()


def serve(ready: Mapping[str, Any], handler: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Child loop: replies ``ready``, then answers each request with ``handler`` until ``exit``."""
    reply({"ok": True, **ready})
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("cmd") == "exit":
            break
        try:
            reply({"ok": True, **handler(request)})
        except Exception as e:  # reported to the parent, which raises
            reply({"ok": False, "error": f"{type(e).__name__}: {e}"})


def timed(fn: Callable[[], int]) -> dict[str, float]:
    """Runs ``fn`` (returns the number of items it processed): items/s of wall time, and items
    per CPU-second of this process (all its threads): the per-core figure, which load from
    other jobs on the machine barely moves."""
    start, cpu_start = time.perf_counter(), time.process_time()
    items = fn()
    seconds = time.perf_counter() - start
    cpu_s = time.process_time() - cpu_start
    return {
        "items": items,
        "seconds": seconds,
        "items_per_s": items / seconds,
        "cpu_s": cpu_s,
        "items_per_cpu_s": items / cpu_s if cpu_s > 0 else float("nan"),
    }


# --- parent side ---------------------------------------------------------------------------------


class WorkerError(RuntimeError):
    """A contender process failed."""


class Worker:
    """A contender in its own Python process (``python -m <module> <args>``).

    The constructor waits for the child's first (``ready``) message, stored in ``ready``.
    """

    def __init__(
        self,
        name: str,
        module: str,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        child_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
        child_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None if os.environ.get("BENCH_VERBOSE") else subprocess.DEVNULL,
            env=child_env,
            text=True,
        )
        self.ready = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(_TAG):
                message = json.loads(line[len(_TAG) :])
                if not message.get("ok"):
                    raise WorkerError(f"{self.name}: {message.get('error')}")
                return message
        code = self.proc.wait()
        raise WorkerError(
            f"{self.name}: the process ended (exit code {code}); BENCH_VERBOSE=1 shows its stderr"
        )

    def call(self, **request: Any) -> dict[str, Any]:
        """Sends one request and waits for the reply."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        """Asks the child to exit (kills it after a minute)."""
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"cmd": "exit"}) + "\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def interleave(
    workers: Sequence[Worker], reps: int, warmup: int = 1, **request: Any
) -> dict[str, list[dict[str, Any]]]:
    """Runs ``request`` on each worker ``warmup`` times, then ``reps`` times, alternating.

    The order of the workers rotates every repetition; each request carries its repetition
    index ``rep`` (negative for warm-up). Returns each worker's measured replies.
    """
    for i in range(warmup):
        for w in workers:
            w.call(**request, rep=i - warmup)
    results: dict[str, list[dict[str, Any]]] = {w.name: [] for w in workers}
    for r in range(reps):
        k = r % len(workers)
        for w in [*workers[k:], *workers[:k]]:
            results[w.name].append(w.call(**request, rep=r))
    return results


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median, min, max and the spread ``(max - min) / median`` of repetitions."""
    med = statistics.median(values)
    return {
        "median": med,
        "min": min(values),
        "max": max(values),
        "spread": (max(values) - min(values)) / med if med else float("nan"),
        "reps": len(values),
    }


def paired_ratio(ours: Sequence[float], theirs: Sequence[float]) -> dict[str, float]:
    """Summary of the per-repetition ratios ``ours[i] / theirs[i]`` (side by side pairs)."""
    return summary([a / b for a, b in zip(ours, theirs, strict=True)])


def contender_args(
    description: str, contenders: Sequence[str], argv: Sequence[str] | None = None
) -> argparse.Namespace:
    """The options of a bench that runs its contenders in alternating worker processes
    (``keypoint_bench``, ``region_bench``): repetitions, steps, batches, sizes, backbone."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--steps", type=int, default=1, help="training steps per repetition")
    p.add_argument("--batches", type=int, default=1, help="inference batches per repetition")
    p.add_argument("--train-batch-size", type=int, default=16)
    p.add_argument("--infer-batch-size", type=int, default=32)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--backbone", default="seresnet50")
    p.add_argument("--worker", choices=contenders, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def contender_main(
    argv: Sequence[str] | None,
    description: str,
    contenders: Sequence[str],
    worker: Callable[[argparse.Namespace], Any],
    run: Callable[..., dict[str, Any]],
) -> int:
    """Such a bench's ``main``: one worker process (``--worker``), or the whole run, printed as
    JSON."""
    args = contender_args(description, contenders, argv)
    if args.worker:
        worker(args)
        return 0
    result = run(
        args.reps,
        args.steps,
        args.batches,
        args.train_batch_size,
        args.infer_batch_size,
        args.image_size,
        args.backbone,
    )
    print(json.dumps(result, indent=2))
    return 0


def run_contenders(
    module: str,
    contenders: Sequence[str],
    reps: int,
    steps: int,
    batches: int,
    train_batch_size: int,
    infer_batch_size: int,
    image_size: int,
    backbone: str,
) -> tuple[list[Worker], dict[str, dict[str, list[dict[str, Any]]]]]:
    """Starts one worker process of ``module`` per contender (:func:`contender_args`' options),
    times inference, then training, alternately over them (:func:`interleave`) and closes
    them; returns the workers (their ``ready`` records) and the results per command."""
    argv = ["--steps", str(steps), "--batches", str(batches), "--image-size", str(image_size)]
    argv += ["--train-batch-size", str(train_batch_size), "--backbone", backbone]
    argv += ["--infer-batch-size", str(infer_batch_size)]
    workers: list[Worker] = []
    try:
        for name in contenders:
            workers.append(Worker(name, module, ["--worker", name, *argv]))
        results = {cmd: interleave(workers, reps, cmd=cmd) for cmd in ("infer", "train")}
    finally:
        for w in workers:
            w.close()
    return workers, results
