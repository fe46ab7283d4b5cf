"""The input benchmark is fair only if its PIL loader makes the tensors the tf.data pipeline makes;
the keypoint head comparison (CPU and GPU code paths) and the region crop comparison run on tiny
sizes and report their keys."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from benchmarks import keypoint_bench, region_bench
from benchmarks import run as bench_run
from benchmarks.common import ROOT
from benchmarks.input_bench import (
    pil_crop_window,
    pil_eval_view,
    pil_train_view,
)
from fashion_keras.data import preprocess as P
from fashion_keras_datasets.synthetic.demo import sample_example


def _garment_jpeg(index: int, side: int) -> tuple[bytes, np.ndarray]:
    """A drawn garment (demo generator) as JPEG bytes and its normalised box."""
    example = sample_example(seed=3, split="train", index=index, max_side=side)
    image = example["image"]
    x1, y1, x2, y2 = example["bbox"]
    w, h = image.size
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90)
    return buf.getvalue(), np.array([y1 / h, x1 / w, y2 / h, x2 / w], np.float32)


@pytest.mark.parametrize("index, side", [(0, 300), (1, 300), (2, 512)])
@pytest.mark.parametrize("image_size", [224, 64])
def test_pil_eval_view_matches_the_tf_pipeline(index, side, image_size):
    data, bbox = _garment_jpeg(index, side)
    shape = tf.image.extract_jpeg_shape(data).numpy()
    window = P.crop_window(shape, tf.constant(bbox), 0.1).numpy()
    assert tuple(window) == pil_crop_window(int(shape[0]), int(shape[1]), bbox, 0.1)

    ours = P.preprocess_for_eval(tf.constant(data), image_size, tf.constant(bbox)).numpy()
    theirs = pil_eval_view(data, image_size, bbox)
    assert ours.shape == theirs.shape == (image_size, image_size, 3)
    assert theirs.dtype == np.float32
    diff = np.abs(ours - theirs)
    # PIL rounds to uint8 (pad colour, resize output); libjpeg's cropped decode differs a little
    # at the crop's edge. A shifted or mis-scaled view would differ by tens of levels.
    assert diff.mean() < 1.0
    assert np.percentile(diff, 99) < 4.0


def test_pil_train_view_shape_range_and_seed():
    data, bbox = _garment_jpeg(4, 300)
    a = pil_train_view(data, 96, bbox, np.random.default_rng(1))
    b = pil_train_view(data, 96, bbox, np.random.default_rng(1))
    assert a.shape == (96, 96, 3) and a.dtype == np.float32
    assert 0 <= a.min() and a.max() <= 255
    np.testing.assert_array_equal(a, b)


def test_keypoint_contenders_differ_by_the_keypoint_head_and_targets_fit_them():
    without = keypoint_bench.contender_heads(keypoint_bench.WITHOUT)
    with_ = keypoint_bench.contender_heads(keypoint_bench.WITH)
    assert with_[:-1] == without and with_[-1].name == "fashionai_keypoints"
    targets = keypoint_bench.synthetic_targets(with_, 3, 64)
    names = [h.name for h in without]
    assert list(targets) == [*names, "fashionai_keypoints", "fashionai_keypoints_visibility"]
    for h in without:
        assert targets[h.name].shape == (3, h.num_classes)
        np.testing.assert_array_equal(targets[h.name].sum(axis=1), 1.0)
    points = targets["fashionai_keypoints"]
    assert points.shape == (3, 24, 3) and points.dtype == np.float32
    assert 0 <= points[..., :2].min() and points[..., :2].max() <= 63
    assert set(np.unique(points[..., 2])) <= {-1.0, 0.0, 1.0}
    assert targets["fashionai_keypoints_visibility"] is points
    with pytest.raises(ValueError, match="unknown contender"):
        keypoint_bench.contender_heads("keypoints")


KEYPOINT_HEAD = {
    "name": "fashionai_keypoints",
    "keypoints": 24,
    "deconvolutions": 3,
    "filters": 256,
    "stride": 4,
    "heatmap_shape": [16, 16, 24],  # 64 px / stride 4
}


def _check_keypoint_keys(result: dict) -> None:
    contenders = set(keypoint_bench.CONTENDERS)
    for what in ("train", "infer"):
        assert set(result[f"{what}_images_per_s"]) == contenders
        assert all(
            s["median"] > 0 and s["reps"] == 1 for s in result[f"{what}_images_per_s"].values()
        )
        assert result[f"{what}_ratio"]["median"] > 0 and result[f"{what}_ratio"]["reps"] == 1
    params = result["params"]
    assert set(params) == contenders
    assert params[keypoint_bench.WITH] > params[keypoint_bench.WITHOUT]


@pytest.mark.slow
def test_keypoint_bench_reports_both_contenders_and_ratios(capsys):
    result = keypoint_bench.run(
        reps=1,
        steps=1,
        batches=1,
        train_batch_size=2,
        infer_batch_size=2,
        image_size=64,
        backbone="seresnet_tiny",
    )
    _check_keypoint_keys(result)
    assert result["keypoint_head"] == KEYPOINT_HEAD
    assert result["heads"][keypoint_bench.WITH][-1] == "fashionai_keypoints"
    assert "fashionai_keypoints" not in result["heads"][keypoint_bench.WITHOUT]
    for phase in ("infer", "train"):
        assert set(result["peak_rss_mb"][phase]) == set(keypoint_bench.CONTENDERS)
        assert set(result[f"{phase}_images_per_cpu_s"]) == set(keypoint_bench.CONTENDERS)
        assert result[f"{phase}_ratio_per_cpu_s"]["median"] > 0

    bench_run.print_keypoints(result)
    rows = bench_run.goal_rows({"keypoints": result})
    bench_run.print_summary(rows)
    out = capsys.readouterr().out
    assert "[6] keypoint head cost" in out and "with / without" in out
    assert [r["what"] for r in rows] == [
        "keypoints: train with / without keypoint head (info)",
        "keypoints: train with / without keypoint head, per core (info)",
        "keypoints: infer with / without keypoint head (info)",
        "keypoints: infer with / without keypoint head, per core (info)",
    ]
    assert all(r["goal"] is None and r["met"] is None for r in rows)
    assert rows[0]["value"] == result["train_ratio"]["median"]
    assert rows[3]["value"] == result["infer_ratio_per_cpu_s"]["median"]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs jax")
def test_gpu_bench_keypoint_comparison_runs_under_jax(tmp_path):
    path = tmp_path / "gpu.json"
    cmd = [sys.executable, "-m", "benchmarks.gpu_bench", "--cpu-smoke", "--backbone"]
    cmd += ["seresnet_tiny", "--image-size", "64", "--batch-sizes", "2", "--steps", "1"]
    cmd += ["--reps", "1", "--json", str(path), "--images", "8"]
    cmd += ["--cache-dir", str(tmp_path / "images")]
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "keypoint head cost, train" in proc.stdout
    result = json.loads(path.read_text())
    # issue 19: the steps fed by the training tf.data pipeline, beside the device batch
    assert result["loader"] == "tf.data" and "fed by tf.data" in proc.stdout
    row = result["rows"][0]
    assert row["fed_images_per_s"]["median"] > 0 and row["fed_ratio"]["median"] > 0
    # and the steps that make the view on the device from window batches
    assert row["view_images_per_s"]["median"] > 0 and row["view_ratio"]["median"] > 0
    assert "view made on the device (augment_on = accelerator), batch 2" in proc.stdout
    kp = result["keypoints"]
    assert kp["batch_size"] == 2
    _check_keypoint_keys(kp)
    assert set(kp["compile_s"]) == {"train", "infer"}
    rows = bench_run.goal_rows({"gpu": result})
    assert [r["what"] for r in rows[1:]] == [
        "gpu: keypoint head, train with / without (info)",
        "gpu: keypoint head, infer with / without (info)",
    ]


def test_region_contenders_split_deepfashion6_into_view_groups():
    from fashion_keras.heads import DEEPFASHION6

    names = [h.name for h in DEEPFASHION6]
    plain = region_bench.contender_models(region_bench.PLAIN)
    regions = region_bench.contender_models(region_bench.REGIONS)
    assert plain == {"plain": (tuple(DEEPFASHION6), ())}
    assert regions == {"regions": (tuple(DEEPFASHION6), ("collar",))}
    groups = region_bench.contender_models(region_bench.GROUPS)
    assert list(groups) == ["garment", "collar"]
    garment, collar = groups["garment"], groups["collar"]
    assert [h.name for h in garment[0]] == [n for n in names if n != "neckline"]
    assert garment[1] == ()
    assert [h.name for h in collar[0]] == ["neckline"] and collar[1] == ("collar",)
    with pytest.raises(ValueError, match="unknown contender"):
        region_bench.contender_models("collar")


def test_region_groups_costs_add():
    parts = [
        {"items": 4, "seconds": 1.0, "items_per_s": 4.0, "cpu_s": 2.0, "items_per_cpu_s": 2.0},
        {"items": 4, "seconds": 3.0, "items_per_s": 4 / 3, "cpu_s": 6.0, "items_per_cpu_s": 4 / 6},
    ]
    both = region_bench.added(parts, 4)
    assert both["seconds"] == 4.0 and both["cpu_s"] == 8.0
    assert both["items_per_s"] == 1.0 and both["items_per_cpu_s"] == 0.5


@pytest.mark.slow
def test_region_bench_reports_three_contenders_and_ratios(capsys):
    result = region_bench.run(
        reps=1,
        steps=1,
        batches=1,
        train_batch_size=2,
        infer_batch_size=2,
        image_size=64,
        backbone="seresnet_tiny",
    )
    contenders = set(region_bench.CONTENDERS)
    for phase in ("train", "infer"):
        for suffix in ("_per_s", "_per_cpu_s"):
            rates = result[f"{phase}_images{suffix}"]
            assert set(rates) == contenders
            assert all(s["median"] > 0 and s["reps"] == 1 for s in rates.values())
            assert set(result[f"groups_{phase}_images{suffix}"]) == {"garment", "collar"}
        for peer in ("plain", "groups"):
            for suffix in ("", "_per_cpu_s"):
                ratio = result[f"{phase}_ratio_vs_{peer}{suffix}"]
                assert ratio["median"] > 0 and ratio["reps"] == 1
        assert set(result["peak_rss_mb"][phase]) == contenders
    models = result["models"]
    assert models["plain"]["plain"]["inputs"] == ["image"]
    assert models["regions"]["regions"]["inputs"] == ["image", "collar_crop"]
    assert models["groups"]["collar"]["inputs"] == ["collar_crop"]
    assert models["groups"]["collar"]["heads"] == ["neckline"]
    assert models["groups"]["garment"]["inputs"] == ["image"]
    params = result["params"]
    assert params["regions"] == params["plain"]  # one backbone, the same heads
    group_params = [m["params"] for m in models["groups"].values()]
    assert params["groups"] == sum(group_params) > params["plain"]

    bench_run.print_regions(result)
    rows = bench_run.goal_rows({"regions": result})
    bench_run.print_summary(rows)
    out = capsys.readouterr().out
    assert "[7] region crop cost" in out
    assert "regions / plain" in out and "regions / groups" in out
    assert "  collar (1 head)" in out and "  garment (5 heads)" in out
    assert [r["what"] for r in rows] == [
        f"regions: {phase} regions / {peer}{label} (info)"
        for phase in ("train", "infer")
        for peer in ("plain", "groups")
        for label in ("", ", per core")
    ]
    assert all(r["goal"] is None and r["met"] is None for r in rows)
    assert rows[0]["value"] == result["train_ratio_vs_plain"]["median"]
    assert rows[7]["value"] == result["infer_ratio_vs_groups_per_cpu_s"]["median"]


def test_the_input_summary_says_how_many_cores_feed_3000_images_per_second(capsys):
    """Issue 19: from the per-core rate, 3,000 / (images per CPU-second), goal at most 8."""
    from benchmarks import input_bench

    contenders = input_bench.CONTENDERS

    per_cpu = [400.0, 500.0, 600.0]
    stats = {"median": 1.0, "min": 1.0, "max": 1.0}
    sets = {
        name: {
            "description": name,
            "ratio": {"PIL": stats, "decode": stats},
            "ratio_per_cpu_s": {"PIL": stats, "decode": stats, "first": stats},
            "cores_for_feed_rate": input_bench.cores_needed(rate),
            "cores_for_feed_rate_first": input_bench.cores_needed([100.0]),
            "ratio_accelerator": {"PIL": stats, "decode": stats},
            "ratio_per_cpu_s_accelerator": {"PIL": stats, "decode": stats, "first": stats},
            "cores_for_feed_rate_accelerator": input_bench.cores_needed([1500.0]),
        }
        for name, rate in (("fast", per_cpu), ("slow", [300.0]))
    }
    assert sets["fast"]["cores_for_feed_rate"] == {"median": 6.0, "min": 5.0, "max": 7.5}
    rows = {r["what"]: r for r in bench_run.goal_rows({"input": {"sets": sets}})}
    fast = rows["input fast: cores to feed 3,000 images/s"]
    slow = rows["input slow: cores to feed 3,000 images/s"]
    assert (fast["value"], fast["met"]) == (6.0, True)
    assert (slow["value"], slow["met"]) == (10.0, False)
    assert rows["input fast: tf.data / PIL+NumPy"]["goal"] == 2.0
    assert rows["input fast: tf.data / first version, per core (info)"]["met"] is None
    # the accelerator-made view's CPU share has its own rows, against the same goals
    made = rows["input slow: accelerator-made view: cores to feed 3,000 images/s"]
    assert (made["value"], made["met"]) == (2.0, True)
    assert rows["input slow: accelerator-made view / bare decode, per core"]["goal"] == 0.8
    bench_run.print_summary(list(rows.values()))
    assert "<= 8" in capsys.readouterr().out
    # the part's table: a column per contender and per view's ratio, a row per set and measure
    for s in sets.values():
        s["images_per_s"] = s["images_per_cpu_s"] = {
            c: {**stats, "spread": 0.1} for c in contenders
        }
        s["ratio"]["first"] = stats
    header, table = input_bench.table({"sets": sets}, bench_run._fmt_stats, bench_run._fmt_ratio)
    assert len(table) == 4 and all(len(r) == len(header) for r in table)
    assert header[2:4] == ["tf.data", "accelerator-made (CPU share)"]
    assert bench_run._table(header, table).count("\n") == 5
    line = input_bench.feed_lines({"sets": sets})[0]
    assert line == (
        "cores needed to feed 3,000 images/s (fast): 6.0 (5.0-7.5; goal <= 8); view made on the "
        "accelerator 2.0; first version 30.0"
    )


@pytest.mark.slow
def test_input_bench_runs_today_and_the_first_view_side_by_side(tmp_path):
    """One run gives issue 19's before/after: today's pipeline, the first version's view, the
    PIL loader and bare decoding, each in its own process, and the ratios between them."""
    from benchmarks import input_bench

    result = input_bench.run(images=128, reps=1, cache_dir=str(tmp_path), image_size=64)
    for s in result["sets"].values():
        assert set(s["images_per_cpu_s"]) == set(input_bench.CONTENDERS)
        assert all(v["median"] > 0 for v in s["images_per_cpu_s"].values())
        assert set(s["ratio_per_cpu_s"]) == {"PIL", "decode", "first"}
        assert s["cores_for_feed_rate"]["median"] > 0
        assert set(s["ratio_per_cpu_s_accelerator"]) == {"PIL", "decode", "first"}
        assert s["cores_for_feed_rate_accelerator"]["median"] > 0


def test_the_gpu_bench_feeds_from_the_pil_loader_where_tensorflow_is_missing(tmp_path):
    """The lent GPU machines have JAX but no TensorFlow: the fed rows then read the PIL loader's
    training batches (endless, the same size as the device batch)."""
    from benchmarks import input_bench
    from benchmarks.gpu_bench import input_feed

    folder = input_bench.make_images(str(tmp_path), "deepfashion300", 6, processes=1)
    name, make = input_feed(folder, 4, 32, "PIL")
    batches = make()
    shapes = [next(batches).shape for _ in range(3)]  # more batches than one pass holds
    assert name == "PIL" and shapes == [(4, 32, 32, 3)] * 3
