"""Tests for fashion_keras.optimizers (per-variable learning-rate multipliers)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from fashion_keras.training.optimizers import (
    LayerwiseAdam,
    LayerwiseAdamW,
    LayerwiseSGD,
    make_optimizer,
)

KWARGS = {
    "adamw": {"learning_rate": 0.01, "weight_decay": 0.1},
    "adam": {"learning_rate": 0.01},
    "sgd": {"learning_rate": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1},
}


def _model(freeze_a: bool = False) -> keras.Model:
    keras.utils.set_random_seed(0)
    inp = keras.Input((4,))
    a = keras.layers.Dense(3, name="a")
    out = keras.layers.Dense(2, name="b")(a(inp))
    a.trainable = not freeze_a
    return keras.Model(inp, out)


def _train(model: keras.Model, optimizer: keras.optimizers.Optimizer) -> list[np.ndarray]:
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    model.compile(optimizer, loss="mse")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 4)).astype("float32"), rng.normal(size=(16, 2)).astype("float32")
    model.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0)
    return [keras.ops.convert_to_numpy(w) for w in model.weights]


@pytest.mark.parametrize("name", sorted(KWARGS))
def test_uniform_factor_equals_scaled_learning_rate(name: str) -> None:
    kwargs = KWARGS[name]
    scaled = {**kwargs, "learning_rate": kwargs["learning_rate"] * 0.3}
    want = _train(_model(), make_optimizer(name, **scaled))
    got = _train(_model(), make_optimizer(name, [(".*", 0.3)], **kwargs))
    for w, g in zip(want, got, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    # decay is scaled too: a run at the unscaled rate differs
    plain = _train(_model(), make_optimizer(name, **kwargs))
    assert not np.allclose(plain[0], got[0])


@pytest.mark.parametrize("name", sorted(KWARGS))
def test_zero_factor_freezes_only_the_matched_layer(name: str) -> None:
    start = [keras.ops.convert_to_numpy(w) for w in _model().weights]
    got = _train(_model(), make_optimizer(name, [("^a/", 0.0), ("^zzz", 5.0)], **KWARGS[name]))
    np.testing.assert_array_equal(got[0], start[0])  # a/kernel
    np.testing.assert_array_equal(got[1], start[1])  # a/bias
    # layer b trains exactly as with layer a frozen (same gradients, same optimizer state)
    want = _train(_model(freeze_a=True), make_optimizer(name, **KWARGS[name]))
    np.testing.assert_allclose(got[2], want[2], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[3], want[3], rtol=1e-5, atol=1e-6)


def test_first_matching_pattern_wins() -> None:
    opt = LayerwiseAdamW(lr_multipliers=[("^b/kernel", 2.0), ("^b/", 0.5)])
    model = _model()
    factors = {v.path: opt.multiplier_for(v) for v in model.trainable_variables}
    assert factors == {"a/kernel": 1.0, "a/bias": 1.0, "b/kernel": 2.0, "b/bias": 0.5}


def test_serialization_keeps_multipliers(tmp_path) -> None:
    for cls in (LayerwiseAdamW, LayerwiseAdam, LayerwiseSGD):
        opt = cls(learning_rate=0.002, lr_multipliers=[("stem", 0.1)])
        clone = cls.from_config(opt.get_config())
        assert clone.lr_multipliers == [("stem", 0.1)]
        assert keras.saving.get_registered_name(cls) == f"fashion_keras>{cls.__name__}"
    model = _model()
    _train(model, LayerwiseAdamW(learning_rate=0.01, lr_multipliers=[("^a/", 0.25)]))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.optimizer, LayerwiseAdamW)
    assert loaded.optimizer.lr_multipliers == [("^a/", 0.25)]


@pytest.mark.parametrize(
    ("pairs", "match"),
    [
        ([("x", -1.0)], "factor for 'x' is -1.0"),
        ([("(", 1.0)], "bad regex '\\('"),
        ([("x", 1.0, 2.0)], "must be a \\(regex, factor\\) pair"),
    ],
)
def test_bad_multipliers(pairs, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LayerwiseAdamW(lr_multipliers=pairs)


def test_make_optimizer_classes() -> None:
    assert type(make_optimizer("adamw", learning_rate=0.1)) is keras.optimizers.AdamW
    assert isinstance(make_optimizer("sgd", [("a", 2.0)], learning_rate=0.1), LayerwiseSGD)
    with pytest.raises(ValueError, match="unknown optimizer 'lamb'"):
        make_optimizer("lamb")
