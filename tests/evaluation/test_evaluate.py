"""End to end: evaluate (TTA, ensembles, weight search, reports), predict, FashionAI
submission, and feature stacking, on tiny models and the small demo release."""

from __future__ import annotations

import csv
import json
import os
import re

import numpy as np
import pytest
from conftest import encode
from PIL import Image

from fashion_keras import evaluate, predict, train_stack
from fashion_keras.data import pipeline, sources
from fashion_keras.evaluation import ensembles, model_loading, predictors
from fashion_keras.evaluation import evaluate as evaluation
from fashion_keras.evaluation.config import EvalConfig
from fashion_keras.export import export_saved_model
from fashion_keras.heads import get_heads
from fashion_keras.models import build_model

pytestmark = pytest.mark.slow  # end-to-end tier

HEADS = get_heads("deepfashion6")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A 32 px Keras file and a 48 px SavedModel export base (untrained tiny models)."""
    root = tmp_path_factory.mktemp("models")
    small = build_model("seresnet_tiny", HEADS, image_size=32)
    small_path = str(root / "small.keras")
    small.save(small_path)
    large = build_model("seresnet_tiny", HEADS, image_size=48)
    large_path = str(root / "large.keras")
    large.save(large_path)
    export_base = str(root / "export")
    export_saved_model(large, export_base)
    return {
        "small": small,
        "small_path": small_path,
        "large_path": large_path,
        "export": export_base,
    }


def _data_args(small_demo):
    return ["--data-dir", small_demo["manual_dir"], "--tfds-data-dir", small_demo["tfds_dir"]]


def _is_png(path):
    with Image.open(path) as im:
        im.verify()
        return im.format == "PNG"


def test_evaluate_matches_keras_evaluate(models, small_demo, tmp_path, capsys):
    """One model, no TTA: the masked accuracies equal Keras' own on the same val pipeline; the
    baselines come from the training split's counts; the demo data is not FashionAI's, so the
    ranking metric is the plain mean AP."""
    out = str(tmp_path / "eval")
    assert evaluate.main([models["small_path"], *_data_args(small_demo), "--output-dir", out]) == 0
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    model = models["small"]
    model.compile(
        loss="categorical_crossentropy", weighted_metrics={h.name: ["accuracy"] for h in HEADS}
    )
    ds = pipeline.make_dataset(
        sources.load_split(small_demo["builder"], "val"), HEADS, 32, 8, training=False
    )
    logs = model.evaluate(ds, verbose=0, return_dict=True)
    for h in HEADS:
        assert metrics["heads"][h.name]["accuracy"] == pytest.approx(
            logs[f"{h.name}_accuracy"], abs=1e-6
        )
        assert metrics["heads"][h.name]["num_labelled"] == 32
        assert np.sum(metrics["heads"][h.name]["confusion_matrix"]) == 32
        assert _is_png(os.path.join(out, "confusion", f"{h.name}.png"))
    assert metrics["views"] == 1 and metrics["weights"] == [1.0]
    assert metrics["dataset"] == "deepfashion_attributes"
    assert "official" not in metrics and metrics["ranking"]["name"] == "mean AP"
    assert metrics["ranking"]["map"] is not None
    train_counts = sources.label_counts([small_demo["builder"]], "train", HEADS)
    val_labels = evaluation.load_eval_data(sources.load_split(small_demo["builder"], "val"), HEADS)
    for h in HEADS:
        m = metrics["heads"][h.name]
        majority = int(np.argmax(train_counts[h.name]))
        assert m["baseline_from"] == "the training split"
        assert m["majority_class"] == h.classes[majority]
        assert m["majority_baseline"] == pytest.approx(
            np.mean(val_labels.labels[h.name] == majority)
        )
        assert m["beats_baseline"] == (m["accuracy"] > m["majority_baseline"])
        assert list(m["baseline_counts"].values()) == train_counts[h.name].tolist()
        assert [c["support"] for c in m["per_class"]] == np.sum(
            m["confusion_matrix"], axis=1
        ).tolist()
    below = [h.name for h in HEADS if not metrics["heads"][h.name]["beats_baseline"]]
    assert metrics["heads_not_beating_baseline"] == below and metrics["baseline_note"] is None
    assert _is_png(os.path.join(out, "top_losses.png"))
    assert len(metrics["top_losses"]) == 16
    losses = [r["loss"] for r in metrics["top_losses"]]
    assert losses == sorted(losses, reverse=True)
    report = open(os.path.join(out, "report.md")).read()
    assert "| texture |" in report and "**Mean AP over heads: " in report
    assert "FashionAI mAP" not in report and "## Per class" in report
    console = " ".join(capsys.readouterr().out.split())
    assert "head labelled accuracy baseline balanced AP" in console
    assert "recall/precision per class:" in console
    for name in below:  # an untrained model: the heads it does not beat are named
        assert f"WARNING {name}: accuracy" in console and f"**{name}**:" in report


def test_ensemble_of_different_sizes_with_tta_and_weight_search(models, small_demo, tmp_path):
    out = str(tmp_path / "ens")
    args = [models["small_path"], models["export"], *_data_args(small_demo)]
    args += ["--tta", "ten_crop", "--search-weights", "mean_accuracy", "--search-split", "train"]
    args += ["--max-examples", "24", "--output-dir", out, "--top-losses", "4"]
    assert evaluate.main(args) == 0
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert metrics["views"] == 10 and metrics["num_examples"] == 24
    assert sum(metrics["weights"]) == pytest.approx(1.0)
    search = json.load(open(os.path.join(out, "ensemble_weights.json")))
    assert search["weights"] == metrics["weights"] and search["split"] == "train"
    assert search["value"] >= search["equal_weights_value"]
    # the saved weights are accepted back by --weights
    out2 = str(tmp_path / "ens2")
    args2 = [models["small_path"], models["export"], *_data_args(small_demo), "--max-examples"]
    args2 += ["24", "--tta", "ten_crop", "--weights", os.path.join(out, "ensemble_weights.json")]
    assert evaluate.main([*args2, "--output-dir", out2]) == 0
    again = json.load(open(os.path.join(out2, "metrics.json")))
    assert again["mean_accuracy"] == pytest.approx(metrics["mean_accuracy"])
    assert again["weights"] == pytest.approx(metrics["weights"])


def test_evaluate_refuses_contradictory_weight_flags(models, small_demo):
    with pytest.raises(SystemExit, match="either --weights or --search-weights"):
        evaluate.main([models["small_path"], "--weights", "1", "--search-weights", "map"])


def _image_folder(root):
    rng = np.random.default_rng(3)
    os.makedirs(root / "sub")
    for name, fmt in [
        ("a.jpg", "JPEG"),
        ("b.png", "PNG"),
        ("sub/c.webp", "WEBP"),
        ("d.bmp", "BMP"),
    ]:
        (root / name).write_bytes(encode(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8), fmt))
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (root / "empty.png").write_bytes(b"")
    (root / "notes.txt").write_text("not an image: listed as skipped too")


def test_predict_json_and_csv_skip_and_report_bad_files(models, tmp_path, capsys):
    folder = tmp_path / "images"
    _image_folder(folder)
    out = tmp_path / "pred.json"
    args = [models["small_path"], str(folder), "--top-k", "2", "--output", str(out)]
    assert predict.main(args) == 0
    result = json.load(open(out))
    names = [os.path.basename(p["image"]) for p in result["predictions"]]
    assert names == ["a.jpg", "b.png", "d.bmp", "c.webp"]
    skipped = {os.path.basename(s["image"]): s["reason"] for s in result["skipped"]}
    assert set(skipped) == {"broken.jpg", "empty.png", "notes.txt"}
    assert skipped["empty.png"] == "empty file"
    assert "4 images predicted, 3 skipped" in capsys.readouterr().err
    predictor = predictors.KerasPredictor(models["small"])
    first = predictors.predict_examples(
        predictor, predict.file_examples([str(folder / "a.jpg")]), tta="none"
    )
    for h in HEADS:
        tops = result["predictions"][0]["heads"][h.name]
        assert len(tops) == 2 and tops[0]["probability"] >= tops[1]["probability"]
        assert tops[0]["class_name"] == h.classes[int(np.argmax(first[h.name][0]))]
        assert tops[0]["class_index"] == int(np.argmax(first[h.name][0]))
        assert tops[0]["probability"] == pytest.approx(float(np.max(first[h.name][0])), abs=1e-6)
    csv_out = tmp_path / "pred.csv"
    assert (
        predict.main(
            [models["export"], str(folder / "a.jpg"), "--format", "csv", "--output", str(csv_out)]
        )
        == 0
    )
    rows = list(csv.reader(open(csv_out)))
    assert rows[0] == ["image", "head", "rank", "class_index", "class_name", "probability"]
    assert len(rows) == 1 + len(HEADS) * 3


def test_fashionai_submission_format(tmp_path):
    heads = get_heads("fashionai8")
    model = build_model("seresnet_tiny", heads, image_size=32)
    model_path = str(tmp_path / "fai.keras")
    model.save(model_path)
    root = tmp_path / "rank"
    rng = np.random.default_rng(4)
    rows = [
        ("Images/skirt_length_labels/s1.jpg", "skirt_length_labels"),
        ("Images/collar_design_labels/c1.jpg", "collar_design_labels"),
        ("Images/skirt_length_labels/s0.jpg", "skirt_length_labels"),
    ]
    for rel, _ in rows:
        os.makedirs(root / os.path.dirname(rel), exist_ok=True)
        (root / rel).write_bytes(encode(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    os.makedirs(root / "Tests")
    question = root / "Tests" / "question.csv"
    question.write_text("".join(f"{rel},{task},?\n" for rel, task in rows))
    out = tmp_path / "submission.csv"
    args = [model_path, "--fashionai-question", str(question), "--output", str(out)]
    assert predict.main(args) == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 3
    predictor = predictors.KerasPredictor(model)
    for line, (rel, task) in zip(lines, rows, strict=True):
        path, got_task, values = line.split(",")
        assert (path, got_task) == (rel, task)
        probs = values.split(";")
        num_classes = next(h.num_classes for h in heads if h.name == task)
        assert len(probs) == num_classes
        assert all(re.fullmatch(r"\d\.\d{8}", p) for p in probs)
        want = predictors.predict_examples(predictor, predict.file_examples([str(root / rel)]))
        np.testing.assert_allclose([float(p) for p in probs], want[task][0], atol=1e-7)
    # bad rows are refused with file:line
    question.write_text(f"{rows[0][0]},{rows[0][1]},?\nImages/x.jpg,hat_labels,?\n")
    with pytest.raises(SystemExit, match=r"question.csv:2: task = 'hat_labels'"):
        predict.main(args)
    question.write_text(f"{rows[0][0]},{rows[0][1]},?\nImages/missing.jpg,{rows[0][1]},?\n")
    with pytest.raises(SystemExit, match=r"question.csv:2: .*missing.jpg"):
        predict.main(args)


def test_train_stack_then_evaluate_and_predict_the_stack(models, small_demo, tmp_path):
    out = str(tmp_path / "stack")
    args = [models["small_path"], models["large_path"], *_data_args(small_demo)]
    args += ["--epochs", "3", "--hidden-units", "16", "--output-dir", out]
    assert train_stack.main(args) == 0
    spec = json.load(open(os.path.join(out, "stack.json")))
    assert spec["image_sizes"] == [32, 48] and len(spec["members"]) == 2
    assert spec["feature_dims"] == [512, 512]  # seresnet_tiny: 128 x bottleneck expansion 4
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert set(metrics["val_accuracy"]) == {h.name for h in HEADS}
    stack = model_loading.load_predictor(out)
    assert isinstance(stack, predictors.StackPredictor) and stack.image_sizes == (32, 48)
    eval_out = str(tmp_path / "stack_eval")
    assert evaluate.main([out, *_data_args(small_demo), "--output-dir", eval_out]) == 0
    got = json.load(open(os.path.join(eval_out, "metrics.json")))
    for h in HEADS:  # same model, same val split, same eval view
        assert got["heads"][h.name]["accuracy"] == pytest.approx(
            metrics["val_accuracy"][h.name], abs=1e-6
        )
    with pytest.raises(SystemExit, match="feature stacking needs Keras models"):
        train_stack.main([models["export"], "--output-dir", out])


def test_fashionai_official_metric_uses_the_m_labels(tmp_path):
    """On the FashionAI dummy release, the m masks reach the official metric: evaluate's mAP
    equals the metric computed straight from label.csv's y/m/n strings."""
    from fashion_keras.evaluation import scoring
    from fashion_keras_datasets.fashionai_attributes import fashionai_attributes_dataset_builder

    dummy = os.path.join(
        os.path.dirname(fashionai_attributes_dataset_builder.__file__), "dummy_data"
    )
    heads = get_heads("fashionai8")
    model_path = str(tmp_path / "fai.keras")
    build_model("seresnet_tiny", heads, image_size=32).save(model_path)
    builder = sources.get_builder("fashionai_attributes", dummy, str(tmp_path / "tfds"))
    data = evaluation.load_eval_data(
        sources.load_split(builder, "train"), heads, dataset=builder.name
    )
    strings = {}
    for release in ("base", "web"):
        with open(os.path.join(dummy, release, "Annotations", "label.csv")) as f:
            for path, task, label in csv.reader(f):
                strings[path] = (task, label)
    ensemble = ensembles.load_ensemble([model_path])
    config = EvalConfig(split="train", output_dir=str(tmp_path / "eval"))
    metrics = evaluation.evaluate(ensemble, data, config)
    probs = ensemble.predict_examples(data.examples)
    per_task: dict[str, tuple[list[int], list[str]]] = {}
    for row, name in enumerate(data.filenames):
        task, label = next(v for k, v in strings.items() if name.endswith(k))
        assert data.labels[task][row] == label.index("y")
        np.testing.assert_array_equal(data.m_masks[task][row], [c == "m" for c in label])
        per_task.setdefault(task, ([], []))[0].append(row)
        per_task[task][1].append(label)
    assert any(data.m_masks[t].any() for t in per_task)  # the fixture has m labels
    want = scoring.fashionai_score(
        {t: probs[t][rows] for t, (rows, _) in per_task.items()},
        {t: labels for t, (_, labels) in per_task.items()},
    )
    assert metrics["official"]["name"] == "Official FashionAI mAP / BasicPrecision"
    assert metrics["official"]["map"] == pytest.approx(want.map)
    assert metrics["official"]["basic_precision"] == pytest.approx(want.basic_precision)
    for t, score in want.per_task.items():
        assert metrics["heads"][t]["ap"] == pytest.approx(score.ap)


def test_evaluate_names_heads_the_data_lacks(tmp_path, small_demo):
    path = str(tmp_path / "fai.keras")
    build_model("seresnet_tiny", get_heads("fashionai8"), image_size=32).save(path)
    with pytest.raises(SystemExit, match="labels none of the heads.*coat_length_labels"):
        evaluate.main([path, *_data_args(small_demo), "--output-dir", str(tmp_path / "e")])


def test_evaluate_crops_with_the_margin_the_run_was_trained_with(small_demo, tmp_path):
    """A run trained with --bbox-margin 0.3 is evaluated at 0.3 (the Keras model and its export
    alike) unless --bbox-margin overrides it; the report says which margin and from where."""
    from fashion_keras.training.config import TrainConfig
    from fashion_keras.training.trainer import train

    run = tmp_path / "run"
    cfg = TrainConfig(
        heads="deepfashion6",
        data_dir=small_demo["manual_dir"],
        tfds_data_dir=small_demo["tfds_dir"],
        backbone="seresnet_tiny",
        image_size=32,
        batch_size=16,
        epochs=1,
        steps_per_epoch=2,
        bbox_margin=0.3,
        output_dir=str(run),
        verbose=0,
    )
    train(cfg)
    got = {}
    for name, model, extra in [
        ("own", run, []),
        ("export", run / "export", []),
        ("flag", run, ["--bbox-margin", "0.3"]),
        ("default", run, ["--bbox-margin", "0.1"]),
    ]:
        out = str(tmp_path / name)
        args = [str(model), *_data_args(small_demo), "--output-dir", out, *extra]
        assert evaluate.main(args) == 0
        got[name] = json.load(open(os.path.join(out, "metrics.json")))
    assert got["own"]["preprocessing"] == [
        [{"image_size": 32, "bbox_margin": 0.3, "source": "model"}]
    ]
    assert got["export"]["preprocessing"][0][0]["source"] == "export metadata"
    assert got["flag"]["preprocessing"][0][0] == {
        "image_size": 32,
        "bbox_margin": 0.3,
        "source": "--bbox-margin",
    }
    assert "box margin 0.3 (from model)" in open(tmp_path / "own" / "report.md").read()

    def losses(m):
        return [round(r["loss"], 5) for r in m["top_losses"]]

    assert losses(got["own"]) == losses(got["flag"]) == losses(got["export"])
    assert losses(got["own"]) != losses(got["default"])
