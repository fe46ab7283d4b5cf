"""TFX tier, unit: the Trainer's run_fn on tiny datasets (deepfashion6, fashionai8, a custom
head spec), the taxonomy schema and its anomalies, the Evaluator's per-head accuracy metric."""

from __future__ import annotations

import glob
import io
import os

import numpy as np
import pytest
from tfx_helpers import (
    TFX_SKIP_REASON,
    TINY_TRAIN_CONFIG,
    custom_csv_dummy,
    custom_heads_file,
    fashionai_dummy,
    write_example_gen_split,
)

pytest.importorskip("tfx", reason=TFX_SKIP_REASON)

import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402
from tfx import v1 as tfx  # noqa: E402

from fashion_keras.heads import get_heads, heads_to_dict  # noqa: E402


def _jpeg(color=(200, 30, 30), size=(40, 56)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="JPEG")
    return buf.getvalue()


def _run_fn(builder, heads, tmp_path):
    from pipelines.models import trainer

    fn_args = tfx.components.FnArgs(
        train_files=[write_example_gen_split(builder, "train", str(tmp_path / "Split-train"))],
        eval_files=[write_example_gen_split(builder, "val", str(tmp_path / "Split-eval"))],
        train_steps=2,
        eval_steps=1,
        serving_model_dir=str(tmp_path / "model" / "Format-Serving"),
        model_run_dir=str(tmp_path / "model_run"),
        custom_config={"heads": heads_to_dict(heads), "train_config": TINY_TRAIN_CONFIG},
    )
    trainer.run_fn(fn_args)
    return fn_args


def _check_export(fn_args, heads, builder):
    export = fn_args.serving_model_dir
    assert os.path.isfile(os.path.join(export, "saved_model.pb"))
    loaded = tf.saved_model.load(export)
    assert {"serving_default", "predict_examples", "predict_images"} <= set(loaded.signatures)
    records = tf.io.gfile.glob(f"{builder.data_path}/*-val.tfrecord-*")
    serialized = [r.numpy() for r in tf.data.TFRecordDataset(records).take(3)]
    by_examples = loaded.signatures["predict_examples"](examples=tf.constant(serialized))
    by_bytes = loaded.signatures["serving_default"](image_bytes=tf.constant([_jpeg(), _jpeg()]))
    for head in heads:
        probs = by_examples[f"{head.name}_probs"].numpy()
        assert probs.shape == (len(serialized), head.num_classes)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
        labels = by_bytes[f"{head.name}_label"].numpy()
        assert labels.shape == (2,) and all(x.decode() in head.classes for x in labels)
    # training validated on the eval split and wrote its logs into the model run folder
    assert os.path.isfile(os.path.join(fn_args.model_run_dir, "metrics.json"))
    assert os.path.isfile(os.path.join(fn_args.model_run_dir, "heads_spec.json"))


def test_run_fn_deepfashion6(small_demo, tmp_path):
    heads = get_heads("deepfashion6")
    fn_args = _run_fn(small_demo["builder"], heads, tmp_path)
    _check_export(fn_args, heads, small_demo["builder"])


def check_soft_and_masked_targets(files: list[str], heads) -> int:
    """The Trainer's parsed records against the raw ``tf.train.Example``s: each FashionAI row
    labels one task; that head's target is the record's soft target (``m`` classes weighted,
    rows summing to 1) with weight 1, every other head has target 0 and weight 0. Returns how
    many targets were soft (not one-hot)."""
    from fashion_keras.data import pipeline
    from pipelines.models import trainer

    raw = tf.data.TFRecordDataset(tf.io.gfile.glob(files[0]), compression_type="GZIP")
    parsed = trainer.read_examples(files, heads)
    soft_rows = 0
    for record, example in zip(raw, parsed, strict=True):
        features = tf.train.Example.FromString(record.numpy()).features.feature
        targets, weights = pipeline.targets_from_example(example, heads)
        labelled = [h for h in heads if features[f"labels/{h.name}"].int64_list.value[0] >= 0]
        assert len(labelled) == 1, [h.name for h in labelled]
        for h in heads:
            target, weight = targets[h.name].numpy(), float(weights[h.name])
            if h is labelled[0]:
                want = np.array(features[f"soft_labels/{h.name}"].float_list.value)
                np.testing.assert_allclose(target, want, atol=1e-6)
                assert weight == 1.0 and abs(target.sum() - 1.0) < 1e-5
                soft_rows += int(np.count_nonzero(target) > 1)
            else:
                assert weight == 0.0 and not target.any(), h.name
    return soft_rows


def test_run_fn_fashionai8_soft_and_masked_labels(tmp_path_factory, tmp_path):
    heads = get_heads("fashionai8")
    builder = fashionai_dummy(tmp_path_factory)
    fn_args = _run_fn(builder, heads, tmp_path)
    assert check_soft_and_masked_targets(fn_args.train_files, heads) > 0  # m labels are soft
    _check_export(fn_args, heads, builder)


def test_run_fn_custom_head_spec(tmp_path_factory, tmp_path):
    heads = get_heads(custom_heads_file())
    builder = custom_csv_dummy(tmp_path_factory)
    fn_args = _run_fn(builder, heads, tmp_path)
    _check_export(fn_args, heads, builder)


def test_run_fn_rejects_a_config_without_heads(tmp_path):
    from pipelines.models import trainer

    with pytest.raises(ValueError, match="custom_config has no 'heads'"):
        trainer.training_config({"train_config": {}})
    with pytest.raises(ValueError, match=r"must not set \['output_dir'\]"):
        trainer.training_config(
            {"heads": heads_to_dict(get_heads("deepfashion6")), "train_config": {"output_dir": "x"}}
        )


# --- schema and anomalies ------------------------------------------------------------------------


def _example(image: bytes | None, labels: dict[str, int], bbox=(0.1, 0.1, 0.9, 0.9)) -> bytes:
    feature = {
        "bbox": tf.train.Feature(float_list=tf.train.FloatList(value=list(bbox))),
        **{
            f"labels/{k}": tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))
            for k, v in labels.items()
        },
    }
    if image is not None:
        feature["image"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _statistics(records: list[bytes], tmp_path, name: str):
    import tensorflow_data_validation as tfdv

    path = str(tmp_path / f"{name}.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for r in records:
            writer.write(r)
    return tfdv.generate_statistics_from_tfrecord(data_location=path)


def test_schema_flags_out_of_range_labels_and_missing_images(tmp_path):
    import tensorflow_data_validation as tfdv

    from pipelines import components

    heads = get_heads("deepfashion6")[:2]  # texture (7 classes), sleeve (3)
    good = [
        _example(_jpeg(), {"texture": i % 7, "sleeve": i % 3 if i % 4 else -1}) for i in range(12)
    ]
    schema = components.head_schema([_statistics(good, tmp_path, "good")], heads)
    domains = {f.name: f.int_domain for f in schema.feature if f.HasField("int_domain")}
    assert (domains["labels/sleeve"].min, domains["labels/sleeve"].max) == (-1, 2)
    assert (domains["labels/texture"].min, domains["labels/texture"].max) == (-1, 6)

    clean = tfdv.validate_statistics(_statistics(good[:6], tmp_path, "clean"), schema)
    assert not clean.anomaly_info, dict(clean.anomaly_info)

    bad = good[:6] + [
        _example(_jpeg(), {"texture": 1, "sleeve": 3}),  # sleeve has classes 0..2
        _example(None, {"texture": 2, "sleeve": 0}),  # no image
        _example(_jpeg(), {"texture": 2, "sleeve": 0}, bbox=(0.1, 0.1, 1.5, 0.9)),
    ]
    anomalies = tfdv.validate_statistics(_statistics(bad, tmp_path, "bad"), schema)
    flagged = dict(anomalies.anomaly_info)
    assert {"labels/sleeve", "image", "bbox"} <= set(flagged), flagged
    assert "labels/texture" not in flagged
    assert "max" in flagged["labels/sleeve"].description or "range" in str(flagged["labels/sleeve"])


def test_schema_needs_images_and_labelled_heads(tmp_path):
    from pipelines import components

    stats = _statistics([_example(None, {"sleeve": 1})] * 3, tmp_path, "noimage")
    with pytest.raises(ValueError, match="no 'image' feature"):
        components.head_schema([stats], get_heads("deepfashion6"))
    stats = _statistics([_example(_jpeg(), {"sleeve": 1})] * 3, tmp_path, "nolabel")
    with pytest.raises(ValueError, match="label none of the heads"):
        components.head_schema([stats], get_heads("fashionai8"))


# --- Evaluator metric ----------------------------------------------------------------------------


def test_labelled_accuracy_skips_unlabelled_examples():
    from tensorflow_model_analysis.metrics import metric_types

    from pipelines import components, metrics

    heads = get_heads("deepfashion6")
    config = components.eval_config(heads)
    [computation] = metrics.LabelledAccuracy().computations(
        eval_config=config, model_names=[""], output_names=["sleeve"]
    )
    combiner = computation.combiner
    acc = combiner.create_accumulator()
    probs = {0: [0.8, 0.1, 0.1], 1: [0.1, 0.8, 0.1], 2: [0.1, 0.1, 0.8]}
    # (label, argmax prediction): two right, one wrong, two unlabelled (-1) skipped
    for label, predicted in [(1, 1), (-1, 0), (0, 1), (2, 2), (-1, 2)]:
        element = metric_types.StandardMetricInputs(
            labels={"sleeve": np.array([label])},
            predictions={
                "sleeve_probs": np.array(probs[predicted]),
                "sleeve_class": np.array([predicted]),
            },
            example_weights={"sleeve": np.array([1.0])},
        )
        acc = combiner.add_input(acc, element)
    out = combiner.extract_output(combiner.merge_accumulators([acc, combiner.create_accumulator()]))
    values = {k.name: v for k, v in out.items()}
    assert values["labelled_examples"] == 3
    assert values["labelled_accuracy"] == pytest.approx(2 / 3)


def test_eval_config_thresholds_only_the_labelled_heads():
    from pipelines import components

    heads = get_heads("deepfashion6")
    config = components.eval_config(heads, 0.3, 0.05, thresholded_heads=["sleeve"])
    [spec] = config.model_specs
    assert spec.signature_name == "predict_examples"
    assert dict(spec.label_keys)["texture"] == "labels/texture"
    assert dict(spec.prediction_keys)["texture"] == "texture_probs"
    by_head = {s.output_names[0]: s.metrics[0] for s in config.metrics_specs if s.output_names}
    assert set(by_head) == {h.name for h in heads}
    sleeve = by_head["sleeve"].threshold
    assert sleeve.value_threshold.lower_bound.value == pytest.approx(0.3)
    assert sleeve.change_threshold.absolute.value == pytest.approx(-0.05, abs=1e-9)
    assert not by_head["texture"].HasField("threshold")
    with pytest.raises(ValueError, match="not among the heads"):
        components.eval_config(heads, thresholded_heads=["colour"])
    with pytest.raises(ValueError, match="accuracy_threshold"):
        components.eval_config(heads, accuracy_threshold=1.5)


def test_example_gen_input_config_reads_tfds_split_files():
    from pipelines import components

    splits = {s.name: s.pattern for s in components.example_gen_input_config().splits}
    assert splits == {"train": "*-train.tfrecord-*", "eval": "*-val.tfrecord-*"}
    assert glob.fnmatch.fnmatch(
        "deepfashion_attributes-val.tfrecord-00000-of-00001", splits["eval"]
    )
