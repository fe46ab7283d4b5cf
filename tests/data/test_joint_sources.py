"""Soft targets, normalising examples of different builders, mixing sources, the source flags."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from conftest import encode

from fashion_keras.data import pipeline, sources
from fashion_keras.heads import DEEPFASHION6, FASHIONAI8, Head, get_heads
from fashion_keras.training.config import TrainConfig

DATASETS = pathlib.Path(__file__).resolve().parents[2] / "datasets"
SLEEVE, FIT = DEEPFASHION6[1], DEEPFASHION6[5]
COLLAR = FASHIONAI8[1]  # 5 classes
IMG = encode(np.full((20, 16, 3), 90, np.uint8))


def fashionai_like(n: int) -> tf.data.Dataset:
    """Examples shaped like fashionai_attributes: labels, soft_labels, m_mask, no bbox."""
    soft = np.zeros((n, 5), np.float32)
    soft[:, 1], soft[:, 2] = 2 / 3, 1 / 3
    return tf.data.Dataset.from_tensor_slices(
        {
            "image": [IMG] * n,
            "task": np.ones(n, "int64"),
            "labels": {"collar_design_labels": np.ones(n, "int64")},
            "soft_labels": {"collar_design_labels": soft},
            "m_mask": {"collar_design_labels": soft == 1 / 3},
        }
    )


def deepfashion_like(n: int) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(
        {
            "image": [IMG] * n,
            "bbox": np.tile([[0.1, 0.1, 0.9, 0.9]], (n, 1)).astype("float32"),
            "labels": {"sleeve": np.full(n, 2, "int64"), "fit": np.zeros(n, "int64")},
            "category": np.full(n, 7, "int64"),
        }
    )


def test_soft_labels_are_the_training_target_where_given():
    ex = next(iter(fashionai_like(1)))
    targets, weights = pipeline.targets_from_example(ex, (COLLAR, SLEEVE))
    np.testing.assert_allclose(targets["collar_design_labels"], [0, 2 / 3, 1 / 3, 0, 0])
    assert weights["collar_design_labels"] == 1.0
    np.testing.assert_array_equal(targets["sleeve"], [0, 0, 0])
    assert weights["sleeve"] == 0.0


def test_soft_labels_of_an_unlabelled_row_are_masked():
    ex = next(iter(fashionai_like(1)))
    ex = {**ex, "labels": {"collar_design_labels": tf.constant(-1, tf.int64)}}
    ex["soft_labels"] = {"collar_design_labels": tf.zeros(5)}
    targets, weights = pipeline.targets_from_example(ex, (COLLAR,))
    assert (
        weights["collar_design_labels"] == 0.0 and not targets["collar_design_labels"].numpy().any()
    )


def test_normalize_gives_one_structure_and_is_idempotent():
    heads = (COLLAR, SLEEVE, FIT)
    a = pipeline.normalize_examples(fashionai_like(2), heads)
    b = pipeline.normalize_examples(deepfashion_like(2), heads)
    assert a.element_spec == b.element_spec
    ea, eb = next(iter(a)), next(iter(b))
    np.testing.assert_allclose(ea["bbox"], [0, 0, 1, 1])  # no bbox: the whole image
    assert ea["labels"]["sleeve"] == -1 and eb["labels"]["collar_design_labels"] == -1
    np.testing.assert_array_equal(eb["soft_labels"]["sleeve"], [0, 0, 1])
    again = pipeline.normalize_example(ea, heads)
    for key in ("labels", "soft_labels"):
        for h in heads:
            np.testing.assert_array_equal(again[key][h.name], ea[key][h.name])


def test_mix_masks_every_head_on_the_sources_that_do_not_label_it():
    heads = (COLLAR, SLEEVE, FIT)
    mixed = pipeline.mix_examples([fashionai_like(3), deepfashion_like(5)], heads, [1, 3], seed=1)
    ds = pipeline.make_dataset(mixed, heads, 32, 200, training=True, seed=1).take(1)
    _, targets, weights = next(iter(ds))
    from_fai = weights["collar_design_labels"].numpy() == 1
    np.testing.assert_array_equal(weights["sleeve"].numpy(), ~from_fai)
    np.testing.assert_array_equal(weights["fit"].numpy(), ~from_fai)
    np.testing.assert_allclose(
        targets["collar_design_labels"].numpy()[from_fai][0], [0, 2 / 3, 1 / 3, 0, 0]
    )
    assert not targets["sleeve"].numpy()[from_fai].any()
    # the weights set the mixture: 1:3
    assert from_fai.mean() == pytest.approx(0.25, abs=0.08)


def test_mix_is_repeatable_with_a_seed_and_checks_weights():
    heads = (COLLAR, SLEEVE)

    def draw(seed):
        ds = pipeline.mix_examples([fashionai_like(2), deepfashion_like(2)], heads, seed=seed)
        return [int(ex["labels"]["sleeve"]) for ex in ds.take(40)]

    assert draw(3) == draw(3)
    assert set(draw(3)) == {-1, 2}  # equal weights: both sources appear
    with pytest.raises(ValueError, match="expected 2 numbers >= 0"):
        pipeline.mix_examples([fashionai_like(1), deepfashion_like(1)], heads, [1.0])
    with pytest.raises(ValueError, match="not all 0"):
        pipeline.mix_examples([fashionai_like(1), deepfashion_like(1)], heads, [0, 0])


def test_concat_runs_every_source_once():
    heads = (COLLAR, SLEEVE)
    ds = pipeline.concat_examples([fashionai_like(2), deepfashion_like(3)], heads)
    assert [int(ex["labels"]["sleeve"]) for ex in ds] == [-1, -1, 2, 2, 2]


def test_parse_sources_and_weights():
    got = sources.parse_sources("fashionai_attributes/m_half=/a, deepfashion_attributes=~/b")
    assert got == [
        sources.Source("fashionai_attributes/m_half", "/a"),
        sources.Source("deepfashion_attributes", "~/b"),
    ]
    assert sources.parse_source_weights("0.7,0.3", got) == [0.7, 0.3]
    assert sources.parse_source_weights(
        "deepfashion_attributes=1,fashionai_attributes/m_half=3", got
    ) == [3.0, 1.0]
    with pytest.raises(ValueError, match="expected NAME=DIR"):
        sources.parse_sources("fashionai_attributes")
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        sources.parse_sources("nope=/x")
    with pytest.raises(ValueError, match="expected 2 numbers >= 0"):
        sources.parse_source_weights("1", got)
    with pytest.raises(ValueError, match="differ from the sources"):
        sources.parse_source_weights("fashionai_attributes=1,x=2", got)
    with pytest.raises(ValueError, match="could not convert"):
        sources.parse_source_weights("a,b", got)


def test_config_sources_exclude_data_dir():
    cfg = TrainConfig(sources="fashionai_attributes=/a")
    assert not cfg.data.uses_demo_data
    with pytest.raises(ValueError, match="'sources' and 'data_dir' exclude each other"):
        TrainConfig(sources="fashionai_attributes=/a", data_dir="/b").resolve()
    with pytest.raises(ValueError, match="'source_weights' needs 'sources'"):
        TrainConfig(source_weights="1,2").resolve()


def test_training_data_from_two_builders(tmp_path):
    """Two real builders on their dummy data: mixed train stream, concatenated val."""
    heads = get_heads("fashionai8,deepfashion_category")
    fai = sources.get_builder(
        "fashionai_attributes/m_half", str(DATASETS / "fashionai_attributes" / "dummy_data"),
        str(tmp_path),
    )  # fmt: skip
    dfc = sources.get_builder(
        "deepfashion_category", str(DATASETS / "deepfashion_category" / "dummy_data"), str(tmp_path)
    )
    data = sources.training_data([fai, dfc], heads, seed=0)
    assert data.num_train == 11 + 9
    assert data.weights == pytest.approx([11 / 20, 9 / 20])
    val = list(tfds.as_numpy(data.val))
    assert len(val) == 5 + 3
    fai_rows = [ex for ex in val if ex["labels"]["category"] == -1]
    assert len(fai_rows) == 5
    for ex in fai_rows:  # soft targets of m_half; exactly one task labelled
        labelled = [h.name for h in heads if ex["labels"][h.name] >= 0]
        assert len(labelled) == 1
        assert ex["soft_labels"][labelled[0]].sum() == pytest.approx(1.0)
    train = pipeline.make_dataset(data.train, heads, 32, 8, training=True, seed=0)
    _, targets, weights = next(iter(train))
    assert set(targets) == {h.name for h in heads}
    assert weights["category"].shape == (8,)
    # a spec the data cannot feed fails with both class lists
    wrong = [Head("category", ("a", "b"))]
    with pytest.raises(pipeline.DatasetHeadsError, match="head 'category': classes"):
        sources.training_data([dfc], wrong)
