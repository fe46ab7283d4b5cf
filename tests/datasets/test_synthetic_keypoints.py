"""Synthetic FashionAI keypoints: the drawn garments' keypoints and the keypoint demo release.

The keypoints must sit where the garment is drawn (on its outline, left points on the image's
left as in the FashionAI annotations), the release must build unchanged with the
``fashionai_keypoints`` builder, and generation must be deterministic.
"""

from __future__ import annotations

import csv
import filecmp
import os

import numpy as np
import pytest
from dataset_helpers import examples, prepare

from fashion_keras.heads import DEEPFASHION6, FASHIONAI_KEYPOINTS
from fashion_keras_datasets.fashionai_keypoints import fashionai_keypoints_dataset_builder
from fashion_keras_datasets.synthetic import demo, garments
from fashion_keras_datasets.synthetic import keypoints_demo as kd

NAMES = FASHIONAI_KEYPOINTS.keypoints
IDX = {name: i for i, name in enumerate(NAMES)}
#: Concave corners of the outline (a narrow wedge of background) or, for a wide short sleeve,
#: its inner corner drawn on the body: on the cloth, but not always next to the background.
NOT_ON_OUTLINE = {"armpit_left", "armpit_right", "crotch", "cuff_left_in", "cuff_right_in"}


def _labels(rng: np.random.Generator, category: str, **fixed: str) -> dict[str, str]:
    labels = {h.name: h.classes[int(rng.integers(h.num_classes))] for h in DEEPFASHION6}
    if category == "blouse":
        labels["length"] = "no_dress"
    elif category == "dress" and labels["length"] == "no_dress":
        labels["length"] = "mini_length"
    return labels | fixed


def _drawings(n: int = 8, max_side: int = 200, **fixed: str):
    for category in garments.KEYPOINT_CATEGORIES:
        for i in range(n):
            rng = np.random.default_rng([17, i])
            labels = _labels(rng, category, **fixed)
            yield (
                labels,
                garments.render_garment_keypoints(rng, labels, max_side, category=category),
            )


def _chebyshev(mask: np.ndarray, x: float, y: float) -> int:
    """Pixels (max of |dx|, |dy|) from (x, y) to the nearest True pixel of ``mask``."""
    ys, xs = np.nonzero(mask)
    return int(np.min(np.maximum(np.abs(xs - x), np.abs(ys - y))))


def _visible(d: garments.GarmentDrawing) -> dict[str, tuple[float, float]]:
    return {NAMES[k]: (float(x), float(y)) for k, (x, y, v) in enumerate(d.keypoints) if v == 1}


# --- the drawn keypoints ------------------------------------------------------------------------


def test_keypoints_lie_on_the_drawn_garment_outline():
    checked = 0
    for _, d in _drawings():
        assert d.keypoints.shape == (24, 3) and d.keypoints.dtype == np.float32
        assert d.mask.shape == (d.image.height, d.image.width)
        for name, (x, y) in _visible(d).items():
            assert 0 <= x < d.image.width and 0 <= y < d.image.height, (d.category, name)
            assert _chebyshev(d.mask, x, y) <= 2, (d.category, name, x, y)  # on the cloth
            if name not in NOT_ON_OUTLINE:  # and at its edge
                assert _chebyshev(~d.mask, x, y) <= 2, (d.category, name, x, y)
            checked += 1
    assert checked > 300


def test_left_keypoints_are_on_the_images_left_and_in_out_and_top_down_order():
    for labels, d in _drawings():
        p = _visible(d)
        centre = float(np.nonzero(d.mask)[1].mean())  # the garments are left-right symmetric
        for left, right in FASHIONAI_KEYPOINTS.flip_pairs:
            if left in p:
                assert right in p
                assert p[left][0] < centre < p[right][0], (d.category, left, right)
        for part in ("cuff_left", "cuff_right", "bottom_left", "bottom_right"):
            if f"{part}_in" in p:  # the outer edge is farther from the body's centre line
                assert abs(p[f"{part}_out"][0] - centre) > abs(p[f"{part}_in"][0] - centre)
        for upper, lower in [
            ("neckline_left", "armpit_left"),
            ("shoulder_right", "armpit_right"),
            ("armpit_left", "waistline_left"),
            ("waistline_right", "hemline_right"),
            ("armpit_left", "top_hem_left"),
            ("waistband_left", "hemline_left"),
            ("waistband_right", "crotch"),
            ("crotch", "bottom_left_in"),
            ("center_front", "waistline_left"),
        ]:
            if upper in p and lower in p:
                assert p[upper][1] < p[lower][1], (d.category, labels, upper, lower)


def test_each_category_defines_its_keypoints_and_sleeveless_tops_have_no_cuffs():
    seen = set()
    for labels, d in _drawings():
        seen.add(d.category)
        defined = FASHIONAI_KEYPOINTS.defined_mask(d.category)
        visible = d.keypoints[:, 2] == 1
        for k, name in enumerate(NAMES):
            if not defined[k]:
                assert d.keypoints[k].tolist() == [-1, -1, -1], (d.category, name)
            elif "cuff" in name:
                assert visible[k] == (labels["sleeve"] != "sleeveless"), (d.category, name)
            else:
                assert visible[k], (d.category, name)
    assert seen == set(FASHIONAI_KEYPOINTS.category_names)


def test_keypoint_rendering_keeps_the_attribute_demo_drawing():
    for i in range(6):
        labels = _labels(np.random.default_rng(i), ("blouse", "dress")[i % 2])
        image, bbox = garments.render_garment(np.random.default_rng([5, i]), labels)
        d = garments.render_garment_keypoints(np.random.default_rng([5, i]), labels)
        assert d.category == garments.keypoint_category(labels)
        assert d.image.tobytes() == image.tobytes() and d.bbox == bbox


def test_render_garment_keypoints_rejects_a_category_its_labels_contradict():
    labels = _labels(np.random.default_rng(0), "dress", length="maxi_length")
    with pytest.raises(ValueError, match="blouse"):
        garments.render_garment_keypoints(np.random.default_rng(0), labels, category="blouse")
    with pytest.raises(ValueError, match="one of"):
        garments.render_garment_keypoints(np.random.default_rng(0), labels, category="coat")


# --- the release --------------------------------------------------------------------------------


def _rows(path) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.reader(f))


def test_release_layout_rows_and_categories(tmp_path):
    root = tmp_path / "kp"
    assert kd.generate_keypoints_demo(root, 60, 5, seed=4, max_side=64) == {"train": 60, "test": 5}
    rows = _rows(root / kd.LABEL_FILE)
    assert rows[0] == ["image_id", "image_category", *NAMES]
    assert len(rows) == 61 and all(len(r) == 26 for r in rows)
    counts = {c: 0 for c in FASHIONAI_KEYPOINTS.category_names}
    for i, row in enumerate(rows[1:]):
        ex = kd.sample_keypoint_example(4, "train", i, 64)
        assert row[:2] == [f"Images/{ex.category}/train_{i:05d}.jpg", ex.category]
        assert row[2:] == kd.keypoint_cells(ex.keypoints)
        assert (root / row[0]).is_file()
        counts[ex.category] += 1
    assert min(counts.values()) >= 5, counts  # every category, about equally often
    test_rows = _rows(root / kd.TEST_FILE)
    assert test_rows[0] == ["image_id", "image_category"] and len(test_rows) == 6
    assert all(len(r) == 2 and (root / r[0]).is_file() for r in test_rows[1:])


def test_same_seed_gives_the_same_bytes(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for root, seed in ((a, 1), (b, 1), (c, 2)):
        kd.generate_keypoints_demo(root, 8, 2, seed=seed, max_side=48)
    files = sorted(os.path.relpath(os.path.join(d, f), a) for d, _, fs in os.walk(a) for f in fs)
    assert len(files) == 8 + 2 + 4  # images, train.csv, test.csv, README, marker
    match, mismatch, errors = filecmp.cmpfiles(a, b, files, shallow=False)
    assert (mismatch, errors) == ([], []) and len(match) == len(files)
    assert (a / kd.LABEL_FILE).read_bytes() != (c / kd.LABEL_FILE).read_bytes()


def _keypoint_rows(example: dict) -> np.ndarray:
    """``[24, 3]`` (x, y, v) of a built example, from either feature layout of the builder."""
    kp = example["keypoints"]
    if isinstance(kp, dict):
        return np.asarray(kp["fashionai_keypoints"], np.float32)
    return np.concatenate([kp, example["visibility"][:, None].astype(np.float32)], axis=1)


def test_release_builds_with_the_fashionai_keypoints_builder(tmp_path):
    root = tmp_path / "manual"
    kd.generate_keypoints_demo(root, 24, 3, seed=6, max_side=48)
    builder = prepare(fashionai_keypoints_dataset_builder.Builder, root, tmp_path / "data")
    built = {**examples(builder, "train"), **examples(builder, "val")}
    assert len(built) == 24 and len(examples(builder, "test")) == 3
    categories = FASHIONAI_KEYPOINTS.category_names
    for i in range(24):
        ex = kd.sample_keypoint_example(6, "train", i, 48)
        got = built[kd.image_id("train", i, ex.category)]
        assert categories[int(got["labels"]["category"])] == ex.category
        np.testing.assert_array_equal(_keypoint_rows(got), ex.keypoints)


# --- the cached folder and the CLI --------------------------------------------------------------


def test_demo_keypoints_manual_dir_is_cached_and_regenerated_when_stale(tmp_path, monkeypatch):
    monkeypatch.setenv("FASHION_KERAS_CACHE", str(tmp_path / "cache"))
    path = kd.demo_keypoints_manual_dir(num_train=3, num_test=1, seed=2)
    name = f"v{kd.GENERATOR_VERSION}_s2_3_1"
    assert path == str(tmp_path / "cache" / "keypoints_demo" / name / "manual")
    marker = demo.read_marker(path, kd.MARKER_NAME)
    assert marker["counts"] == {"train": 3, "test": 1}
    assert marker["garments_version"] == demo.GENERATOR_VERSION
    assert len(_rows(os.path.join(path, kd.LABEL_FILE))) == 4

    calls = []
    real_write = kd._write_tree
    monkeypatch.setattr(kd, "_write_tree", lambda *a: calls.append(a) or real_write(*a))
    assert kd.demo_keypoints_manual_dir(num_train=3, num_test=1, seed=2) == path
    assert not calls  # cached
    monkeypatch.setattr(demo, "GENERATOR_VERSION", demo.GENERATOR_VERSION + 1)
    assert kd.demo_keypoints_manual_dir(num_train=3, num_test=1, seed=2) == path
    assert len(calls) == 1  # the garment drawing changed: regenerated in place
    assert demo.read_marker(path, kd.MARKER_NAME)["garments_version"] == demo.GENERATOR_VERSION
    assert sorted(os.listdir(os.path.dirname(path))) == ["manual"]  # no temporary folders


def test_cli_writes_the_release_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "cli"
    args = [str(out), "--num-train", "2", "--num-test", "0", "--max-side", "40"]
    assert kd.main(args) == 0
    assert len(_rows(out / kd.LABEL_FILE)) == 3 and not (out / kd.TEST_FILE).exists()
    assert "wrote" in capsys.readouterr().out
    assert kd.main(args) == 2  # exists, no --overwrite
    assert kd.main([*args, "--overwrite"]) == 0
