"""Evaluation and prediction of models with region crops (issue 18): the Keras joint model and
its two-stage export give the same probabilities (flip TTA too), ``metrics.json`` counts the
garment-box fallbacks, ``--region-file`` gives the boxes, ``--keypoint-model`` finds them for a
model without keypoint heads, and ``predict`` answers for a photo file with the export."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest
import tensorflow as tf
from conftest import encode

from fashion_keras import evaluate, predict
from fashion_keras.data.preprocess import eval_view
from fashion_keras.data.region_files import write_region_file
from fashion_keras.evaluation import model_loading
from fashion_keras.evaluation.eval_data import load_splits
from fashion_keras.evaluation.predictors import KerasPredictor, predict_examples
from fashion_keras.evaluation.region_inputs import use_region_sources
from fashion_keras.evaluation.saved_model_predictor import SavedModelPredictor
from fashion_keras.export import export_saved_model
from fashion_keras.heads import get_heads
from fashion_keras.models import build_model

SIZE = 32
POINTS = get_heads("fashionai_keypoints")[0]
ATTRIBUTES = get_heads("deepfashion6")
N = 12  # evaluated examples (--max-examples)


def find_the_collar(model, seed: int = 5):
    """Large keypoint kernels (the untrained heatmaps then peak in different places per photo)
    and three collar keypoints visible in every photo (a zero visibility kernel, biases +-4):
    the keypoint stage finds the collar box everywhere."""
    layer = model.get_layer(POINTS.name)
    rng = np.random.default_rng(seed)
    for w, scale in [(d.kernel, 3.0) for d in layer.deconvs] + [(layer.final.kernel, 60.0)]:
        fan_in = int(np.prod(w.shape[:-1]))
        w.assign(rng.normal(0.0, scale / np.sqrt(fan_in), w.shape).astype("float32"))
    bias = np.full(POINTS.num_keypoints, -4.0, np.float32)
    bias[[POINTS.index(k) for k in ("neckline_left", "center_front", "shoulder_left")]] = 4.0
    layer.visibility.kernel.assign(np.zeros(layer.visibility.kernel.shape, np.float32))
    layer.visibility.bias.assign(bias)
    return model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The joint model (.keras and its export), a region model without keypoint heads and a
    keypoint model (.keras each)."""
    root = tmp_path_factory.mktemp("region_models")
    joint = find_the_collar(
        build_model(
            "seresnet_tiny",
            "deepfashion6,fashionai_keypoints",
            image_size=SIZE,
            regions=("collar",),
            keypoint_filters=16,
        )
    )
    joint.save(str(root / "joint.keras"))
    export_saved_model(joint, str(root / "export"))
    plain = build_model("seresnet_tiny", "deepfashion6", image_size=SIZE, regions=("collar",))
    plain.save(str(root / "plain.keras"))
    points = find_the_collar(
        build_model("seresnet_tiny", "fashionai_keypoints", image_size=SIZE, keypoint_filters=16),
        seed=7,
    )
    points.save(str(root / "points.keras"))
    return {
        "joint_model": joint,
        "plain_model": plain,
        "points_model": points,
        **{k: str(root / f"{k}.keras") for k in ("joint", "plain", "points")},
        "export": str(root / "export"),
    }


def _data_args(small_demo):
    return [
        "--data-dir",
        small_demo["manual_dir"],
        "--tfds-data-dir",
        small_demo["tfds_dir"],
        "--max-examples",
        str(N),
    ]


def _examples(small_demo, heads=ATTRIBUTES):
    """The evaluated examples, as ``evaluate`` reads them."""
    return load_splits([small_demo["builder"]], "val", heads, N).examples


def _evaluate(argv, out):
    assert evaluate.main([*argv, "--output-dir", out]) == 0
    return json.load(open(os.path.join(out, "metrics.json")))


def test_keras_model_and_export_agree(models, small_demo, tmp_path):
    keras_p = model_loading.load_predictor(models["joint"])
    export_p = model_loading.load_predictor(models["export"])
    assert isinstance(export_p, SavedModelPredictor)
    assert keras_p.regions == export_p.regions == ("collar",)
    assert [i.region for i in keras_p.inputs] == [i.region for i in export_p.inputs]
    # the keypoint stages give the same boxes
    batch = next(iter(_examples(small_demo).batch(N)))
    keras_boxes = keras_p.region_boxes_of()(batch["image"], batch["bbox"])
    export_boxes = export_p.region_boxes_of()(batch["image"], batch["bbox"])
    assert np.asarray(keras_boxes["collar"][1]).all(), "found in every photo"
    np.testing.assert_array_equal(keras_boxes["collar"][1], export_boxes["collar"][1])
    np.testing.assert_allclose(keras_boxes["collar"][0], export_boxes["collar"][0], atol=1e-4)
    for tta in ("none", "flip"):
        want = predict_examples(keras_p, _examples(small_demo), tta=tta)
        got = predict_examples(export_p, _examples(small_demo), tta=tta)
        assert set(got) == set(want) == {h.name for h in ATTRIBUTES}
        for head in want:
            np.testing.assert_allclose(got[head], want[head], atol=1e-4, err_msg=f"{tta} {head}")
        for p in (keras_p, export_p):
            assert p.region_fallbacks.examples == N
            assert dict(p.region_fallbacks.fallbacks) == {"collar": 0}

    runs = {}
    for name in ("joint", "export"):
        argv = [models[name], *_data_args(small_demo), "--tta", "flip"]
        runs[name] = _evaluate(argv, str(tmp_path / name))
        label = models[name] if name == "joint" else os.path.join(models[name], "1")
        assert runs[name]["region_boxes"] == {
            label: {"examples": N, "fell_back_to_garment_box": {"collar": 0}}
        }
    for head in ATTRIBUTES:
        a, b = (runs[n]["heads"][head.name] for n in ("joint", "export"))
        assert a["num_labelled"] == b["num_labelled"]


def _photos(small_demo):
    """``[(filename, encoded image, garment box, (width, height))]`` of the examples."""
    data = load_splits([small_demo["builder"]], "val", ATTRIBUTES, N)
    out = []
    for name, ex in zip(data.filenames, data.examples.as_numpy_iterator(), strict=True):
        height, width = tf.io.decode_image(ex["image"]).shape[:2]
        out.append((name, ex["image"], ex["bbox"], (width, height)))
    return out


def test_a_region_file_gives_the_boxes(models, small_demo, tmp_path):
    examples = _examples(small_demo)
    photos = _photos(small_demo)
    # the top-left quarter of every other photo; the rest have no row (garment box)
    rows = [
        (name, "collar", 0, 0, size[0] / 2, size[1] / 2)
        for i, (name, _, _, size) in enumerate(photos)
        if i % 2 == 0
    ]
    path = write_region_file(str(tmp_path / "regions.csv"), rows)
    missing = len(photos) - len(rows)
    keras_p = model_loading.load_predictor(models["joint"])
    joined = use_region_sources([keras_p], examples, region_file=path)
    got = predict_examples(keras_p, joined)
    assert dict(keras_p.region_fallbacks.fallbacks) == {"collar": missing}
    # by hand: the neckline reads the view of the file's box (or of the garment box)
    model = models["joint_model"]
    garment, crops = [], []
    for i, (_, image, bbox, _) in enumerate(photos):
        box = bbox if i % 2 else np.array([0, 0, 0.5, 0.5], np.float32)
        garment.append(eval_view(tf.constant(image), SIZE, bbox, 0.1)[0])
        crops.append(eval_view(tf.constant(image), SIZE, box, 0.0)[0])
    want = model({"image": tf.stack(garment), "collar_crop": tf.stack(crops)}, training=False)
    for head in ATTRIBUTES:
        np.testing.assert_allclose(got[head.name], want[head.name], atol=1e-4)
    # the keypoint stage's boxes give other neckline probabilities, the other heads the same
    own = predict_examples(model_loading.load_predictor(models["joint"]), examples)
    assert np.abs(own["neckline"] - got["neckline"]).max() > 1e-4
    np.testing.assert_allclose(own["sleeve"], got["sleeve"], atol=1e-5)
    # the export reads the file's boxes too
    export_p = model_loading.load_predictor(models["export"])
    from_export = predict_examples(
        export_p, use_region_sources([export_p], examples, region_file=path)
    )
    np.testing.assert_allclose(from_export["neckline"], got["neckline"], atol=1e-4)

    metrics = _evaluate(
        [models["joint"], *_data_args(small_demo), "--region-file", path], str(tmp_path / "e")
    )
    assert metrics["region_boxes"][models["joint"]] == {
        "examples": N,
        "fell_back_to_garment_box": {"collar": missing},
    }


def test_a_keypoint_model_for_a_model_without_keypoint_heads(models, small_demo, tmp_path, caplog):
    examples = _examples(small_demo)
    alone = model_loading.load_predictor(models["plain"])
    assert alone.region_boxes_of() is None
    with caplog.at_level(logging.WARNING, "fashion_keras"):
        garment_only = predict_examples(alone, examples, tta="flip")
    assert "nothing gives their boxes" in caplog.text and "--keypoint-model" in caplog.text
    assert dict(alone.region_fallbacks.fallbacks) == {"collar": N}

    helped = KerasPredictor(
        models["plain_model"], name=models["plain"], keypoint_model=models["points_model"]
    )
    got = predict_examples(helped, examples, tta="flip")
    assert dict(helped.region_fallbacks.fallbacks) == {"collar": 0}
    # the keypoint model's boxes change the neckline only
    assert np.abs(got["neckline"] - garment_only["neckline"]).max() > 1e-4
    np.testing.assert_allclose(got["sleeve"], garment_only["sleeve"], atol=1e-5)
    # the two-stage export of the same pair gives the same probabilities
    base = str(tmp_path / "export")
    export_saved_model(models["plain_model"], base, keypoint_model=models["points_model"])
    export_p = model_loading.load_predictor(base)
    from_export = predict_examples(export_p, examples, tta="flip")
    for head in ATTRIBUTES:
        np.testing.assert_allclose(from_export[head.name], got[head.name], atol=1e-4)

    argv = [models["plain"], *_data_args(small_demo)]
    metrics = _evaluate([*argv, "--keypoint-model", models["points"]], str(tmp_path / "kp"))
    assert metrics["region_boxes"][models["plain"]]["fell_back_to_garment_box"] == {"collar": 0}
    metrics = _evaluate(argv, str(tmp_path / "none"))
    assert metrics["region_boxes"][models["plain"]]["fell_back_to_garment_box"] == {"collar": N}


def test_predict_a_photo_with_the_region_export(models, tmp_path, capsys):
    rng = np.random.default_rng(2)
    photo = str(tmp_path / "photo.jpg")
    image = encode(rng.integers(0, 255, (90, 60, 3), dtype=np.uint8))
    open(photo, "wb").write(image)
    records = {}
    for name in ("export", "joint"):
        assert predict.main([models[name], photo, "--top-k", "2"]) == 0
        records[name] = json.loads(capsys.readouterr().out)["predictions"]
    [record] = records["export"]
    assert record["image"] == photo
    assert set(record["heads"]) == {h.name for h in ATTRIBUTES}
    assert len(record["keypoints"][POINTS.name]) == POINTS.num_keypoints
    served = tf.saved_model.load(os.path.join(models["export"], "1")).signatures["serving_default"]
    ref = served(image_bytes=tf.constant([image]))
    assert ref["collar_found"].numpy().all()
    best = record["heads"]["neckline"][0]
    assert best["probability"] == pytest.approx(
        float(ref["neckline_probs"][0].numpy().max()), abs=1e-4
    )
    for head in ATTRIBUTES:
        got = [c["probability"] for c in record["heads"][head.name]]
        want = [c["probability"] for c in records["joint"][0]["heads"][head.name]]
        np.testing.assert_allclose(got, want, atol=1e-4)
