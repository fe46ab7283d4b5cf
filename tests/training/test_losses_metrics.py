"""What a masked head's loss and accuracy mean (see fashion_keras/losses.py)."""

import keras
import numpy as np
import pytest

from fashion_keras.heads import Head
from fashion_keras.training import losses as L
from fashion_keras.training import metrics as M

HEADS = (Head("a", ("x", "y", "z"), 0.5), Head("b", ("p", "q"), 2.0))


def tiny_model(seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((4,), name="image")
    outs = {h.name: keras.layers.Dense(h.num_classes, "softmax", name=h.name)(inp) for h in HEADS}
    model = keras.Model(inp, outs)
    model.compile(
        optimizer=keras.optimizers.SGD(0.5),
        loss=L.focal_losses(HEADS, gamma=2.0, alpha=0.25),
        loss_weights=L.loss_weights(HEADS),
        weighted_metrics=M.head_metrics(HEADS),
    )
    return model


def data(n=8, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = {
        "a": np.eye(3, dtype="float32")[rng.integers(0, 3, n)],
        "b": np.eye(2, dtype="float32")[rng.integers(0, 2, n)],
    }
    return x, y


def per_example_focal(y, p):
    fn = keras.losses.CategoricalFocalCrossentropy(alpha=0.25, gamma=2.0, reduction=None)
    return keras.ops.convert_to_numpy(fn(y, p))


def test_masked_head_loss_is_mean_over_labelled_examples():
    model = tiny_model()
    x, y = data()
    w = {"a": np.array([1, 0, 1, 0, 0, 0, 1, 0], "float32"), "b": np.ones(8, "float32")}
    pred = model.predict(x, verbose=0)
    la = per_example_focal(y["a"], pred["a"])
    lb = per_example_focal(y["b"], pred["b"])
    expect_a = (la * w["a"]).sum() / w["a"].sum()
    expect_b = lb.mean()
    logs = model.evaluate(x, y, sample_weight=w, batch_size=8, return_dict=True, verbose=0)
    np.testing.assert_allclose(logs["a_loss"], expect_a, rtol=1e-5)
    np.testing.assert_allclose(logs["b_loss"], expect_b, rtol=1e-5)
    # the total is the loss-weighted sum (weights 0.5 and 2.0 from the head spec)
    np.testing.assert_allclose(logs["loss"], 0.5 * expect_a + 2.0 * expect_b, rtol=1e-5)
    # the mean over labelled examples differs from Keras' default (divide by batch size)
    assert not np.isclose(expect_a, (la * w["a"]).sum() / 8)


def test_fully_masked_head_contributes_nothing():
    model = tiny_model()
    x, y = data()
    w = {"a": np.ones(8, "float32"), "b": np.zeros(8, "float32")}
    before = [v.copy() for v in model.get_layer("b").get_weights()]
    before_a = [v.copy() for v in model.get_layer("a").get_weights()]
    logs = model.train_on_batch(x, y, sample_weight=w, return_dict=True)
    assert logs["b_loss"] == 0.0
    for old, new in zip(before, model.get_layer("b").get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)
    assert any(
        not np.array_equal(o, n)
        for o, n in zip(before_a, model.get_layer("a").get_weights(), strict=True)
    )


def test_weighted_accuracy_ignores_masked_examples():
    model = tiny_model()
    x, y = data()
    pred = model.predict(x, verbose=0)
    # make the labels agree with the prediction on examples 0-3 and disagree on 4-7
    ya = np.eye(3, dtype="float32")[pred["a"].argmax(-1)]
    ya[4:] = np.roll(ya[4:], 1, axis=-1)
    w = {"a": np.array([1, 1, 1, 1, 0, 0, 0, 0], "float32"), "b": np.ones(8, "float32")}
    logs = model.evaluate(x, {"a": ya, "b": y["b"]}, sample_weight=w, return_dict=True, verbose=0)
    assert logs["a_accuracy"] == 1.0
    unweighted = model.evaluate(x, {"a": ya, "b": y["b"]}, return_dict=True, verbose=0)
    assert unweighted["a_accuracy"] == 0.5


def test_mean_head_accuracy_callback_and_helpers():
    logs = {"a_accuracy": 0.5, "b_accuracy": 1.0, "val_a_accuracy": 0.25, "val_b_accuracy": 0.75}
    M.MeanHeadAccuracy(HEADS).on_epoch_end(0, logs)
    assert logs["mean_accuracy"] == 0.75
    assert logs["val_mean_accuracy"] == 0.5
    assert M.per_head_accuracy(logs, HEADS, "val_") == {"a": 0.25, "b": 0.75}
    assert M.mean_accuracy({}, HEADS) is None


def test_many_class_heads_get_top_k():
    big = Head("category", tuple(f"c{i}" for i in range(50)))
    names = [m.name for m in M.head_metrics([big, HEADS[0]])["category"]]
    # Keras prefixes them with the output name
    assert names == ["accuracy", "balanced_accuracy", "top3", "top5"]
    assert [m.name for m in M.head_metrics([big, HEADS[0]])["a"]] == [
        "accuracy",
        "balanced_accuracy",
    ]
    # a single-output model gets no prefix from Keras: the metrics carry the head name
    names = [m.name for m in M.head_metrics([big])["category"]]
    assert names == [
        "category_accuracy",
        "category_balanced_accuracy",
        "category_top3",
        "category_top5",
    ]


def test_loss_weight_overrides_and_bad_values():
    assert L.loss_weights(HEADS, {"a": 1.5}) == {"a": 1.5, "b": 2.0}
    with pytest.raises(ValueError, match="unknown head 'c'"):
        L.loss_weights(HEADS, {"c": 1.0})
    with pytest.raises(ValueError, match="must be >= 0, got -1"):
        L.loss_weights(HEADS, {"a": -1})
    with pytest.raises(ValueError, match="gamma must be >= 0, got -2"):
        L.focal_losses(HEADS, gamma=-2)
