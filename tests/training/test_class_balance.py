"""Imbalanced classes: per-class loss weights (the head spec's, or --class-weights from the
training counts), class-balanced sampling, the training label counts, and the balanced accuracy
metric training logs."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from fashion_keras.data import pipeline, sources
from fashion_keras.evaluation import scoring
from fashion_keras.heads import Head, HeadSpecError, get_heads, heads_from_dict
from fashion_keras.training import losses as L
from fashion_keras.training import metrics as M

NECKLINE = Head("neckline", ("v_neck", "halter"))  # the shop of the issue: 268 / 58
COUNTS = {"neckline": np.array([268, 58])}


def test_balanced_weights_are_inverse_frequency_averaging_one_over_the_labels():
    w = L.class_weights([NECKLINE], COUNTS, "balanced")["neckline"]
    # N / (K n_c) = 326 / (2 * 268), 326 / (2 * 58), then scaled so that sum(n w) / N = 1
    raw = np.array([326 / 536, 326 / 116])
    np.testing.assert_allclose(w, raw / (np.dot([268, 58], raw) / 326), rtol=1e-6)
    np.testing.assert_allclose(np.dot([268, 58], w) / 326, 1.0, rtol=1e-6)
    assert w[1] / w[0] == pytest.approx(268 / 58, rel=1e-6)  # the rare class weighs 4.6 x more
    sqrt = L.class_weights([NECKLINE], COUNTS, "sqrt")["neckline"]
    assert sqrt[1] / sqrt[0] == pytest.approx(np.sqrt(268 / 58), rel=1e-6)
    assert L.class_weights([NECKLINE], COUNTS, "none") == {"neckline": None}


def test_the_head_spec_weights_win_and_a_class_without_labels_weighs_one():
    spec = Head("neckline", ("v_neck", "halter"), class_weights=(1.0, 3.0))
    w = L.class_weights([spec], COUNTS, "balanced")["neckline"]
    assert w[1] / w[0] == pytest.approx(3.0)
    three = Head("h", ("a", "b", "c"))
    w = L.class_weights([three], {"h": np.array([10, 0, 30])}, "balanced")["h"]
    assert w[1] / w[0] == pytest.approx(1.0 / (40 / 20))  # raw 1 against raw 40/20
    with pytest.raises(ValueError, match=r"class weights = 'log'"):
        L.class_weights([NECKLINE], COUNTS, "log")


def test_class_weights_in_a_head_spec_file_are_checked_and_round_trip():
    spec = {"heads": [{"name": "n", "classes": ["a", "b"], "class_weights": [1, 4]}]}
    (head,) = heads_from_dict(spec)
    assert head.class_weights == (1.0, 4.0) and heads_from_dict({"heads": [head.to_dict()]})
    with pytest.raises(HeadSpecError, match="class_weights has 3 entries, expected one per class"):
        Head("n", ("a", "b"), class_weights=(1, 2, 3))
    with pytest.raises(HeadSpecError, match=r"class_weights\[1\] = 0 must be a number > 0"):
        Head("n", ("a", "b"), class_weights=(1, 0))


def test_the_focal_loss_weighs_each_class_by_its_weight():
    weights = {"neckline": np.array([0.5, 2.0], np.float32)}
    loss = L.focal_losses([NECKLINE], gamma=0.0, alpha=1.0, weights=weights)["neckline"]
    y = np.eye(2, dtype="float32")
    p = np.full((2, 2), 0.5, "float32")
    got = keras.ops.convert_to_numpy(loss(y, p, sample_weight=np.ones(2, "float32")))
    # cross-entropy log 2 per row, times 0.5 and 2.0: the mean is 1.25 log 2
    assert got == pytest.approx(1.25 * np.log(2), rel=1e-5)


def _examples(labels: np.ndarray) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(
        {"image": [b"x"] * len(labels), "labels": {"neckline": labels}}
    )


def test_balanced_sampling_equalises_the_classes_and_keeps_the_unlabelled_share():
    labels = np.array([0] * 80 + [1] * 10 + [-1] * 30)
    counts = pipeline.count_labels(_examples(labels), [NECKLINE])
    np.testing.assert_array_equal(counts["neckline"], [80, 10])  # unlabelled rows not counted
    stream = pipeline.balance_classes(
        _examples(labels).shuffle(120, seed=1), NECKLINE, counts["neckline"], 120, seed=2
    )
    drawn = np.array([int(e["labels"]["neckline"]) for e in stream.take(4000)])
    assert np.mean(drawn == -1) == pytest.approx(0.25, abs=0.03)  # 30 / 120, as before
    assert np.mean(drawn == 0) == pytest.approx(0.375, abs=0.03)  # 90 / 120 split in two
    assert np.mean(drawn == 1) == pytest.approx(0.375, abs=0.03)


def test_the_build_report_counts_equal_a_count_of_the_examples(tmp_path):
    heads = get_heads("datasets/custom_csv/dummy_data/heads.yaml")
    builder = sources.get_builder(
        "custom_csv", "datasets/custom_csv/dummy_data", str(tmp_path), heads=heads
    )
    from_report = sources.label_counts([builder], "train", heads)
    counted = pipeline.count_labels(sources.load_split(builder, "train"), heads)
    for h in heads:
        np.testing.assert_array_equal(from_report[h.name], counted[h.name])
        assert from_report[h.name].sum() > 0


def test_the_balanced_accuracy_metric_equals_the_numpy_score_on_labelled_rows():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=50).astype("float32")
    labels = rng.integers(0, 3, 50)
    weights = (rng.random(50) > 0.3).astype("float32")
    metric = M.BalancedAccuracy(3)
    for part in (slice(0, 20), slice(20, 50)):  # accumulates over batches
        metric.update_state(np.eye(3)[labels[part]], probs[part], weights[part])
    masked = np.where(weights > 0, labels, -1)
    assert float(metric.result()) == pytest.approx(scoring.balanced_accuracy(probs, masked))
    collapse = np.tile([0.9, 0.05, 0.05], (50, 1))  # always the first class
    metric.reset_state()
    metric.update_state(np.eye(3)[labels], collapse)
    assert float(metric.result()) == pytest.approx(1 / 3)
