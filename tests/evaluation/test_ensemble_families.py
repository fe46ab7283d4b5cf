"""Ensembles of unlike networks: an SE-ResNet (32 px) and a keras.applications DenseNet (48 px,
trained two steps by ``python -m fashion_keras.train`` on the demo data, exported), through
``python -m fashion_keras.evaluate A B`` and feature stacking, each at its own input size."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from fashion_keras import evaluate, train, train_stack
from fashion_keras.data import sources
from fashion_keras.evaluation import ensembles, model_loading, predictors
from fashion_keras.evaluation import evaluate as evaluation
from fashion_keras.evaluation.saved_model_predictor import SavedModelPredictor
from fashion_keras.heads import get_heads
from fashion_keras.models import ApplicationBackbone, Backbone, build_model

pytestmark = pytest.mark.slow  # end-to-end tier

HEADS = get_heads("deepfashion6")


def _data_args(small_demo) -> list[str]:
    return ["--data-dir", small_demo["manual_dir"], "--tfds-data-dir", small_demo["tfds_dir"]]


@pytest.fixture(scope="module")
def members(tmp_path_factory, small_demo):
    """An untrained seresnet_tiny .keras file (32 px) and a keras_densenet121 run folder (48 px,
    one frozen + one fine-tuning epoch of two steps, with its SavedModel export)."""
    root = tmp_path_factory.mktemp("families")
    seresnet = build_model("seresnet_tiny", HEADS, image_size=32)
    seresnet_path = str(root / "seresnet_tiny.keras")
    seresnet.save(seresnet_path)
    run = str(root / "densenet_run")
    argv = [
        *_data_args(small_demo), "--backbone", "keras_densenet121", "--image-size", "48",
        "--batch-size", "8", "--epochs", "2", "--freeze-epochs", "1", "--steps-per-epoch", "2",
        "--lr-multipliers", "stem=0.1,stages=0.5", "--output-dir", run, "--verbose", "0",
    ]  # fmt: skip
    assert train.main(argv) == 0
    return {"seresnet": seresnet_path, "densenet": run}


def test_ensemble_of_seresnet_and_densenet_at_their_own_sizes(members, small_demo, tmp_path):
    ensemble = ensembles.load_ensemble([members["seresnet"], members["densenet"]])
    a, b = ensemble.predictors
    assert isinstance(a.model.backbone, Backbone) and a.image_sizes == (32,)
    assert isinstance(b.model.backbone, ApplicationBackbone) and b.image_sizes == (48,)
    assert b.model.backbone.application == "keras_densenet121"
    np.testing.assert_allclose(b.model.get_layer("normalize").mean, [123.675, 116.28, 103.53])

    # the ensemble's probabilities are the mean of the members', each fed at its own size
    data = evaluation.load_eval_data(sources.load_split(small_demo["builder"], "val"), HEADS)
    one, two = ensemble.member_probs(data.examples)
    both = ensemble.predict_examples(data.examples)
    for h in HEADS:
        np.testing.assert_allclose(both[h.name], (one[h.name] + two[h.name]) / 2, atol=1e-6)
        assert not np.allclose(one[h.name], two[h.name])

    out = str(tmp_path / "eval")
    args = [members["seresnet"], members["densenet"], *_data_args(small_demo)]
    assert evaluate.main([*args, "--output-dir", out]) == 0
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert metrics["weights"] == [0.5, 0.5] and metrics["num_examples"] == 32
    for h in HEADS:
        labels = data.labels[h.name]
        rows = labels >= 0
        accuracy = np.mean(np.argmax(both[h.name][rows], axis=1) == labels[rows])
        assert metrics["heads"][h.name]["accuracy"] == pytest.approx(accuracy, abs=1e-6)


def test_exported_densenet_predicts_as_its_keras_model(members):
    keras_member = model_loading.load_predictor(members["densenet"])
    exported = model_loading.load_predictor(os.path.join(members["densenet"], "export"))
    assert isinstance(exported, SavedModelPredictor)
    assert exported.image_sizes == (48,)
    images = [np.random.default_rng(3).uniform(0, 255, (2, 48, 48, 3)).astype("float32")]
    want, got = keras_member.predict_batch(images), exported.predict_batch(images)
    for h in HEADS:
        np.testing.assert_allclose(got[h.name], want[h.name], rtol=1e-4, atol=1e-5)


def test_feature_stack_of_seresnet_and_densenet(members, small_demo, tmp_path):
    out = str(tmp_path / "stack")
    args = [members["seresnet"], members["densenet"], *_data_args(small_demo)]
    assert (
        train_stack.main([*args, "--epochs", "2", "--hidden-units", "8", "--output-dir", out]) == 0
    )
    spec = json.load(open(os.path.join(out, "stack.json")))
    assert spec["image_sizes"] == [32, 48]
    assert spec["feature_dims"] == [512, 1024]  # seresnet_tiny; DenseNet-121's 1024 channels
    stack = model_loading.load_predictor(out)
    assert isinstance(stack, predictors.StackPredictor) and stack.image_sizes == (32, 48)
