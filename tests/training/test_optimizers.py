"""Tests for fashion_keras.training.optimizers (per-variable learning-rate multipliers, the
one-cycle schedule)."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from fashion_keras.training import phases
from fashion_keras.training.config import TrainConfig
from fashion_keras.training.optimizers import (
    LayerwiseAdam,
    LayerwiseAdamW,
    LayerwiseSGD,
    OneCycle,
    build_optimizer,
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


# ------------------------------------------------------------------ one-cycle schedule


def _fastai_one_cycle(step: int, total: int, peak: float, pct: float, div: float) -> float:
    """fastai's combined_cos(pct, peak / div, peak, peak / 1e5) at position step / total."""
    pos = step / total

    def cos(start: float, end: float, p: float) -> float:
        return start + (1 + math.cos(math.pi * (1 - p))) * (end - start) / 2

    if pos < pct:
        return cos(peak / div, peak, pos / pct)
    return cos(peak, peak / 1e5, (pos - pct) / (1 - pct))


def _lr(schedule: keras.optimizers.schedules.LearningRateSchedule, step: int) -> float:
    return float(keras.ops.convert_to_numpy(schedule(step)))


@pytest.mark.parametrize(("pct", "div"), [(0.25, 25.0), (0.3, 5.0), (0.99, 25.0), (0.0, 25.0)])
def test_one_cycle_follows_fastai_closed_form(pct: float, div: float) -> None:
    total, peak = 200, 4e-3
    sched = OneCycle(peak, total, pct_start=pct, div=div)
    assert _lr(sched, 0) == pytest.approx(peak / div if pct else peak, rel=1e-5)
    assert _lr(sched, round(pct * total)) == pytest.approx(peak, rel=1e-5)
    assert _lr(sched, total) == pytest.approx(peak / 1e5, rel=1e-4)
    assert _lr(sched, 10 * total) == pytest.approx(peak / 1e5, rel=1e-4)  # stays at the end
    for step in range(total):
        assert _lr(sched, step) == pytest.approx(
            _fastai_one_cycle(step, total, peak, pct, div), rel=1e-4, abs=1e-12
        ), step


def test_one_cycle_rises_then_falls() -> None:
    sched = OneCycle(1e-2, 100)
    values = [_lr(sched, s) for s in range(101)]
    top = int(np.argmax(values))
    assert top == 25
    assert all(a < b for a, b in zip(values[:top], values[1 : top + 1], strict=True))
    assert all(a > b for a, b in zip(values[top:-1], values[top + 1 :], strict=True))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_learning_rate": 0.0}, "max_learning_rate = 0.0 must be > 0"),
        ({"total_steps": 0}, "total_steps = 0 must be an integer >= 1"),
        ({"pct_start": 1.0}, r"pct_start = 1.0 must be in \[0, 1\)"),
        ({"div": -1.0}, "div = -1.0 must be > 0"),
        ({"div_final": 0.0}, "div_final = 0.0 must be > 0"),
    ],
)
def test_one_cycle_rejects_bad_values(kwargs: dict, match: str) -> None:
    args = {"max_learning_rate": 1e-3, "total_steps": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        OneCycle(**args)


def test_one_cycle_serialisation_round_trip(tmp_path) -> None:
    sched = OneCycle(3e-3, 40, pct_start=0.3, div=5.0, div_final=1e4)
    assert keras.saving.get_registered_name(OneCycle) == "fashion_keras>OneCycle"
    clone = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(sched))
    assert isinstance(clone, OneCycle) and clone.get_config() == sched.get_config()
    # inside a saved model's optimizer (checkpoints, backups, resume)
    model = _model()
    _train(model, LayerwiseAdamW(learning_rate=sched, lr_multipliers=[("^a/", 0.1)]))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    got = loaded.optimizer._learning_rate
    assert isinstance(got, OneCycle) and got.get_config() == sched.get_config()
    step = int(keras.ops.convert_to_numpy(loaded.optimizer.iterations))
    assert step == 6  # 3 epochs x 2 batches
    assert _lr(got, step) == pytest.approx(_lr(sched, step))


def _phase_cfg(**kw) -> TrainConfig:
    base = dict(
        backbone="seresnet_tiny", image_size=32, batch_size=8, learning_rate=5e-3, epochs=6,
        lr_schedule="one_cycle", output_dir="unused",
    )  # fmt: skip
    return TrainConfig(**{**base, **kw}).resolve()


def test_build_optimizer_one_cycle_per_phase() -> None:
    """One phase: fit_one_cycle's defaults over the whole run; --freeze-epochs: fine_tune's
    frozen cycle (pct 0.99) then its unfrozen one (pct 0.3, div 5 from --fine-tune-lr)."""
    steps = 7
    (single,) = phases.plan_phases(_phase_cfg())
    (frozen_only,) = phases.plan_phases(_phase_cfg(freeze_backbone=True))
    frozen, fine = phases.plan_phases(_phase_cfg(freeze_epochs=1, fine_tune_lr=2.5e-3))
    want = {
        "single": (single, _phase_cfg(), 5e-3, 6 * steps, 0.25, 25.0),
        "frozen_only": (frozen_only, _phase_cfg(freeze_backbone=True), 5e-3, 42, 0.25, 25.0),
        "frozen": (frozen, _phase_cfg(freeze_epochs=1), 5e-3, 1 * steps, 0.99, 25.0),
        "fine": (fine, _phase_cfg(freeze_epochs=1, fine_tune_lr=2.5e-3), 2.5e-3, 35, 0.3, 5.0),
    }
    for name, (phase, cfg, peak, total, pct, div) in want.items():
        opt = build_optimizer(phases.phase_config(cfg, phase).optimization, steps)
        sched = opt._learning_rate
        assert isinstance(sched, OneCycle), name
        got = (sched.max_learning_rate, sched.total_steps, sched.pct_start, sched.div)
        assert got == pytest.approx((peak, total, pct, div)), name
        assert sched.div_final == 1e5


def test_one_cycle_runs_per_phase_in_fit_phases() -> None:
    """Through fit_phases, each phase's optimizer starts its own cycle: the rate applied at the
    first step of each phase is that phase's peak / div."""
    from fashion_keras.heads import get_heads
    from fashion_keras.models import build_model
    from fashion_keras.training import trainer

    heads = get_heads("deepfashion6")
    cfg = _phase_cfg(epochs=3, freeze_epochs=1, fine_tune_lr=2e-3, batch_size=4)
    model = build_model("seresnet_tiny", heads, image_size=32)
    first_lrs: list[float] = []

    class FirstLR(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            opt = self.model.optimizer
            if int(keras.ops.convert_to_numpy(opt.iterations)) == 0:
                first_lrs.append(float(keras.ops.convert_to_numpy(opt.learning_rate)))

    rng = np.random.default_rng(0)
    n = 8
    x = rng.uniform(0, 255, (n, 32, 32, 3)).astype("float32")
    y = {h.name: np.eye(h.num_classes, dtype="float32")[np.zeros(n, int)] for h in heads}
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(4).repeat()
    phases.fit_phases(
        model, cfg, lambda c: trainer.compile_model(model, heads, c, 2), data,
        callbacks=[FirstLR()], steps_per_epoch=2, shuffle=False, verbose=0,
    )  # fmt: skip
    assert first_lrs == pytest.approx([5e-3 / 25, 2e-3 / 5], rel=1e-5)
