"""End-to-end tier: train + evaluate + export on tiny data (marked slow)."""

import csv
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import encode, tiny_train_config

from fashion_keras import train as cli
from fashion_keras.data import pipeline, sources
from fashion_keras.heads import get_heads
from fashion_keras.training import trainer as T
from fashion_keras.training.config import FIELD_SECTION, TrainConfig

pytestmark = pytest.mark.slow


def tiny_config(small_demo, tmp_path, **kw):
    return tiny_train_config(small_demo, tmp_path / "run", **kw)


def test_train_evaluate_export_deepfashion6(small_demo, tmp_path):
    result = T.train(tiny_config(small_demo, tmp_path))
    run = tmp_path / "run"
    for name in ("config.json", "heads.json", "history.csv", "model.keras", "metrics.json"):
        assert (run / name).is_file(), name
    assert (run / "training_curves.png").is_file()  # reports.TrainingCurves
    assert (run / "checkpoints" / "best.keras").is_file()
    heads = get_heads("deepfashion6")
    # the reported validation accuracies are the final model's on the val split
    val = pipeline.make_dataset(
        sources.load_split(small_demo["builder"], "val"), heads, 32, 16, training=False
    )
    hits = {h.name: [] for h in heads}
    for images, targets, weights in val:
        probs = result.model(images, training=False)
        for h in heads:
            right = np.argmax(probs[h.name], 1) == np.argmax(targets[h.name], 1)
            hits[h.name] += list(right[np.asarray(weights[h.name]) > 0])
    for h in heads:
        assert result.val_metrics[f"{h.name}_accuracy"] == pytest.approx(
            np.mean(hits[h.name]), abs=1e-6
        )
    assert result.val_metrics["mean_accuracy"] == pytest.approx(
        np.mean([np.mean(v) for v in hits.values()]), abs=1e-6
    )
    assert "val_mean_accuracy" in result.history
    assert len(result.history["loss"]) == 2
    # the saved config repeats the run
    assert TrainConfig.load(str(run / "config.json")) == result.config
    # the export answers JPEG bytes like the Keras model
    fn = tf.saved_model.load(result.export_path).signatures["serving_default"]
    out = fn(image_bytes=tf.constant([encode(np.full((80, 50, 3), 128))]))
    assert out["sleeve_probs"].shape == (1, 3)
    reloaded = keras.saving.load_model(str(run / "model.keras"))
    assert set(reloaded.output_names) == {h.name for h in heads}


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt("simulated interruption")


def test_rerunning_the_same_command_resumes(small_demo, tmp_path):
    cfg = tiny_config(small_demo, tmp_path, epochs=3)
    with pytest.raises(KeyboardInterrupt):
        T.train(cfg, callbacks=[_Interrupt()], export=False)
    assert os.path.isdir(tmp_path / "run" / "backup")
    result = T.train(cfg, export=False)
    # only the third epoch ran the second time
    assert len(result.history["loss"]) == 1
    with open(tmp_path / "run" / "history.csv") as f:
        epochs = [int(r["epoch"]) for r in csv.DictReader(f)]
    assert epochs == [0, 1, 2]


def fashionai_examples(n, seed, tasks=8):
    """FashionAI-like rows: each labels exactly one of the first ``tasks`` of the 8 tasks,
    -1 elsewhere."""
    heads = get_heads("fashionai8")
    rng = np.random.default_rng(seed)
    labels = {h.name: np.full(n, -1, "int64") for h in heads}
    for i in range(n):
        h = heads[i % tasks]
        labels[h.name][i] = rng.integers(0, h.num_classes)
    images = [encode(rng.integers(0, 255, (40, 40, 3))) for _ in range(n)]
    return tf.data.Dataset.from_tensor_slices(
        {
            "image": images,
            "bbox": np.tile([[0, 0, 1, 1]], (n, 1)).astype("float32"),
            "labels": labels,
        }
    )


class _HeadWeights(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.before = {h.name: self._get(h.name) for h in get_heads("fashionai8")}

    def _get(self, name):
        return [np.array(v) for v in self.model.get_layer(name).weights]


def test_fashionai8_heads_train_with_seven_of_eight_masked(tmp_path):
    """Every row labels one task of eight; here only the first two tasks are ever labelled, so
    through train's own compile the other six heads get a loss of exactly 0 and no gradient
    (their weights do not move: no weight decay), while the labelled heads learn."""
    cfg = TrainConfig(
        heads="fashionai8",
        backbone="seresnet_tiny",
        image_size=32,
        batch_size=16,
        epochs=1,
        weight_decay=0.0,
        output_dir=str(tmp_path / "run"),
        verbose=0,
    )
    weights = _HeadWeights()
    result = T.train(
        cfg,
        train_examples=fashionai_examples(64, 0, tasks=2),
        val_examples=fashionai_examples(32, 1),
        callbacks=[weights],
    )
    heads = get_heads("fashionai8")
    assert set(result.model.output_names) == {h.name for h in heads}
    for i, h in enumerate(heads):
        loss = result.history[f"{h.name}_loss"][0]
        after = weights._get(h.name)
        moved = any(
            not np.array_equal(a, b) for a, b in zip(weights.before[h.name], after, strict=True)
        )
        if i < 2:
            assert loss > 0 and moved, h.name
        else:
            assert loss == 0.0 and not moved, h.name
        assert result.val_metrics[f"{h.name}_loss"] > 0  # every task is labelled in val
    out = tf.saved_model.load(result.export_path).signatures["serving_default"](
        image_bytes=tf.constant([encode(np.zeros((30, 30, 3)))])
    )
    assert out["collar_design_labels_probs"].shape == (1, 5)


def test_cli_trains_custom_yaml_heads(small_demo, tmp_path, capsys):
    spec = tmp_path / "shop.yaml"
    spec.write_text(
        "heads:\n"
        "  - name: sleeve\n"
        "    classes: [long_sleeve, short_sleeve, sleeveless]\n"
        "    loss_weight: 2.0\n"
        "  - name: fit\n"
        "    classes: [tight, loose, conventional]\n"
    )
    argv = [
        "--heads", str(spec), "--data-dir", small_demo["manual_dir"],
        "--tfds-data-dir", small_demo["tfds_dir"], "--backbone", "seresnet_tiny",
        "--image-size", "32", "--batch-size", "16", "--epochs", "1",
        "--output-dir", str(tmp_path / "run"), "--verbose", "0",
    ]  # fmt: skip
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "sleeve" in printed and "mean over heads" in printed
    assert "texture" not in printed
    assert sorted(os.listdir(tmp_path / "run" / "export")) == ["1"]


def test_cli_rejects_heads_the_data_cannot_feed(small_demo, tmp_path):
    spec = tmp_path / "other.yaml"
    spec.write_text("heads:\n  - name: sleeve\n    classes: [long, short, none]\n")
    cfg = tiny_config(small_demo, tmp_path, heads=str(spec))
    with pytest.raises(ValueError, match="head 'sleeve': classes"):
        T.train(cfg)


def test_cli_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for name in FIELD_SECTION:
        assert "--" + name.replace("_", "-") in text


def test_cli_reports_bad_values(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--heads", "nope"])
    assert e.value.code == 2
    assert "unknown heads 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["--dropout", "1.5"])
    assert "'dropout' must be in [0, 1), got 1.5" in capsys.readouterr().err


def test_mixed_precision_under_mirrored_strategy(small_demo, tmp_path):
    cfg = tiny_config(small_demo, tmp_path, epochs=1, mixed_precision=True, strategy="mirrored")
    result = T.train(cfg)
    # on CPU: mixed_bfloat16 compute, float32 variables and float32 softmax heads
    assert result.model.dtype_policy.name == "mixed_bfloat16"
    assert all(v.dtype == "float32" for v in result.model.weights)
    assert result.model.get_layer("sleeve").dtype_policy.name == "float32"
    # the caller's global policy is restored
    assert keras.mixed_precision.global_policy().name == "float32"
    out = tf.saved_model.load(result.export_path).signatures["serving_default"](
        image_bytes=tf.constant([encode(np.full((40, 40, 3), 90))])
    )
    assert out["fit_probs"].dtype == tf.float32
    np.testing.assert_allclose(out["fit_probs"].numpy().sum(), 1.0, atol=1e-3)
