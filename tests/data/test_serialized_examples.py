"""Parsing the builders' serialized records without the builder (what TFX ExampleGen passes on)
gives exactly what the builder's own dataset gives after ``normalize_example``."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from fashion_keras.data import pipeline, sources
from fashion_keras.heads import Head, get_heads


def _records(builder, split: str) -> tf.data.Dataset:
    files = tf.io.gfile.glob(f"{builder.data_path}/*-{split}.tfrecord-*")
    assert files
    return tf.data.TFRecordDataset(files)


def _assert_same(parsed: dict, expected: dict, heads) -> None:
    assert parsed["image"].numpy() == expected["image"].numpy()
    np.testing.assert_allclose(parsed["bbox"], expected["bbox"])
    for h in heads:
        assert int(parsed["labels"][h.name]) == int(expected["labels"][h.name]), h.name
        np.testing.assert_allclose(parsed["soft_labels"][h.name], expected["soft_labels"][h.name])


def test_parsed_records_match_the_builder_examples(small_demo):
    builder = small_demo["builder"]
    # deepfashion6 heads (labels/<head>), category (a top-level label) and a head it lacks
    heads = (
        *get_heads("deepfashion6"),
        *get_heads("deepfashion_category"),
        Head("colour", ("black", "white")),
    )
    parsed = list(pipeline.parse_serialized_examples(_records(builder, "val"), heads))
    expected = list(pipeline.normalize_examples(sources.load_split(builder, "val"), heads))
    assert len(parsed) == len(expected) == 32
    for p, e in zip(parsed, expected, strict=True):
        _assert_same(p, e, heads)
        assert int(p["labels"]["colour"]) == -1
        assert not p["soft_labels"]["colour"].numpy().any()
    assert {int(p["labels"]["category"]) for p in parsed} != {-1}


def test_parsed_records_keep_soft_targets(tmp_path):
    import os

    import fashion_keras_datasets.fashionai_attributes as fai

    builder = sources.get_builder(
        "fashionai_attributes/m_half",
        os.path.join(os.path.dirname(fai.__file__), "dummy_data"),
        str(tmp_path),
    )
    heads = get_heads("fashionai8")
    parsed = list(pipeline.parse_serialized_examples(_records(builder, "train"), heads))
    expected = list(pipeline.normalize_examples(sources.load_split(builder, "train"), heads))
    assert len(parsed) == len(expected) > 0
    for p, e in zip(parsed, expected, strict=True):
        _assert_same(p, e, heads)
    # every row labels one task: the other heads are -1 with an all-zero target
    for p in parsed:
        labelled = [h.name for h in heads if int(p["labels"][h.name]) >= 0]
        assert len(labelled) == 1
    # m_half: some target is soft (a 'm' class at 0.5 weight), not one-hot
    assert any(
        0.0 < float(v) < 1.0 for p in parsed for t in p["soft_labels"].values() for v in t.numpy()
    )


def test_missing_box_is_the_whole_image_and_missing_image_fails():
    heads = get_heads("deepfashion6")
    example = tf.train.Example(
        features=tf.train.Features(
            feature={
                "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"jpeg"])),
                "labels/sleeve": tf.train.Feature(int64_list=tf.train.Int64List(value=[2])),
            }
        )
    ).SerializeToString()
    parsed = pipeline.parse_serialized_example(tf.constant(example), heads)
    np.testing.assert_allclose(parsed["bbox"], [0.0, 0.0, 1.0, 1.0])
    assert int(parsed["labels"]["sleeve"]) == 2 and int(parsed["labels"]["fit"]) == -1
    np.testing.assert_allclose(parsed["soft_labels"]["sleeve"], [0.0, 0.0, 1.0])
    no_image = tf.train.Example().SerializeToString()
    with pytest.raises(tf.errors.InvalidArgumentError, match="image"):
        pipeline.parse_serialized_example(tf.constant(no_image), heads)
