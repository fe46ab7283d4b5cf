"""Fine-tuning: --weights, --freeze-backbone, --freeze-epochs (training.phases) and
--lr-multipliers (training.optimizers) (fast ones on in-memory batches, end-to-end ones marked slow)."""

from __future__ import annotations

import csv
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from fashion_keras import train as cli
from fashion_keras.heads import get_heads
from fashion_keras.models import build_model, checkpoints, get_backbone
from fashion_keras.models.checkpoints import cli as checkpoints_cli
from fashion_keras.training import optimizers, phases
from fashion_keras.training import trainer as T
from fashion_keras.training.config import TrainConfig, parse_lr_multipliers
from fashion_keras.training.optimizers import LayerwiseAdamW

SIZE = 32
HEADS = get_heads("deepfashion6")


def _np(x) -> np.ndarray:
    return keras.ops.convert_to_numpy(x)


def _snapshot(layer: keras.Layer) -> list[np.ndarray]:
    return [_np(w).copy() for w in layer.weights]


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def _batches(n: int = 32, batch: int = 8, seed: int = 0) -> tf.data.Dataset:
    """(image 0-255, {head: one-hot}, {head: weight}) batches, as the pipeline makes them."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (n, SIZE, SIZE, 3)).astype("float32")
    y = {
        h.name: np.eye(h.num_classes, dtype="float32")[rng.integers(0, h.num_classes, n)]
        for h in HEADS
    }
    w = {h.name: np.ones(n, "float32") for h in HEADS}
    return tf.data.Dataset.from_tensor_slices((x, y, w)).batch(batch).repeat()


def _cfg(**kw) -> TrainConfig:
    base = dict(
        backbone="seresnet_tiny",
        image_size=SIZE,
        batch_size=8,
        epochs=1,
        learning_rate=3e-3,
        output_dir="unused",
        verbose=0,
    )
    return TrainConfig(**{**base, **kw}).resolve()


def _fit(model: keras.Model, cfg: TrainConfig, callbacks=(), steps: int = 3):
    calls: list[TrainConfig] = []

    def compile_for(phase_cfg: TrainConfig) -> None:
        calls.append(phase_cfg)
        T.compile_model(model, HEADS, phase_cfg, steps)

    history = phases.fit_phases(
        model, cfg, compile_for, _batches(), callbacks=list(callbacks), steps_per_epoch=steps,
        shuffle=False, verbose=0,
    )  # fmt: skip
    return history, calls


# ------------------------------------------------------------------ lr multiplier parsing


def test_parse_lr_multipliers() -> None:
    got = parse_lr_multipliers("stem=0.01, layer4=0.5,stages=0.1,heads=2")
    assert got == {
        "stem": 0.01,
        "layer1": 0.1,
        "layer2": 0.1,
        "layer3": 0.1,
        "layer4": 0.5,  # explicit stage beats "stages" whatever the order
        "heads": 2.0,
    }
    assert parse_lr_multipliers(None) == {}
    assert parse_lr_multipliers("layer2=0") == {"layer2": 0.0}


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("neck=0.1", "entry 'neck=0.1' must be GROUP=FACTOR"),
        ("stem", "entry 'stem' must be GROUP=FACTOR"),
        ("stem=-1", "factor '-1' of 'stem' must be a number >= 0"),
        ("heads=fast", "factor 'fast' of 'heads'"),
        ("layer5=1", "entry 'layer5=1'"),
    ],
)
def test_parse_lr_multipliers_errors(spec: str, match: str) -> None:
    with pytest.raises(ValueError, match=match) as e:
        parse_lr_multipliers(spec)
    assert "lr_multipliers" in str(e.value)


def test_groups_and_patterns_cover_the_right_variables() -> None:
    model = build_model("seresnet_tiny", HEADS, image_size=SIZE, fc_layers=1, fc_units=16)
    groups = optimizers.layer_groups(model)
    assert groups["stem"][:3] == ["conv1_pad", "conv1", "bn1"]
    assert set(groups["heads"]) == {"fc1"} | {h.name for h in HEADS}
    assert all(n.startswith("layer3_") for n in groups["layer3"])
    pairs = optimizers.lr_multiplier_patterns(model, "stem=0.01,stages=0.1,layer4=0.5")
    opt = LayerwiseAdamW(lr_multipliers=pairs)
    factor = {v.path: opt.multiplier_for(v) for v in model.trainable_variables}
    assert factor["conv1/kernel"] == 0.01 and factor["bn1/gamma"] == 0.01
    assert factor["layer1_0_conv1/kernel"] == 0.1
    assert factor["layer2_0_se/fc1/kernel"] == 0.1
    assert factor["layer4_0_downsample_0/kernel"] == 0.5
    assert factor["fc1/kernel"] == 1.0 and factor["sleeve/bias"] == 1.0
    assert len(factor) == len(model.trainable_variables)
    assert optimizers.lr_multiplier_patterns(model, "stem=1,heads=1") == []
    assert optimizers.lr_multiplier_patterns(model, None) == []


# ------------------------------------------------------------------ config and schedule


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (
            {"freeze_epochs": 3, "epochs": 3},
            "'freeze_epochs' = 3 must be smaller than 'epochs' = 3",
        ),
        ({"freeze_epochs": 1, "epochs": 3, "freeze_backbone": True}, "exclude each other"),
        ({"freeze_epochs": -1}, "'freeze_epochs' must be an integer >= 0, got -1"),
        ({"fine_tune_lr": 0.0}, "'fine_tune_lr' must be > 0, got 0.0"),
        ({"lr_multipliers": "stem=x"}, "'lr_multipliers' = 'stem=x'"),
    ],
)
def test_config_validation(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _cfg(**kw)


def test_plan_phases() -> None:
    (one,) = phases.plan_phases(_cfg(epochs=4))
    assert (one.initial_epoch, one.epochs, one.frozen, one.learning_rate) == (0, 4, False, 3e-3)
    (frozen,) = phases.plan_phases(_cfg(epochs=4, freeze_backbone=True))
    assert frozen.frozen and frozen.epochs == 4
    p1, p2 = phases.plan_phases(_cfg(epochs=5, freeze_epochs=2))
    assert (p1.name, p1.initial_epoch, p1.epochs, p1.frozen, p1.learning_rate) == (
        "frozen", 0, 2, True, 3e-3,
    )  # fmt: skip
    assert (p2.name, p2.initial_epoch, p2.epochs, p2.frozen) == ("fine_tune", 2, 5, False)
    assert p2.learning_rate == pytest.approx(3e-4)  # default: learning_rate / 10
    _, p2 = phases.plan_phases(_cfg(epochs=5, freeze_epochs=2, fine_tune_lr=1e-5))
    assert p2.learning_rate == 1e-5 and p2.num_epochs == 3


# ------------------------------------------------------------------ training modes (fast)


def test_frozen_backbone_weights_and_bn_statistics_do_not_change() -> None:
    model = build_model("seresnet_tiny", HEADS, image_size=SIZE)
    backbone_before = _snapshot(model.backbone)
    heads_before = _snapshot(model.get_layer("sleeve"))
    history, calls = _fit(model, _cfg(freeze_backbone=True, epochs=2))
    assert len(history.history["loss"]) == 2
    assert not model.backbone.trainable
    assert all(not layer.trainable for layer in model.backbone.layers)
    assert _same(_snapshot(model.backbone), backbone_before)  # incl. BN moving statistics
    assert not _same(_snapshot(model.get_layer("sleeve")), heads_before)
    trainable = {v.path for v in model.trainable_variables}
    assert not any(p.startswith(("conv1/", "bn1/", "layer")) for p in trainable)
    assert calls[0].optimization.epochs == 2


def test_unfrozen_control_moves_bn_statistics() -> None:
    model = build_model("seresnet_tiny", HEADS, image_size=SIZE)
    bn = model.backbone.get_layer("layer2_0_bn1")
    before = _np(bn.moving_mean).copy()
    _fit(model, _cfg())
    assert not np.array_equal(_np(bn.moving_mean), before)


class _Snapshots(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.backbone: list[list[np.ndarray]] = []
        self.lrs: list[float] = []

    def on_epoch_end(self, epoch, logs=None) -> None:
        self.backbone.append(_snapshot(self.model.backbone))
        self.lrs.append(float(_np(self.model.optimizer.learning_rate)))


def test_two_phase_schedule() -> None:
    model = build_model("seresnet_tiny", HEADS, image_size=SIZE)
    start = _snapshot(model.backbone)
    snaps = _Snapshots()
    cfg = _cfg(epochs=3, freeze_epochs=1, fine_tune_lr=1e-4, lr_schedule="constant")
    history, calls = _fit(model, cfg, callbacks=[snaps])
    assert len(history.history["loss"]) == 3
    phase_settings = [(c.optimization.epochs, c.optimization.learning_rate) for c in calls]
    assert phase_settings == [(1, 3e-3), (2, 1e-4)]
    assert _same(snaps.backbone[0], start)  # frozen epoch: weights and BN statistics fixed
    assert not _same(snaps.backbone[1], start)  # fine-tuning moves them
    assert snaps.lrs == pytest.approx([3e-3, 1e-4, 1e-4])
    assert model.backbone.trainable


def test_discriminative_rates_through_compile_model() -> None:
    model = build_model("seresnet_tiny", HEADS, image_size=SIZE)
    stem = _np(model.backbone.get_layer("conv1").kernel).copy()
    layer1 = _np(model.backbone.get_layer("layer1_0_conv2").kernel).copy()
    layer2 = _np(model.backbone.get_layer("layer2_0_conv2").kernel).copy()
    _fit(model, _cfg(lr_multipliers="stem=0,layer1=0"))
    assert isinstance(model.optimizer, LayerwiseAdamW)
    np.testing.assert_array_equal(_np(model.backbone.get_layer("conv1").kernel), stem)
    np.testing.assert_array_equal(_np(model.backbone.get_layer("layer1_0_conv2").kernel), layer1)
    assert not np.array_equal(_np(model.backbone.get_layer("layer2_0_conv2").kernel), layer2)


# ------------------------------------------------------------------ from a checkpoint file


def _tiny_checkpoint(tmp_path, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3)) -> str:
    """A timm-layout seresnet_tiny checkpoint (random weights) with its preprocessing."""
    backbone = get_backbone("seresnet_tiny")
    rng = np.random.default_rng(7)
    state = {
        k: (rng.uniform(0.5, 1.5, s) if k.endswith("running_var") else rng.normal(0, 0.1, s))
        for k, s in checkpoints.expected_keys(backbone).items()
    }
    path = str(tmp_path / "tiny.safetensors")
    checkpoints.save_state_dict({k: v.astype("float32") for k, v in state.items()}, path)
    cfg = {"architecture": "seresnet_tiny", "pretrained_cfg": {"mean": mean, "std": std}}
    (tmp_path / "tiny.json").write_text(json.dumps(cfg))
    return path


def _backbone_matches_checkpoint(model: keras.Model, path: str) -> bool:
    want = checkpoints.read_state_dict(path)
    got = checkpoints.backbone_state_dict(model.backbone)
    return all(np.array_equal(got[k], want[k]) for k in want)


def test_build_model_from_config_uses_checkpoint_and_its_preprocessing(tmp_path) -> None:
    path = _tiny_checkpoint(tmp_path)
    model = T.build_model(_cfg(weights=path), HEADS)
    assert _backbone_matches_checkpoint(model, path)
    norm = model.get_layer("normalize")
    np.testing.assert_allclose(norm.mean, [127.5, 102.0, 76.5])
    np.testing.assert_allclose(norm.std, [51.0, 63.75, 76.5])


def test_checkpoint_input_size_is_the_default_on_real_data(tmp_path) -> None:
    path = _tiny_checkpoint(tmp_path)
    cfg = {"architecture": "seresnet_tiny", "pretrained_cfg": {"input_size": [3, 96, 96]}}
    (tmp_path / "tiny.json").write_text(json.dumps(cfg))
    real = TrainConfig(backbone="seresnet_tiny", weights=path, data_dir=str(tmp_path))
    assert T.resolve_config(real).model.image_size == 96
    given = real.replace(image_size=64)
    assert T.resolve_config(given).model.image_size == 64
    demo = TrainConfig(backbone="seresnet_tiny", weights=path)
    assert T.resolve_config(demo).model.image_size == 64  # demo keeps its preset's 64 px


def test_cli_reports_missing_weights(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    # nothing listens on port 9: the download fails at once and never leaves this machine
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(SystemExit) as e:
        cli.main(["--backbone", "seresnet50", "--weights", "imagenet"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "models" / "seresnet50.a1_in1k.safetensors") in err
    with pytest.raises(SystemExit):
        cli.main(["--weights", str(tmp_path / "nope.safetensors")])
    assert "no such file" in capsys.readouterr().err


# ------------------------------------------------------------------ end to end (slow)


def _run_config(small_demo, tmp_path, **kw) -> TrainConfig:
    base = dict(
        heads="deepfashion6",
        data_dir=small_demo["manual_dir"],
        tfds_data_dir=small_demo["tfds_dir"],
        backbone="seresnet_tiny",
        image_size=SIZE,
        batch_size=16,
        epochs=2,
        learning_rate=1e-3,
        output_dir=str(tmp_path / "run"),
        verbose=0,
    )
    return TrainConfig(**{**base, **kw})


@pytest.mark.slow
def test_cli_trains_frozen_from_a_converted_checkpoint(small_demo, tmp_path) -> None:
    ckpt = _tiny_checkpoint(tmp_path)
    converted = str(tmp_path / "tiny.weights.h5")
    assert checkpoints_cli.main(["seresnet_tiny", ckpt, "-o", converted]) == 0
    argv = [
        "--data-dir", small_demo["manual_dir"], "--tfds-data-dir", small_demo["tfds_dir"],
        "--backbone", "seresnet_tiny", "--weights", converted, "--freeze-backbone",
        "--image-size", str(SIZE), "--batch-size", "16", "--epochs", "1",
        "--output-dir", str(tmp_path / "run"), "--verbose", "0",
    ]  # fmt: skip
    assert cli.main(argv) == 0
    model = keras.saving.load_model(tmp_path / "run" / "model.keras")
    assert _backbone_matches_checkpoint(model, ckpt)  # weights and BN statistics untouched
    np.testing.assert_allclose(model.get_layer("normalize").mean, [127.5, 102.0, 76.5], rtol=1e-6)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"]["weights"] == converted
    assert saved["optimization"]["freeze_backbone"] is True


@pytest.mark.slow
def test_two_phase_training_from_checkpoint(small_demo, tmp_path) -> None:
    ckpt = _tiny_checkpoint(tmp_path)
    cfg = _run_config(
        small_demo, tmp_path, weights=ckpt, epochs=2, freeze_epochs=1,
        lr_multipliers="stem=0.1,stages=0.5",
        final_weights="last",  # the best epoch may be the frozen one; phase 2's is checked
    )  # fmt: skip
    result = T.train(cfg, export=False)
    assert len(result.history["loss"]) == 2
    assert not _backbone_matches_checkpoint(result.model, ckpt)  # fine-tuned in phase 2
    assert isinstance(result.model.optimizer, LayerwiseAdamW)
    assert not os.path.exists(tmp_path / "run" / "backup")  # finished: backups removed


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt("simulated interruption")


class _Epochs(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.seen.append(epoch)


@pytest.mark.slow
def test_interrupted_two_phase_run_resumes_without_repeating_the_frozen_phase(
    small_demo, tmp_path
) -> None:
    cfg = _run_config(small_demo, tmp_path, weights=_tiny_checkpoint(tmp_path), epochs=3)
    cfg = cfg.replace(freeze_epochs=1)
    with pytest.raises(KeyboardInterrupt):
        T.train(cfg, callbacks=[_Interrupt()], export=False)
    assert os.path.isdir(tmp_path / "run" / "backup" / "frozen")
    assert os.path.isdir(tmp_path / "run" / "backup" / "fine_tune")
    epochs = _Epochs()
    result = T.train(cfg, callbacks=[epochs], export=False)
    assert epochs.seen == [2]  # neither the frozen epoch 0 nor the fine-tune epoch 1 again
    assert len(result.history["loss"]) == 1
    with open(tmp_path / "run" / "history.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0, 1, 2]
    assert not os.path.exists(tmp_path / "run" / "backup" / "frozen")
