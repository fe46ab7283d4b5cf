"""Keypoint heads train beside softmax heads: targets masked per source, NE reported."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import encode

from fashion_keras.data import pipeline
from fashion_keras.heads import Head, KeypointHead, heads_to_dict, visibility_output
from fashion_keras.training import trainer as T
from fashion_keras.training.config import TrainConfig

COLOUR = Head("colour", ("dark", "light"))
KP = KeypointHead(
    "kp",
    ("left", "right", "top"),
    (("left", "right"),),
    {"wide": (("left", "right", "top"), ("left", "right"))},
)
HEADS = (COLOUR, KP)


def _photo(rng, points=None):
    """A 72 x 60 photo: dark or light, with bright dots at ``points``."""
    image = np.full((60, 72, 3), rng.integers(20, 235), np.uint8)
    for x, y in points if points is not None else []:
        image[int(y) - 2 : int(y) + 3, int(x) - 2 : int(x) + 3] = (255, 0, 0)
    return encode(image, "PNG")


def _attribute_rows(n, seed=0):
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for _ in range(n):
        images.append(_photo(rng))
        labels.append(int(rng.integers(2)))
    return tf.data.Dataset.from_tensor_slices({"image": images, "labels": {"colour": labels}})


def _keypoint_rows(n, seed=1):
    rng = np.random.default_rng(seed)
    images, points = [], []
    for _ in range(n):
        left = (rng.uniform(10, 30), rng.uniform(15, 45))
        right = (left[0] + rng.uniform(20, 30), left[1] + rng.uniform(-5, 5))
        top = ((left[0] + right[0]) / 2, rng.uniform(5, 12))
        pts = np.array([left, right, top])
        images.append(_photo(rng, pts))
        points.append(np.column_stack([pts, np.ones(3)]).astype(np.float32))
    return tf.data.Dataset.from_tensor_slices(
        {
            "image": images,
            "keypoints": {"kp": np.stack(points)},
            "keypoint_categories": {"kp": np.zeros(n, np.int64)},
        }
    )


def test_each_source_trains_only_its_own_heads():
    """Attribute rows carry no keypoint weight and keypoint rows no class weight."""
    mixed = pipeline.concat_examples([_attribute_rows(4), _keypoint_rows(4)], HEADS)
    batch = next(iter(pipeline.make_dataset(mixed, HEADS, 32, 8, training=True, seed=0)))
    images, targets, weights = batch
    assert images.shape == (8, 32, 32, 3)
    assert set(targets) == {"colour", "kp", visibility_output("kp")}
    by_row = np.stack([weights["colour"], weights["kp"], weights[visibility_output("kp")]], 1)
    # four attribute rows and four keypoint rows, in a shuffled order
    assert sorted(map(tuple, by_row.tolist())) == [(0, 1, 1)] * 4 + [(1, 0, 0)] * 4
    kp = np.asarray(targets["kp"])
    np.testing.assert_array_equal(kp[np.asarray(weights["kp"]) == 0], -1)  # all absent
    assert targets["kp"].shape == (8, 3, 3)


def test_a_keypoint_head_of_the_wrong_size_is_named():
    features = {"keypoints": {"kp": tf.TensorSpec([5, 3])}}

    class _Group(dict):
        pass

    with pytest.raises(pipeline.DatasetHeadsError, match=r"'kp': 3 keypoints.*\[5, 3\]"):
        pipeline.check_heads(HEADS, _Group(features), "mine")


def test_joint_training_reports_ne_against_the_mean_position_baseline(tmp_path):
    train = pipeline.mix_examples([_attribute_rows(24), _keypoint_rows(24)], HEADS, seed=0)
    val = pipeline.concat_examples([_attribute_rows(8, seed=5), _keypoint_rows(8, seed=6)], HEADS)
    cfg = TrainConfig(
        heads=str(tmp_path / "heads.json"),
        backbone="seresnet_tiny",
        image_size=32,
        batch_size=8,
        epochs=2,
        steps_per_epoch=3,
        learning_rate=1e-3,
        keypoint_filters=8,
        output_dir=str(tmp_path / "run"),
        verbose=0,
    )
    (tmp_path / "heads.json").write_text(json.dumps(heads_to_dict(HEADS)))
    result = T.train(cfg, train_examples=train, val_examples=val, export=False)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    kp = metrics["keypoints"]["kp"]
    assert kp["images"] == 8 and kp["points"] == 24  # the keypoint rows of val, every point
    assert kp["baseline"]["images"] == 8 and kp["baseline"]["ne_percent"] > 0
    assert result.val_metrics["kp_ne_percent"] == pytest.approx(kp["ne_percent"])
    assert "colour" in metrics["heads"]  # the softmax head's report as before
    assert "val_mean_accuracy" in result.history  # the best checkpoint's criterion
    reloaded = keras.saving.load_model(str(tmp_path / "run" / "model.keras"))
    out = reloaded(np.zeros((1, 32, 32, 3), np.float32))
    assert set(out) == {"colour", "kp", "kp_visibility"} and out["kp"].shape == (1, 8, 8, 3)
    assert reloaded.keypoint_stride == 4


def test_a_keypoint_only_run_keeps_the_best_epoch_by_distance(tmp_path):
    (tmp_path / "heads.json").write_text(json.dumps(heads_to_dict((KP,))))
    cfg = TrainConfig(
        heads=str(tmp_path / "heads.json"),
        backbone="seresnet_tiny",
        image_size=32,
        batch_size=8,
        epochs=2,
        steps_per_epoch=2,
        keypoint_filters=8,
        augment_rotation=10.0,
        augment_scale=0.1,
        output_dir=str(tmp_path / "run"),
        verbose=0,
    )
    T.train(cfg, train_examples=_keypoint_rows(16), val_examples=_keypoint_rows(8, 7), export=False)
    best = json.loads((tmp_path / "run" / "checkpoints" / "best.json").read_text())
    assert best["monitor"] == "val_kp_distance"


@pytest.mark.slow
def test_the_keypoint_demo_learns_far_below_the_mean_position_baseline(tmp_path):
    """``python -m fashion_keras.train --heads fashionai_keypoints`` on the synthetic demo (the
    README's command, demo preset): its NE on the demo val split beats the baseline by far."""
    run = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "fashion_keras.train", "--heads", "fashionai_keypoints"]
        + ["--output-dir", str(run), "--verbose", "0"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    kp = json.loads((run / "metrics.json").read_text())["keypoints"]["fashionai_keypoints"]
    assert kp["images"] > 50 and kp["skipped_images"] == 0
    assert set(kp["per_category"]) == {"blouse", "outwear", "trousers", "skirt", "dress"}
    assert kp["ne_percent"] < kp["baseline"]["ne_percent"] / 1.5
    assert "Validation keypoints, fashionai_keypoints" in done.stdout
