"""Training on the new builders: masked FashionAI heads, joint sources, custom CSV, categories.

The fast tests use a tiny Keras model with the project's losses and metrics on the FashionAI
dummy release; the ``slow`` ones run ``python -m fashion_keras.train`` and ``tfds build``.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from fashion_keras import evaluate as evaluate_cli
from fashion_keras import train as cli
from fashion_keras import train_stack as stack_cli
from fashion_keras.data import inspection, pipeline, preprocess, sources
from fashion_keras.evaluation import model_loading, predictors, scoring
from fashion_keras.evaluation.evaluate import load_eval_data
from fashion_keras.heads import get_heads
from fashion_keras.training import losses as losses_lib
from fashion_keras.training import metrics as metrics_lib

DATASETS = pathlib.Path(__file__).resolve().parents[2] / "datasets"
FAI_DUMMY = DATASETS / "fashionai_attributes" / "dummy_data"
HEADS = get_heads("fashionai8")
TASKS = [h.name for h in HEADS]


@pytest.fixture(scope="module")
def fashionai(tmp_path_factory):
    tfds_dir = tmp_path_factory.mktemp("tfds")
    return sources.get_builder("fashionai_attributes/m_half", str(FAI_DUMMY), str(tfds_dir))


def tiny_model(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inp = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inp))
    x = keras.layers.Dense(8, "relu")(x)
    outs = {h.name: keras.layers.Dense(h.num_classes, "softmax", name=h.name)(x) for h in HEADS}
    model = keras.Model(inp, outs)
    model.compile(
        optimizer=keras.optimizers.SGD(0.5),
        loss=losses_lib.focal_losses(HEADS),
        loss_weights=losses_lib.loss_weights(HEADS),
        weighted_metrics=metrics_lib.head_metrics(HEADS),
    )
    return model


def one_batch(examples: tf.data.Dataset):
    ds = pipeline.make_dataset(examples, HEADS, 32, 64, training=False)
    (batch,) = list(ds)
    return batch


def test_rows_of_one_task_give_the_seven_other_heads_zero_loss_and_gradient(fashionai):
    collar = TASKS.index("collar_design_labels")
    only_collar = sources.load_split(fashionai, "train").filter(lambda ex: ex["task"] == collar)
    x, y, w = one_batch(only_collar)
    assert w["collar_design_labels"].numpy().sum() == 1  # one collar row in train
    model = tiny_model()
    logs = model.evaluate(x, y, sample_weight=w, return_dict=True, verbose=0)
    for task in TASKS:
        if task == "collar_design_labels":
            assert logs[f"{task}_loss"] > 0
        else:
            assert logs[f"{task}_loss"] == 0.0, task
    np.testing.assert_allclose(logs["loss"], logs["collar_design_labels_loss"], rtol=1e-6)
    before = {t: [v.copy() for v in model.get_layer(t).get_weights()] for t in TASKS}
    model.train_on_batch(x, y, sample_weight=w)
    for task in TASKS:
        changed = any(
            not np.array_equal(a, b)
            for a, b in zip(before[task], model.get_layer(task).get_weights(), strict=True)
        )
        assert changed == (task == "collar_design_labels"), task


def test_per_task_loss_and_accuracy_count_only_rows_of_that_task(fashionai):
    x, y, w = one_batch(sources.load_split(fashionai, "train"))
    model = tiny_model(1)
    logs = model.evaluate(x, y, sample_weight=w, return_dict=True, verbose=0)
    pred = model.predict(x, verbose=0)
    focal = keras.losses.CategoricalFocalCrossentropy(alpha=0.25, gamma=2.0, reduction=None)
    m_rows = 0
    for task in TASKS:
        rows = w[task].numpy() == 1
        assert rows.any(), task  # every task has training rows in the fixture
        target = y[task].numpy()[rows]
        m_rows += int((target.max(axis=1) < 1).sum())
        per_row = keras.ops.convert_to_numpy(focal(target, pred[task][rows]))
        np.testing.assert_allclose(logs[f"{task}_loss"], per_row.mean(), rtol=1e-5)
        hits = pred[task][rows].argmax(axis=1) == target.argmax(axis=1)
        assert logs[f"{task}_accuracy"] == pytest.approx(hits.mean()), task
    assert m_rows >= 3  # the soft m_half targets reached the loss


def test_inspect_prints_the_report_and_draws_a_grid(tmp_path, capsys):
    out = tmp_path / "grid.png"
    argv = [
        "inspect", "--dataset", "custom_csv", "--data-dir", str(DATASETS / "custom_csv" / "dummy_data"),
        "--tfds-data-dir", str(tmp_path / "tfds"), "--per-head", "3", "--output", str(out),
    ]  # fmt: skip
    assert inspection.main(argv) == 0
    printed = capsys.readouterr().out
    assert "custom_csv/csv_" in printed and "14 rows in = 12 written + 2 reported" in printed
    assert "colour: black 1, white 2, red 2, blue 2" in printed
    assert "labels.csv:7: image file not found" in printed
    from PIL import Image

    grid = Image.open(out)
    assert grid.size == (
        inspection.LABEL_WIDTH + 3 * inspection.CELL,
        2 * (inspection.CELL + inspection.CAPTION),
    )
    # the garment box is drawn in green on the first example of the first row
    cell = np.asarray(grid.convert("RGB"))[: inspection.CELL, inspection.LABEL_WIDTH :][
        :, : inspection.CELL
    ]
    assert (np.abs(cell.astype(int) - inspection.BOX_COLOUR).sum(axis=-1) < 30).sum() > 50


@pytest.mark.parametrize("margin", [0.0, 0.1, 0.3])
def test_drawn_crop_is_the_crop_the_model_sees(margin):
    rng = np.random.default_rng(int(margin * 10))
    for _ in range(20):
        w, h = (int(v) for v in rng.integers(10, 300, 2))
        y0, x0 = rng.uniform(0, 0.6, 2)
        box = [y0, x0, y0 + rng.uniform(0.05, 0.4), x0 + rng.uniform(0.05, 0.4)]
        y, x, hh, ww = preprocess.crop_window(tf.constant([h, w, 3]), tf.constant(box), margin)
        assert inspection.crop_box(box, w, h, margin) == (
            int(x),
            int(y),
            int(x + ww),
            int(y + hh),
        )


# --- end to end (slow) ---------------------------------------------------------------------------


def _tiny(tmp_path, *extra: str) -> list[str]:
    return [
        "--tfds-data-dir", str(tmp_path / "tfds"), "--backbone", "seresnet_tiny",
        "--image-size", "32", "--batch-size", "4", "--epochs", "1", "--steps-per-epoch", "2",
        "--output-dir", str(tmp_path / "run"), "--verbose", "0", *extra,
    ]  # fmt: skip


@pytest.mark.slow
def test_cli_joint_training_fashionai8_and_deepfashion6(tmp_path, capsys):
    argv = _tiny(
        tmp_path,
        "--heads", "fashionai8,deepfashion6",
        "--sources",
        f"fashionai_attributes/m_half={FAI_DUMMY},"
        f"deepfashion_attributes={DATASETS / 'deepfashion_attributes' / 'dummy_data'}",
        "--source-weights", "1,1", "--skip-bad-rows",
    )  # fmt: skip
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    with open(tmp_path / "run" / "metrics.json") as f:
        val = json.load(f)["val"]
    heads = get_heads("fashionai8,deepfashion6")
    validated = printed.split("not validated (no labelled validation rows): ")
    unvalidated = validated[1].splitlines()[0].split(", ") if len(validated) > 1 else []
    for h in heads:  # every head is in the table, or named as having no validation rows
        assert np.isfinite(val[f"{h.name}_loss"]) and h.name in validated[0] + " ".join(unvalidated)
    assert set(unvalidated) == {"coat_length_labels", "pant_length_labels", "sleeve_length_labels"}
    # both builders were prepared (the lenient configs) into --tfds-data-dir
    prepared = set(os.listdir(tmp_path / "tfds"))
    assert {"deepfashion_attributes", "fashionai_attributes"} <= prepared
    assert (tmp_path / "tfds" / "fashionai_attributes" / "m_half_skip_bad_rows").is_dir()
    assert not (tmp_path / "tfds" / "fashionai_attributes" / "m_half").exists()
    fn = tf.saved_model.load(str(tmp_path / "run" / "export" / "1")).signatures["serving_default"]
    out = fn(
        image_bytes=tf.constant(
            [open(next(FAI_DUMMY.glob("base/Images/coat*/*.jpg")), "rb").read()]
        )
    )
    assert out["coat_length_labels_probs"].shape == (1, 8) and out["fit_probs"].shape == (1, 3)
    # evaluate reads both sources the run trained on, without data flags
    assert evaluate_cli.main([str(tmp_path / "run"), "--output-dir", str(tmp_path / "ev")]) == 0
    with open(tmp_path / "ev" / "metrics.json") as f:
        metrics = json.load(f)
    assert metrics["dataset"] == "fashionai_attributes+deepfashion_attributes"
    assert "official" not in metrics  # the joint score is not FashionAI's official one
    rows = sum(
        sum(1 for _ in sources.load_split(b, "val"))
        for b in (
            sources.get_builder("fashionai_attributes/m_half", str(FAI_DUMMY),
                                str(tmp_path / "tfds"), skip_bad_rows=True),
            sources.get_builder("deepfashion_attributes",
                                str(DATASETS / "deepfashion_attributes" / "dummy_data"),
                                str(tmp_path / "tfds"), skip_bad_rows=True),
        )
    )  # fmt: skip
    assert metrics["num_examples"] == rows


@pytest.mark.slow
def test_cli_custom_csv_with_the_user_head_spec(tmp_path):
    folder = DATASETS / "custom_csv" / "dummy_data"
    argv = _tiny(tmp_path, "--dataset", "custom_csv", "--data-dir", str(folder),
                 "--heads", str(folder / "heads.yaml"))  # fmt: skip
    assert cli.main(argv) == 0
    with open(tmp_path / "run" / "heads.json") as f:
        assert [h["name"] for h in json.load(f)["heads"]] == ["sleeve", "colour"]
    with open(tmp_path / "run" / "metrics.json") as f:
        val = json.load(f)["val"]
    assert {"sleeve_accuracy", "colour_accuracy"} <= set(val)
    # the run folder and its export remember their data: no data flags needed afterwards
    for model in ("run", "run/export/1"):
        out = tmp_path / "ev" / model.replace("/", "_")
        assert evaluate_cli.main([str(tmp_path / model), "--output-dir", str(out)]) == 0
        with open(out / "metrics.json") as f:
            metrics = json.load(f)
        assert metrics["dataset"] == "custom_csv"
        assert set(metrics["heads"]) == {"sleeve", "colour"}
    stack = ["--hidden-units", "4", "--epochs", "1", "--output-dir", str(tmp_path / "stack")]
    assert stack_cli.main([str(tmp_path / "run"), *stack]) == 0
    with open(tmp_path / "stack" / "metrics.json") as f:
        assert {"sleeve", "colour"} <= set(json.load(f)["val_accuracy"])


@pytest.mark.slow
def test_cli_deepfashion_category_reports_top_k(tmp_path):
    argv = _tiny(tmp_path, "--heads", "deepfashion_category", "--dataset", "deepfashion_category",
                 "--data-dir", str(DATASETS / "deepfashion_category" / "dummy_data"))  # fmt: skip
    assert cli.main(argv) == 0
    with open(tmp_path / "run" / "metrics.json") as f:
        val = json.load(f)["val"]
    # Keras' top-k metrics in training agree with the numpy scoring of evaluation
    heads = get_heads("deepfashion_category")
    builder = sources.get_builder(
        "deepfashion_category",
        str(DATASETS / "deepfashion_category" / "dummy_data"),
        str(tmp_path / "tfds"),
    )
    data = load_eval_data(sources.load_split(builder, "val"), heads)
    probs = predictors.predict_examples(
        model_loading.load_predictor(str(tmp_path / "run")), data.examples
    )
    labels = data.labels["category"]
    assert val["category_accuracy"] == pytest.approx(
        scoring.masked_accuracy(probs["category"], labels), abs=1e-6
    )
    for k in (3, 5):
        want = scoring.topk_accuracy(probs["category"], labels, k)
        assert val[f"category_top{k}"] == pytest.approx(want, abs=1e-6)
    assert val["category_accuracy"] <= val["category_top3"] <= val["category_top5"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, config, splits",
    [
        ("fashionai_attributes", "m_half_skip_bad_rows", {"train": 11, "val": 5, "test": 3}),
        ("deepfashion_category", "attributes", {"train": 9, "val": 3, "test": 2}),
        ("custom_csv", "example", {"train": 8, "val": 2, "test": 2}),
    ],
)
def test_stock_tfds_build_cli(tmp_path, name, config, splits):
    tfds_cli = pathlib.Path(sys.executable).parent / "tfds"
    cmd = [
        str(tfds_cli), "build", str(DATASETS / name), "--manual_dir",
        str(DATASETS / name / "dummy_data"), "--data_dir", str(tmp_path), "--config", config,
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    (version,) = (tmp_path / name / config).iterdir()  # the builder's VERSION
    builder = tfds.builder_from_directory(str(version))
    assert {s: builder.info.splits[s].num_examples for s in builder.info.splits} == splits
    report = builder.info.metadata["report"]
    assert report["rows_in"] == report["rows_written"] + report["rows_reported"]
