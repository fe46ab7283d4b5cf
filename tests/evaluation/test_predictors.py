"""Test-time augmentation views, model loading and ensemble arithmetic."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from conftest import encode

from fashion_keras.data.preprocess import preprocess_for_eval
from fashion_keras.evaluation import ensembles, model_loading, predictors
from fashion_keras.evaluation import views as V
from fashion_keras.evaluation.saved_model_predictor import SavedModelPredictor
from fashion_keras.export import export_saved_model
from fashion_keras.heads import get_heads
from fashion_keras.models import build_model

HEADS = get_heads("deepfashion6")[:2]


def _coordinate_square(side: int) -> tf.Tensor:
    """Channel 0 = row index, channel 1 = column index: every crop names its own corner."""
    ys, xs = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    return tf.constant(np.stack([ys, xs, np.zeros_like(ys)], -1).astype(np.float32))


@pytest.mark.parametrize(
    "mode, views, corners",
    [
        ("none", 1, [(5, 5)]),
        ("flip", 2, [(5, 5)]),
        ("ten_crop", 10, [(0, 0), (0, 10), (10, 0), (10, 10), (5, 5)]),
        (
            "eighteen_crop",
            18,
            [(y, x) for y in (0, 5, 10) for x in (0, 5, 10)],
        ),
    ],
)
def test_tta_views_are_the_documented_crops(mode, views, corners):
    out = V.tta_views(_coordinate_square(30), 20, mode).numpy()
    assert out.shape == (views, 20, 20, 3) and V.NUM_VIEWS[mode] == views
    crops = out[: len(corners)]
    # top-left pixel of each crop = its (y, x) offset; bottom-right = offset + 19
    assert [(int(c[0, 0, 0]), int(c[0, 0, 1])) for c in crops] == corners
    assert [(int(c[-1, -1, 0]), int(c[-1, -1, 1])) for c in crops] == [
        (y + 19, x + 19) for y, x in corners
    ]
    if mode != "none":
        mirrored = out[len(corners) :]
        assert len(mirrored) == len(corners)
        np.testing.assert_array_equal(mirrored, crops[:, :, ::-1, :])


def test_tta_none_is_the_evaluation_view():
    rng = np.random.default_rng(0)
    image = encode(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8))
    bbox = tf.constant([0.1, 0.2, 0.9, 0.7])
    views = V.preprocess_tta(image, 32, "none", bbox)
    np.testing.assert_array_equal(views[0].numpy(), preprocess_for_eval(image, 32, bbox).numpy())
    # multi-crop modes resize to 256/224 of the crop size by default
    assert V.tta_side(224, "ten_crop") == 256
    assert V.tta_side(32, "flip") == 33
    assert V.preprocess_tta(image, 32, "eighteen_crop").shape == (18, 32, 32, 3)


def test_tta_rejects_unknown_mode_and_small_squares():
    with pytest.raises(ValueError, match="tta = 'twelve'"):
        V.tta_side(32, "twelve")
    with pytest.raises(ValueError, match="larger than the image side"):
        V.tta_offsets(20, 32, "ten_crop")
    with pytest.raises(ValueError, match="resize_ratio"):
        V.tta_side(32, "ten_crop", 0.5)


def test_combine_averages_with_weights_and_per_head_members():
    a = {"x": np.array([[1.0, 0.0]]), "y": np.array([[0.2, 0.8]])}
    b = {"x": np.array([[0.0, 1.0]])}  # no head y
    out = ensembles.combine([a, b], [3, 1])
    np.testing.assert_allclose(out["x"], [[0.75, 0.25]])
    np.testing.assert_allclose(out["y"], [[0.2, 0.8]])  # only a has y
    with pytest.raises(ValueError, match="expected 2 numbers"):
        ensembles.combine([a, b], [1.0])
    with pytest.raises(ValueError, match="not all 0"):
        ensembles.normalize_weights([0, 0], 2)


def test_weight_grid_covers_the_simplex():
    grid = ensembles.weight_grid(3, 0.5)
    assert sorted(grid) == sorted(
        [(1, 0, 0), (0, 1, 0), (0, 0, 1), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)]
    )
    assert len(ensembles.weight_grid(4, 0.1)) == 286  # C(13, 3)


def test_search_weights_finds_the_better_model():
    labels = np.array([0, 1, 0, 1])
    good = {"h": np.eye(2)[labels] * 0.9 + 0.05}
    bad = {"h": np.eye(2)[1 - labels] * 0.9 + 0.05}

    def accuracy(probs):
        return float(np.mean(np.argmax(probs["h"], 1) == labels))

    found = ensembles.search_weights([bad, good], accuracy)
    assert found.value == 1.0 and found.equal_weights_value <= 0.5
    assert found.weights[1] > found.weights[0]
    # coordinate ascent for many models
    many = ensembles.search_weights([bad] * 6 + [good], accuracy)
    assert many.value == 1.0 and np.argmax(many.weights) == 6


def test_load_weights_arg(tmp_path):
    assert ensembles.load_weights_arg("1,3", 2) == [0.25, 0.75]
    path = tmp_path / "w.json"
    path.write_text(json.dumps({"weights": [2, 2]}))
    assert ensembles.load_weights_arg(str(path), 2) == [0.5, 0.5]
    with pytest.raises(ValueError, match="--weights 'a,b'"):
        ensembles.load_weights_arg("a,b", 2)
    with pytest.raises(ValueError, match=r"w.json: ensemble weights \[2.0, 2.0\]"):
        ensembles.load_weights_arg(str(path), 3)


@pytest.fixture(scope="module")
def tiny_model():
    return build_model("seresnet_tiny", HEADS, image_size=32)


def test_every_model_form_loads_and_agrees(tiny_model, tmp_path):
    keras_path = str(tmp_path / "run" / "model.keras")
    os.makedirs(os.path.dirname(keras_path))
    tiny_model.save(keras_path)
    export_base = str(tmp_path / "export")
    version = export_saved_model(tiny_model, export_base)
    images = [np.random.default_rng(1).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)]
    expected = tiny_model(images[0], training=False)
    for path, kind in [
        (keras_path, predictors.KerasPredictor),
        (str(tmp_path / "run"), predictors.KerasPredictor),
        (version, SavedModelPredictor),
        (export_base, SavedModelPredictor),
    ]:
        predictor = model_loading.load_predictor(path)
        assert isinstance(predictor, kind)
        assert [h.name for h in predictor.heads] == [h.name for h in HEADS]
        assert predictor.image_sizes == (32,)
        out = predictor.predict_batch(images)
        for h in HEADS:
            np.testing.assert_allclose(out[h.name], expected[h.name], atol=1e-5)


def test_load_predictor_errors_name_the_path(tmp_path):
    with pytest.raises(predictors.ModelLoadError, match="no such model file or folder: /nope"):
        model_loading.load_predictor("/nope")
    (tmp_path / "weights.h5").write_bytes(b"x")
    with pytest.raises(predictors.ModelLoadError, match="weights.h5: a model file must be"):
        model_loading.load_predictor(str(tmp_path / "weights.h5"))
    with pytest.raises(predictors.ModelLoadError, match="not a model folder"):
        model_loading.load_predictor(str(tmp_path))


def test_union_heads_refuses_clashing_classes(tiny_model):
    other = build_model(
        "seresnet_tiny", [{"name": HEADS[0].name, "classes": ["a", "b"]}], image_size=32
    )
    with pytest.raises(ValueError, match="same classes"):
        predictors.union_heads(
            [predictors.KerasPredictor(tiny_model), predictors.KerasPredictor(other)]
        )


def test_predict_examples_averages_views_in_row_order(tiny_model):
    rng = np.random.default_rng(2)
    images = [encode(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)) for _ in range(5)]
    examples = tf.data.Dataset.from_tensor_slices({"image": images})
    predictor = predictors.KerasPredictor(tiny_model)
    probs = predictors.predict_examples(predictor, examples, tta="flip", batch_size=2)
    for i, image in enumerate(images):
        views = V.preprocess_tta(image, 32, "flip")
        want = tiny_model(views, training=False)
        for h in HEADS:
            np.testing.assert_allclose(probs[h.name][i], np.mean(want[h.name], 0), atol=1e-5)


FLAT_CONFIG_V0 = os.path.join(
    os.path.dirname(os.path.dirname(__file__)), "training", "data", "config_flat_v0.json"
)


def _boxed_example():
    """One photo whose garment box is well inside it: the margin changes the crop."""
    rng = np.random.default_rng(5)
    image = encode(rng.integers(0, 255, (90, 70, 3), dtype=np.uint8))
    box = np.array([0.25, 0.2, 0.7, 0.75], np.float32)
    return image, box, tf.data.Dataset.from_tensors({"image": image, "bbox": box})


def _probs_at(model, image, box, margin):
    view = preprocess_for_eval(image, 32, tf.constant(box), margin)[None]
    out = model(view, training=False)
    return {h.name: np.asarray(out[h.name]) for h in HEADS}


def test_every_model_form_crops_with_the_margin_it_was_trained_with(tmp_path):
    """The margin travels with the model: a .keras file, its run folder, the export and an old
    run (no margin in the model, one in the run's config.json) are all cropped with it, and
    ``bbox_margin`` overrides it."""
    model = build_model("seresnet_tiny", HEADS, image_size=32, preprocessing={"bbox_margin": 0.3})
    run = tmp_path / "run"
    os.makedirs(run)
    model.save(str(run / "model.keras"))
    version = export_saved_model(model, str(run / "export"))
    old_run = tmp_path / "old_run"
    os.makedirs(old_run / "checkpoints")
    build_model("seresnet_tiny", HEADS, image_size=32).save(
        str(old_run / "checkpoints" / "b.keras")
    )
    with open(FLAT_CONFIG_V0) as src, open(old_run / "config.json", "w") as dst:
        dst.write(src.read())  # written by the previous version: bbox_margin 0.2, flat
    image, box, examples = _boxed_example()
    cases = [
        (str(run / "model.keras"), 0.3, "model", model),
        (str(run), 0.3, "model", model),
        (version, 0.3, "export metadata", model),
        (str(old_run / "checkpoints" / "b.keras"), 0.2, str(old_run / "config.json"), None),
    ]
    for path, margin, source, reference in cases:
        predictor = model_loading.load_predictor(path)
        assert predictor.inputs == (V.InputSpec(32, margin, source),), path
        reference = reference or predictor.model
        got = predictors.predict_examples(predictor, examples)
        for other, same in ((margin, True), (0.1, False)):
            want = _probs_at(reference, image, box, other)
            assert all(np.allclose(got[k], want[k], atol=1e-5) for k in want) == same, path
        overridden = predictors.predict_examples(predictor, examples, bbox_margin=0.1)
        want = _probs_at(reference, image, box, 0.1)
        for k in want:
            np.testing.assert_allclose(overridden[k], want[k], atol=1e-5)


def test_a_model_without_a_recorded_margin_uses_the_default_and_says_so(tiny_model, caplog):
    predictor = predictors.KerasPredictor(tiny_model)
    assert predictor.inputs == (V.InputSpec(32, 0.1, "default"),)
    assert "records no garment-box margin" in caplog.text
    assert V.override_margin(predictor.inputs, 0.4) == (V.InputSpec(32, 0.4, "--bbox-margin"),)
