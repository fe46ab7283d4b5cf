"""``make bench``: every benchmark against its named peer, side by side, in one run.

Parts (each contender in its own process, repetitions interleaved; ratios are medians of the
per-repetition ratios, with their min-max):

1. ``input``: the training tf.data pipeline vs a PIL + NumPy thread-pool loader and vs bare
   ``tf.io.decode_jpeg`` (``benchmarks/input_bench.py``);
2. ``train``: Keras SE-ResNet-50 vs timm ``seresnet50`` in PyTorch, CPU, batch 16, 224 px
   (``benchmarks/train_bench.py``);
3. ``infer``: the exported SavedModel vs ONNX Runtime (tf2onnx), batch 32, and XLA
   (``benchmarks/infer_bench.py``);
4. ``serving``: the local server vs in-process ``model.predict`` (``benchmarks/serving_bench.py``);
5. ``gpu``: SE-ResNet-50 under ``KERAS_BACKEND=jax`` in bf16 on an NVIDIA GPU, and the keypoint
   head's cost there; skipped without one (``benchmarks/gpu_bench.py``);
6. ``keypoints``: the cost of the FashionAI keypoint head: training step and inference images/s
   of SE-ResNet-50 with the DeepFashion-6 heads with and without it, CPU
   (``benchmarks/keypoint_bench.py``);
7. ``regions``: the cost of training with region crops: training step and inference images/s
   of SE-ResNet-50 with the DeepFashion-6 heads over the garment view and the collar crop, vs
   the garment view alone and vs one model per region group (collar, garment), CPU
   (``benchmarks/region_bench.py``).

Prints each part's table and a summary against the goals, and writes everything, with the
environment, to ``benchmarks/results/<YYYY-MM-DD>.json``.

    .venv/bin/python -m benchmarks.run                   # all parts (about 30 min on 2 cores)
    .venv/bin/python -m benchmarks.run --parts train,infer --reps 3
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks import infer_bench, input_bench, keypoint_bench, region_bench, train_bench
from benchmarks.common import ROOT, environment

PARTS = ("input", "train", "infer", "serving", "gpu", "keypoints", "regions")
SERVING_GOAL = 0.9  # server throughput / in-process model.predict on the same batches


def _fmt_stats(s: dict[str, float], digits: int = 1) -> str:
    return f"{s['median']:.{digits}f} ±{s['spread'] / 2:.0%}"


def _fmt_ratio(r: dict[str, float]) -> str:
    return f"{r['median']:.2f} [{r['min']:.2f}-{r['max']:.2f}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


# --- parts ---------------------------------------------------------------------------------------


def part_input(args: argparse.Namespace) -> dict[str, Any]:
    result = input_bench.run(args.images, args.reps, args.cache_dir)
    header, rows = input_bench.table(result, _fmt_stats, _fmt_ratio)
    print(
        f"\n[1] input pipeline, {result['image_size']} px training view, batch "
        f"{result['batch_size']}, {result['images']} JPEGs per set (each pass: one half), "
        f"{result['threads']} threads each; median ±half-spread of {args.reps} passes; per core "
        "= images per CPU-second of the contender's process; first version = the training view "
        "before issue 19"
    )
    print(_table(header, rows))
    print("\n".join(input_bench.feed_lines(result)))
    return result


def part_train(args: argparse.Namespace) -> dict[str, Any]:
    result = train_bench.run(args.reps, args.train_steps)
    rate, rss = result["images_per_s"], result["peak_rss_mb"]
    rows = [[c, _fmt_stats(rate[c], 2), f"{rss[c]:.0f}", f"{result['params'][c]:,}"] for c in rate]
    print(
        f"\n[2] training step, CPU: SE-ResNet-50, batch {result['batch_size']}, "
        f"{result['image_size']} px, 1000 classes, SGD, {result['threads']} threads; "
        f"ratio Keras/timm {_fmt_ratio(result['ratio'])} (goal >= {result['goal']})"
    )
    print(_table(["contender", "images/s", "peak RSS MiB", "trainable params"], rows))
    return result


def part_infer(args: argparse.Namespace) -> dict[str, Any]:
    result = infer_bench.run(args.reps, args.infer_batches)
    rate, rss = result["images_per_s"], result["peak_rss_mb"]
    diff = result["max_abs_diff_vs_saved_model"]
    rows = [
        [c, _fmt_stats(rate[c], 2), f"{rss[c]:.0f}", f"{diff[c]:.1e}" if c in diff else "-"]
        for c in rate
    ]
    print(
        f"\n[3] inference, CPU: {result['model']}, batch {result['batch_size']}, "
        f"{result['threads']} threads; SavedModel/ONNX Runtime {_fmt_ratio(result['ratio'])} "
        f"(goal >= {result['goal']}); XLA/SavedModel {_fmt_ratio(result['xla_speedup'])}; "
        f"tf2onnx conversion {result['tf2onnx_convert_s']:.0f} s"
    )
    print(_table(["contender", "images/s", "peak RSS MiB", "max |probs - SavedModel|"], rows))
    return result


def print_keypoints(result: dict[str, Any]) -> None:
    """Prints the keypoint part's table (``keypoint_bench.run``'s result)."""
    kp = result["keypoint_head"]
    train, infer = result["train_images_per_s"], result["infer_images_per_s"]
    rss = result["peak_rss_mb"]
    train_cpu, infer_cpu = result["train_images_per_cpu_s"], result["infer_images_per_cpu_s"]
    rows = []
    for c in train:
        params, memory = (
            f"{result['params'][c]:,}",
            f"{rss['infer'][c]:.0f} / {rss['train'][c]:.0f}",
        )
        rows.append(
            [c, "images/s", params, _fmt_stats(train[c], 2), _fmt_stats(infer[c], 2), memory]
        )
        rows.append(
            ["", "per core", "", _fmt_stats(train_cpu[c], 2), _fmt_stats(infer_cpu[c], 2), ""]
        )
    for label, suffix in (("images/s", ""), ("per core", "_per_cpu_s")):
        ratios = [_fmt_ratio(result[f"{what}_ratio{suffix}"]) for what in ("train", "infer")]
        rows.append(["with / without" if not suffix else "", label, "", *ratios, ""])
    side = "x".join(str(d) for d in kp["heatmap_shape"][:2])
    reps = next(iter(train.values()))["reps"]
    print(
        f"\n[6] keypoint head cost, CPU: {result['model']}, deepfashion6 heads without and with "
        f"{kp['name']} ({kp['keypoints']} keypoints; {kp['deconvolutions']} deconvolutions x "
        f"{kp['filters']}, {side} heatmaps at stride {kp['stride']}), {result['threads']} "
        f"threads; train batch {result['train_batch_size']}, inference batch "
        f"{result['infer_batch_size']}; median ±half-spread of {reps} repetitions; "
        "per core = images per CPU-second of the contender's process"
    )
    header = ["contender", "measure", "trainable params", "train", "inference"]
    header.append("peak RSS MiB infer / train")
    print(_table(header, rows))


def part_keypoints(args: argparse.Namespace) -> dict[str, Any]:
    result = keypoint_bench.run(args.reps, args.train_steps, args.infer_batches)
    print_keypoints(result)
    return result


PHASES = ("train", "infer")
REGION_RATIOS = {"plain": "regions / plain", "groups": "regions / groups"}


def print_regions(result: dict[str, Any]) -> None:
    """Prints the region part's table (``region_bench.run``'s result)."""
    train, infer = result["train_images_per_s"], result["infer_images_per_s"]
    train_cpu, infer_cpu = result["train_images_per_cpu_s"], result["infer_images_per_cpu_s"]
    rss = result["peak_rss_mb"]
    rows = []
    for c in train:
        memory = f"{rss['infer'][c]:.0f} / {rss['train'][c]:.0f}"
        params = f"{result['params'][c]:,}"
        rows.append(
            [c, "images/s", params, _fmt_stats(train[c], 2), _fmt_stats(infer[c], 2), memory]
        )
        rows.append(
            ["", "per core", "", _fmt_stats(train_cpu[c], 2), _fmt_stats(infer_cpu[c], 2), ""]
        )
    groups = result["models"]["groups"]
    for g, spec in groups.items():
        rate = [result[f"groups_{what}_images_per_cpu_s"][g] for what in PHASES]
        n = len(spec["heads"])
        label = f"  {g} ({n} head{'s' * (n != 1)})"
        rows.append(
            [label, "per core", f"{spec['params']:,}", *(_fmt_stats(r, 2) for r in rate), ""]
        )
    for peer, name in REGION_RATIOS.items():
        for label, suffix in (("images/s", ""), ("per core", "_per_cpu_s")):
            ratios = [_fmt_ratio(result[f"{what}_ratio_vs_{peer}{suffix}"]) for what in PHASES]
            rows.append([name if not suffix else "", label, "", *ratios, ""])
    model = result["models"]["regions"]["regions"]
    crops = " + ".join(model["inputs"])
    on_crops = ", ".join(h for g, s in groups.items() if g != "garment" for h in s["heads"])
    group_heads = "; ".join(f"{g}: {', '.join(s['heads'])}" for g, s in groups.items())
    reps = next(iter(train.values()))["reps"]
    print(
        f"\n[7] region crop cost, CPU: {result['model']}, deepfashion6 heads; regions: one "
        f"model, inputs {crops} stacked into one batch through the backbone ({on_crops} on the "
        f"crop); plain: image only; groups: one model per region group ({group_heads}), costs "
        f"added; {result['threads']} threads; train batch {result['train_batch_size']}, "
        f"inference batch {result['infer_batch_size']} (an image = a photo with its views); "
        f"median ±half-spread of {reps} repetitions; per core = images per CPU-second of the "
        "contender's process"
    )
    header = ["contender", "measure", "trainable params", "train", "inference"]
    header.append("peak RSS MiB infer / train")
    print(_table(header, rows))


def part_regions(args: argparse.Namespace) -> dict[str, Any]:
    result = region_bench.run(args.reps, args.train_steps, args.infer_batches)
    print_regions(result)
    return result


def part_serving(args: argparse.Namespace) -> dict[str, Any]:
    os.makedirs(os.path.join(ROOT, "benchmarks", "results", "tmp"), exist_ok=True)
    fd, path = tempfile.mkstemp(
        suffix=".json", dir=os.path.join(ROOT, "benchmarks", "results", "tmp")
    )
    os.close(fd)
    try:
        cmd = [sys.executable, "-m", "benchmarks.serving_bench"]
        cmd += ["--json", path, "--requests", str(args.serving_requests)]
        print("\n[4] serving (benchmarks/serving_bench.py)")
        sys.stdout.flush()
        proc = subprocess.run(
            cmd,
            cwd=ROOT,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
            stderr=subprocess.PIPE,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"serving_bench.py failed:\n{proc.stderr[-3000:]}")
        with open(path) as f:
            result = json.load(f)
    finally:
        os.remove(path)
    return result


def part_gpu(args: argparse.Namespace) -> dict[str, Any]:
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        print(
            "\n[5] GPU: SE-ResNet-50, KERAS_BACKEND=jax, mixed_bfloat16 (benchmarks/gpu_bench.py)"
        )
        sys.stdout.flush()
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.gpu_bench", "--json", path],
            cwd=ROOT,
            env={**os.environ, "KERAS_BACKEND": "jax"},
            stderr=subprocess.PIPE,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"gpu_bench failed:\n{proc.stderr[-3000:]}")
        with open(path) as f:
            return json.load(f)
    finally:
        os.remove(path)


# --- summary -------------------------------------------------------------------------------------


def _goal_row(what: str, ratio: dict[str, float], goal: float | None) -> dict[str, Any]:
    return {
        "what": what,
        "value": ratio["median"],
        "min": ratio["min"],
        "max": ratio["max"],
        "goal": goal,
        "met": None if goal is None else ratio["median"] >= goal,
    }


def _input_goal_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name, s in result["sets"].items():
        rows.append(
            _goal_row(
                f"input {name}: tf.data / first version, per core (info)",
                s["ratio_per_cpu_s"]["first"],
                None,
            )
        )
        for view in input_bench.VIEWS:
            key, what = ("", "tf.data") if view == "tf.data" else (f"_{view}", f"{view}-made view")
            if f"ratio{key}" not in s:
                continue  # a result file from before the view existed
            for peer, label in (("PIL", "PIL+NumPy"), ("decode", "bare decode")):
                goal = input_bench.GOALS[peer]
                ratio, per_core = s[f"ratio{key}"][peer], s[f"ratio_per_cpu_s{key}"][peer]
                rows.append(_goal_row(f"input {name}: {what} / {label}", ratio, goal))
                rows.append(_goal_row(f"input {name}: {what} / {label}, per core", per_core, goal))
            cores = _goal_row(
                f"input {name}: {'' if view == 'tf.data' else what + ': '}cores to feed "
                f"{input_bench.FEED_RATE:,} images/s",
                s[f"cores_for_feed_rate{key}"],
                None,
            )
            goal = input_bench.FEED_CORES_GOAL
            cores.update(goal=goal, at_most=True, met=cores["value"] <= goal)
            rows.append(cores)
    return rows


def goal_rows(parts: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per goal of the issue: the measured ratio (or value) and whether it is met."""
    rows: list[dict[str, Any]] = []
    if "input" in parts and "error" not in parts["input"]:
        rows += _input_goal_rows(parts["input"])
    if "train" in parts and "error" not in parts["train"]:
        rows.append(_goal_row("train: Keras / timm (torch)", parts["train"]["ratio"], 1.0))
    if "infer" in parts and "error" not in parts["infer"]:
        infer = parts["infer"]
        rows.append(_goal_row("infer: SavedModel / ONNX Runtime", infer["ratio"], 0.8))
        row = _goal_row("infer: XLA / SavedModel (info)", infer["xla_speedup"], 1.0)
        row["met"] = None
        rows.append(row)
    if "serving" in parts and "error" not in parts["serving"]:
        # the serving issue's configuration: batching on, the most concurrent clients
        batching = [r for r in parts["serving"]["rows"] if r["mode"] == "batching"]
        row = max(batching or parts["serving"]["rows"], key=lambda r: r["clients"])
        ratio = row["ratio_vs_predict"]
        rows.append(
            {
                "what": f"serving: server / predict ({row['mode']}, {row['clients']} clients)",
                "value": ratio,
                "min": ratio,
                "max": ratio,
                "goal": SERVING_GOAL,
                "met": ratio >= SERVING_GOAL,
            }
        )
    if "gpu" in parts and "error" not in parts["gpu"]:
        gpu = parts["gpu"]
        if "skipped" in gpu:
            rows.append({"what": "gpu: SE-ResNet-50 bf16 img/s (H100)", "skipped": gpu["skipped"]})
        else:
            v = gpu["best_images_per_s"]
            rows.append(
                {
                    "what": f"gpu: SE-ResNet-50 bf16 img/s ({gpu['device']})",
                    "value": v,
                    "min": v,
                    "max": v,
                    "goal": gpu["goal_images_per_s"],
                    "met": v >= gpu["goal_images_per_s"] if gpu["goal_applies"] else None,
                }
            )
            kp = gpu.get("keypoints")
            for what in ("train", "infer") if kp else ():
                label = f"gpu: keypoint head, {what} with / without (info)"
                rows.append(_goal_row(label, kp[f"{what}_ratio"], None))
    if "keypoints" in parts and "error" not in parts["keypoints"]:
        for what in ("train", "infer"):
            for suffix, label in (("", ""), ("_per_cpu_s", ", per core")):
                what_ = f"keypoints: {what} with / without keypoint head{label} (info)"
                rows.append(_goal_row(what_, parts["keypoints"][f"{what}_ratio{suffix}"], None))
    if "regions" in parts and "error" not in parts["regions"]:
        for what in PHASES:
            for peer, name in REGION_RATIOS.items():
                for suffix, label in (("", ""), ("_per_cpu_s", ", per core")):
                    ratio = parts["regions"][f"{what}_ratio_vs_{peer}{suffix}"]
                    rows.append(_goal_row(f"regions: {what} {name}{label} (info)", ratio, None))
    for name, part in parts.items():
        if "error" in part:
            rows.append({"what": f"{name}: FAILED", "skipped": part["error"].splitlines()[-1]})
    return rows


def print_summary(rows: list[dict[str, Any]]) -> None:
    table = []
    for r in rows:
        if "skipped" in r:
            table.append([r["what"], "skipped", "", "", r["skipped"]])
            continue
        met = {True: "yes", False: "NO", None: "-"}[r["met"]]
        digits = 0 if r["value"] >= 100 else 2
        spread = f"[{r['min']:.{digits}f}-{r['max']:.{digits}f}]" if r["min"] != r["max"] else ""
        sign = "<=" if r.get("at_most") else ">="
        goal = "-" if r["goal"] is None else f"{sign} {r['goal']:g}"
        table.append([r["what"], f"{r['value']:.{digits}f}", spread, goal, met])
    print("\nSummary against the goals (ratios: median of per-repetition ratios [min-max])")
    print(_table(["measure", "value", "[min-max]", "goal", "met"], table))


# --- main ----------------------------------------------------------------------------------------

RUNNERS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "input": part_input,
    "train": part_train,
    "infer": part_infer,
    "serving": part_serving,
    "gpu": part_gpu,
    "keypoints": part_keypoints,
    "regions": part_regions,
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {PARTS}")
    p.add_argument("--reps", type=int, default=5, help="timed repetitions per contender")
    p.add_argument("--images", type=int, default=2000, help="generated JPEGs per image set")
    p.add_argument("--train-steps", type=int, default=1, help="training steps per repetition")
    p.add_argument("--infer-batches", type=int, default=1, help="batches of 32 per repetition")
    p.add_argument("--serving-requests", type=int, default=512, help="requests per serving row")
    p.add_argument(
        "--cache-dir",
        default=input_bench.default_cache_dir(),
        help="where the generated JPEGs are kept between runs",
    )
    p.add_argument(
        "--output",
        default=os.path.join(ROOT, "benchmarks", "results", f"{datetime.date.today()}.json"),
        help="results file (default benchmarks/results/<date>.json)",
    )
    args = p.parse_args(argv)
    args.parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    unknown = sorted(set(args.parts) - set(PARTS))
    if unknown:
        p.error(f"unknown part(s) {unknown}; expected some of {list(PARTS)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    started = datetime.datetime.now()
    env = environment()
    packages = env["packages"]
    print(
        f"fashion_keras benchmarks, {started:%Y-%m-%d %H:%M}: "
        f"{env['cpu_count']} CPUs ({env['cpu_model']}), {env['memory_gib']} GiB, "
        f"load average {env['load_average'][0]:.1f}; TensorFlow {packages['tensorflow']}, "
        f"Keras {packages['keras']}, torch {packages['torch']}, timm {packages['timm']}, "
        f"onnxruntime {packages['onnxruntime']}, tf2onnx {packages['tf2onnx']}, "
        f"jax {packages['jax']}"
    )
    parts: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    for name in args.parts:
        t0 = time.perf_counter()
        try:
            parts[name] = RUNNERS[name](args)
        except Exception:  # one part failing must not lose the others' results
            parts[name] = {"error": traceback.format_exc()}
            print(f"\n{name}: FAILED\n{parts[name]['error']}")
        seconds[name] = time.perf_counter() - t0
        sys.stdout.flush()
    rows = goal_rows(parts)
    print_summary(rows)
    wall = time.perf_counter() - start
    print(
        f"\nwall time {wall / 60:.1f} min ("
        + ", ".join(f"{k} {v / 60:.1f}" for k, v in seconds.items())
        + f"); load average at the end {os.getloadavg()[0]:.1f}; results: "
        + os.path.relpath(args.output, ROOT)
    )
    record = {
        "date": str(started.date()),
        "started": started.isoformat(timespec="seconds"),
        "wall_s": wall,
        "part_seconds": seconds,
        "settings": {k: v for k, v in vars(args).items() if k not in ("output", "cache_dir")},
        "environment": env,
        "load_average_end": list(os.getloadavg()),
        "summary": rows,
        "parts": parts,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(record, f, indent=2)
    return 1 if any("error" in p for p in parts.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
