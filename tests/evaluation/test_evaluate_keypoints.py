"""``evaluate`` and ``predict`` on models with keypoint heads: the NE tables beside the
mean-position baseline, the worst-case figure, flip TTA (exactly mirror-symmetric), the FashionAI
submission, keypoints in original-image pixels, exports, and models mixing both kinds of head."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
from conftest import encode
from PIL import Image

from fashion_keras import evaluate, predict
from fashion_keras.data import sources
from fashion_keras.evaluation import keypoint_predictions as kp
from fashion_keras.evaluation import model_loading
from fashion_keras.evaluation.keypoint_submission import read_submission, submission_header
from fashion_keras.evaluation.predict import file_examples
from fashion_keras.evaluation.saved_model_predictor import SavedModelPredictor
from fashion_keras.heads import FASHIONAI_KEYPOINTS, get_heads
from fashion_keras.models import build_model
from fashion_keras_datasets.synthetic.keypoints_demo import generate_keypoints_demo

HEAD = FASHIONAI_KEYPOINTS
MARGIN = 0.1  # the default margin: the tiny models record none


def _random_keypoint_head(model, seed: int):
    """Random kernels in the keypoint head: an untrained head's heatmaps are flat, so every
    point would sit at the view's centre and flip TTA would change nothing."""
    rng = np.random.default_rng(seed)
    for w in model.get_layer(HEAD.name).weights:
        if "kernel" in w.path:
            w.assign(rng.normal(0.0, 0.3, w.shape).astype(np.float32))
    return model


@pytest.fixture(scope="module")
def kp_demo(tmp_path_factory):
    """A small synthetic FashionAI keypoints release prepared by the real builder."""
    root = tmp_path_factory.mktemp("kp_demo")
    generate_keypoints_demo(str(root / "manual"), num_train=40, num_test=8, seed=1, max_side=160)
    builder = sources.get_builder("fashionai_keypoints", str(root / "manual"), str(root / "tfds"))
    return {"manual_dir": str(root / "manual"), "tfds_dir": str(root / "tfds"), "builder": builder}


@pytest.fixture(scope="module")
def kp_model(tmp_path_factory):
    """A 96 px keypoint model (96: the eval view's centre crop is symmetric, 100 -> 96)."""
    model = _random_keypoint_head(
        build_model("seresnet_tiny", (HEAD,), image_size=96, keypoint_filters=16), seed=0
    )
    path = str(tmp_path_factory.mktemp("kp_model") / "kp.keras")
    model.save(path)
    return model, path


def _args(demo):
    return [
        "--dataset",
        "fashionai_keypoints",
        "--data-dir",
        demo["manual_dir"],
        "--tfds-data-dir",
        demo["tfds_dir"],
    ]


def _expected(model, demo, tta):
    builder = demo["builder"]
    pred = kp.predict_keypoints(
        model, sources.load_split(builder, "val"), (HEAD,), 96, bbox_margin=MARGIN, tta=tta
    )[HEAD.name]
    truth = kp.ground_truth(sources.load_split(builder, "train"), (HEAD,))[HEAD.name]
    return pred, kp.evaluate_keypoints(pred, truth)


def _assert_close(got, want, where="keypoints"):
    """Equal JSON trees, numbers to 1e-6 relative."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), where
        for k in want:
            _assert_close(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _assert_close(g, w, f"{where}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-6), where
    else:
        assert got == want, where


def _is_png(path):
    with Image.open(path) as im:
        im.verify()
        return im.format == "PNG"


def test_evaluate_writes_the_ne_tables_baseline_and_worst_cases(
    kp_model, kp_demo, tmp_path, capsys
):
    model, path = kp_model
    out = str(tmp_path / "eval")
    assert evaluate.main([path, *_args(kp_demo), "--output-dir", out, "--top-losses", "3"]) == 0
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    pred, expected = _expected(model, kp_demo, "none")
    entry = metrics["keypoints"][HEAD.name]
    want = json.loads(json.dumps(expected.to_json()))
    _assert_close({k: entry[k] for k in want}, want)
    assert expected.baseline is not None  # the mean-position baseline of the training split
    assert entry["baseline"]["ne_percent"] == pytest.approx(expected.baseline.percent)
    assert entry["num_labelled"] == len(pred.rows) == metrics["num_examples"]
    assert entry["tta"] == "none"
    assert "heads" not in metrics and "submission" not in metrics  # keypoint head only
    report = open(os.path.join(out, "report.md")).read()
    assert expected.table().strip() in report
    assert entry["worst_cases"] == f"keypoints_{HEAD.name}_worst.png"
    assert f"]({entry['worst_cases']})" in report
    assert _is_png(os.path.join(out, entry["worst_cases"]))
    printed = capsys.readouterr().out
    assert f"NE {expected.score.percent:.2f}%" in printed
    assert f"baseline {expected.baseline.percent:.2f}%" in printed


def test_flip_tta_changes_the_points_and_crop_grids_fall_back_to_none(
    kp_model, kp_demo, tmp_path, caplog
):
    model, path = kp_model
    runs = {}
    for tta in ("flip", "ten_crop"):
        out = str(tmp_path / tta)
        assert evaluate.main([path, *_args(kp_demo), "--output-dir", out, "--tta", tta]) == 0
        runs[tta] = json.load(open(os.path.join(out, "metrics.json")))["keypoints"][HEAD.name]
    flip_pred, flip = _expected(model, kp_demo, "flip")
    none_pred, none = _expected(model, kp_demo, "none")
    assert np.abs(flip_pred.predicted - none_pred.predicted).max() > 0.5
    assert runs["flip"]["tta"] == "flip"
    assert runs["flip"]["ne_percent"] == pytest.approx(flip.score.percent)
    assert runs["ten_crop"]["tta"] == "none"
    assert runs["ten_crop"]["ne_percent"] == pytest.approx(none.score.percent)
    assert "--tta ten_crop applies to the softmax heads only" in caplog.text


def _predict_json(argv, capsys):
    assert predict.main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_flip_tta_is_exactly_mirror_symmetric(kp_model, tmp_path, capsys):
    """A mirrored photo gets the mirrored points with left and right swapped under flip TTA
    (not without it: the random model is not symmetric)."""
    _, path = kp_model
    rng = np.random.default_rng(3)
    photo = rng.integers(0, 255, (120, 120, 3), dtype=np.uint8)
    photo[20:90, 30:70] = (200, 40, 40)  # an off-centre garment
    files = [str(tmp_path / "photo.png"), str(tmp_path / "mirror.png")]
    for f, image in zip(files, (photo, photo[:, ::-1]), strict=True):
        open(f, "wb").write(encode(image, "PNG"))  # lossless: the mirror is exact
    perm = list(HEAD.flip_permutation())

    def points(tta):
        out = _predict_json([path, *files, "--tta", tta], capsys)["predictions"]
        xy = [np.array([[p["x"], p["y"]] for p in r["keypoints"][HEAD.name]]) for r in out]
        s = [np.array([p["score"] for p in r["keypoints"][HEAD.name]]) for r in out]
        mirrored = xy[1][perm]
        mirrored[:, 0] = 120 - 1 - mirrored[:, 0]
        return xy[0], mirrored, s[0], s[1][perm]

    xy, mirrored, scores, m_scores = points("flip")
    np.testing.assert_allclose(mirrored, xy, atol=2e-3)
    np.testing.assert_allclose(m_scores, scores, atol=1e-5)
    xy, mirrored, _, _ = points("none")
    assert np.abs(mirrored - xy).max() > 0.5


def test_predict_prints_original_image_pixels(kp_model, tmp_path, capsys):
    model, path = kp_model
    rng = np.random.default_rng(4)
    photo = str(tmp_path / "wide.jpg")
    open(photo, "wb").write(encode(rng.integers(0, 255, (90, 150, 3), dtype=np.uint8)))
    records = _predict_json([path, photo], capsys)["predictions"]
    assert records[0]["heads"] == {}
    got = records[0]["keypoints"][HEAD.name]
    expected = kp.predict_keypoints(
        model, file_examples([photo]), (HEAD,), 96, bbox_margin=MARGIN, labelled_only=False
    )[HEAD.name]
    assert [p["keypoint_name"] for p in got] == list(HEAD.keypoints)
    assert [p["keypoint_index"] for p in got] == list(range(HEAD.num_keypoints))
    np.testing.assert_allclose([[p["x"], p["y"]] for p in got], expected.predicted[0], atol=1e-4)
    np.testing.assert_allclose([p["score"] for p in got], expected.scores[0], atol=1e-6)
    assert predict.main([path, photo, "--format", "csv"]) == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert len(rows) == HEAD.num_keypoints
    assert rows[0]["keypoint_name"] == HEAD.keypoints[0]
    assert float(rows[0]["x"]) == pytest.approx(expected.predicted[0, 0, 0], abs=0.01)


def test_submission_has_the_test_rows_in_order(kp_model, kp_demo, tmp_path):
    _, path = kp_model
    out = str(tmp_path / "test")
    given = str(tmp_path / "sub" / "keypoints.csv")
    args = [path, *_args(kp_demo), "--split", "test", "--output-dir", out]
    assert evaluate.main([*args, "--submission", given]) == 0
    assert evaluate.main(args) == 0  # the test split has no keypoints: written by default
    default = os.path.join(out, "submission.csv")
    # the test list's order, as the file has it (TFDS stores the records shuffled)
    with open(os.path.join(kp_demo["manual_dir"], "test.csv")) as f:
        listed = list(csv.reader(f))[1:]
    ids = [r[0] for r in listed]
    cats = [r[1] for r in listed]
    test = sources.load_split(kp_demo["builder"], "test").as_numpy_iterator()
    split = [e["image_id"].decode() for e in test]
    assert sorted(split) == sorted(ids) and split != ids  # the split alone would misorder them
    for sub_path in (given, default):
        rows = list(csv.reader(open(sub_path)))
        assert tuple(rows[0]) == submission_header(HEAD) and len(rows[0]) == 26
        assert all(len(r) == 26 for r in rows[1:])
        sub = read_submission(sub_path, HEAD, image_ids=ids)  # in the test list's order
        assert list(sub.categories) == cats
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert metrics["submission"] == {"path": default, "head": HEAD.name, "rows": len(ids)}
    assert metrics["keypoints"][HEAD.name]["num_labelled"] == 0
    assert open(given).read() == open(default).read()


def test_a_model_with_both_kinds_of_head(kp_demo, small_demo, tmp_path, capsys):
    """Softmax heads beside a keypoint head: each is scored on the data that labels it."""
    heads = (*get_heads("deepfashion6")[:2], HEAD)
    model = _random_keypoint_head(
        build_model("seresnet_tiny", heads, image_size=64, keypoint_filters=16), seed=1
    )
    path = str(tmp_path / "mixed.keras")
    model.save(path)
    out = str(tmp_path / "kp")
    assert evaluate.main([path, *_args(kp_demo), "--output-dir", out]) == 0
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert set(metrics["keypoints"]) == {HEAD.name} and "heads" not in metrics
    out = str(tmp_path / "attributes")
    data = ["--data-dir", small_demo["manual_dir"], "--tfds-data-dir", small_demo["tfds_dir"]]
    assert evaluate.main([path, *data, "--output-dir", out]) == 0
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert set(metrics["heads"]) == {h.name for h in heads[:2]} and "keypoints" not in metrics
    photo = str(tmp_path / "p.jpg")
    open(photo, "wb").write(encode(np.full((50, 40, 3), 128, np.uint8)))
    capsys.readouterr()
    record = _predict_json([path, photo, "--top-k", "2"], capsys)["predictions"][0]
    assert [len(v) for v in record["heads"].values()] == [2, 2]
    assert len(record["keypoints"][HEAD.name]) == HEAD.num_keypoints


@pytest.mark.slow
def test_an_export_predicts_the_keras_models_points(kp_model, kp_demo, tmp_path):
    """The SavedModel's <head>_keypoints/_scores outputs give the Keras model's photo-pixel
    points, with flip TTA too (the average of the mirrored points is that of the heatmaps)."""
    from fashion_keras.export import export_saved_model

    model, path = kp_model
    base = str(tmp_path / "export")
    export_saved_model(model, base)
    examples = sources.load_split(kp_demo["builder"], "val")
    keras_p, export_p = model_loading.load_predictor(path), model_loading.load_predictor(base)
    assert isinstance(export_p, SavedModelPredictor)
    for tta in ("none", "flip"):
        want = keras_p.predict_keypoints(examples, tta=tta)[HEAD.name]
        got = export_p.predict_keypoints(examples, tta=tta)[HEAD.name]
        np.testing.assert_allclose(got.predicted, want.predicted, atol=1e-2)
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-5)
    out = str(tmp_path / "eval")
    assert evaluate.main([base, *_args(kp_demo), "--output-dir", out, "--tta", "flip"]) == 0
    entry = json.load(open(os.path.join(out, "metrics.json")))["keypoints"][HEAD.name]
    want = _expected(model, kp_demo, "flip")[1].score.percent
    assert entry["ne_percent"] == pytest.approx(want, rel=1e-3)
