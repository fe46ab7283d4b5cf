"""What training compiles: through ``trainer.compile_model`` (the function ``train`` calls), on a
hand-made batch with masked rows, the per-head losses, their weighted total, the focal
parameters, label smoothing, the masked accuracies and ``--jit-compile``, each checked against
values computed here with NumPy."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import xla_flags

from fashion_keras.heads import Head
from fashion_keras.models import build_model
from fashion_keras.training import trainer as T
from fashion_keras.training.config import TrainConfig

#: Unequal loss weights, so a dropped weight shows in the total.
HEADS = (Head("sleeve", ("long", "short", "none"), 0.7), Head("fit", ("tight", "loose"), 1.6))
SIZE, BATCH = 32, 8
#: Not the defaults (2.0, 0.25, 0.0): a parameter that is not passed through shows.
GAMMA, ALPHA, SMOOTHING = 1.5, 0.4, 0.2


def _config(**kw) -> TrainConfig:
    base = dict(
        backbone="seresnet_tiny",
        image_size=SIZE,
        batch_size=BATCH,
        epochs=1,
        learning_rate=1e-3,
        focal_gamma=GAMMA,
        focal_alpha=ALPHA,
        label_smoothing=SMOOTHING,
        output_dir="unused",
    )
    return TrainConfig(**{**base, **kw}).resolve()


def _compiled(**kw) -> keras.Model:
    keras.utils.set_random_seed(3)
    model = build_model("seresnet_tiny", HEADS, image_size=SIZE)
    T.compile_model(model, HEADS, _config(**kw), steps_per_epoch=1)
    return model


def _batch(model: keras.Model):
    """Images, one-hot targets and 0/1 weights; the labels are chosen so that the model is
    right on some rows and wrong on others, and the masked rows would change each accuracy."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (BATCH, SIZE, SIZE, 3)).astype("float32")
    pred = {k: np.asarray(v) for k, v in model(x, training=False).items()}
    y, w = {}, {}
    for h in HEADS:
        top = pred[h.name].argmax(1)
        wrong = (top + 1) % h.num_classes
        labels = np.where(np.arange(BATCH) % 3 == 0, top, wrong)  # rows 0, 3, 6 right
        mask = np.array([1, 1, 1, 1, 0, 0, 0, 1], "float32")  # rows 4-6 unlabelled
        if h.name == "fit":
            mask = np.array([0, 1, 1, 0, 1, 1, 1, 1], "float32")
        labels[mask == 0] = top[mask == 0]  # a masked row counted would look right
        y[h.name] = np.eye(h.num_classes, dtype="float32")[labels]
        w[h.name] = mask
    return x, y, w, pred


def _focal(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Per-row categorical focal cross-entropy with label smoothing (Lin et al. 2017)."""
    k = y.shape[1]
    y = y * (1 - SMOOTHING) + SMOOTHING / k
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return -(ALPHA * (1 - p) ** GAMMA * y * np.log(p)).sum(axis=1)


def test_losses_weights_focal_parameters_smoothing_and_masked_accuracy():
    model = _compiled()
    x, y, w, pred = _batch(model)
    logs = model.evaluate(x, y, sample_weight=w, batch_size=BATCH, return_dict=True, verbose=0)
    total = 0.0
    for h in HEADS:
        rows = _focal(y[h.name], pred[h.name])
        loss = (rows * w[h.name]).sum() / w[h.name].sum()  # mean over the labelled rows
        np.testing.assert_allclose(logs[f"{h.name}_loss"], loss, rtol=1e-4)
        total += h.loss_weight * loss
        hit = pred[h.name].argmax(1) == y[h.name].argmax(1)
        masked_accuracy = hit[w[h.name] > 0].mean()
        assert logs[f"{h.name}_accuracy"] == pytest.approx(masked_accuracy, abs=1e-6)
        assert masked_accuracy != pytest.approx(hit.mean())  # counting masked rows differs
    np.testing.assert_allclose(logs["loss"], total, rtol=1e-4)


def test_a_head_labelled_nowhere_gets_zero_loss_and_zero_gradient():
    """FashionAI rows label one task of eight: the masked heads' losses are exactly 0 and no
    gradient reaches their weights, through the compiled losses."""
    model = _compiled()
    x, y, w, _ = _batch(model)
    w = {"sleeve": w["sleeve"], "fit": np.zeros(BATCH, "float32")}
    logs = model.evaluate(x, y, sample_weight=w, batch_size=BATCH, return_dict=True, verbose=0)
    assert logs["fit_loss"] == 0.0 and logs["sleeve_loss"] > 0
    with tf.GradientTape() as tape:
        out = model(x, training=False)
        loss = model.compute_loss(x, y, out, sample_weight=w, training=False)
    fit_layer, sleeve_layer = model.get_layer("fit"), model.get_layer("sleeve")
    grads = tape.gradient(loss, [*fit_layer.trainable_variables, *sleeve_layer.trainable_variables])
    assert all(np.count_nonzero(np.asarray(g)) == 0 for g in grads[:2])
    assert all(np.count_nonzero(np.asarray(g)) > 0 for g in grads[2:])


@pytest.mark.parametrize("jit", [True, False])
def test_jit_compile_reaches_the_compiled_train_step(jit):
    """``--jit-compile`` compiles the train step with XLA: the traced train function calls the
    step with ``_XlaMustCompile`` set, and without the flag it does not."""
    model = _compiled(jit_compile=jit)
    x, y, w, _ = _batch(model)
    model.fit(x, y, sample_weight=w, batch_size=BATCH, epochs=1, verbose=0)
    flags = xla_flags(model)
    assert flags and all(flag is jit for flag in flags), flags
