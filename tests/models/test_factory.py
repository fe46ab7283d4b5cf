"""Tests for fashion_keras.models.create_model: a classifier from a backbone and its weights."""

from __future__ import annotations

import json
import logging

import keras
import numpy as np
import pytest

from fashion_keras.heads import get_heads
from fashion_keras.models import IMAGENET_MEAN, IMAGENET_STD, MultiHeadClassifier, create_model
from fashion_keras.models import checkpoints as C
from fashion_keras.models.backbones import get_backbone

MEAN_01, STD_01 = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
MEAN_255, STD_255 = (127.5, 102.0, 76.5), (51.0, 63.75, 76.5)


def _write_checkpoint(path, seed: int = 7, backbone: str = "seresnet_tiny") -> str:
    """A timm-layout checkpoint with random weights (and a classifier) at ``path``."""
    rng = np.random.default_rng(seed)
    state = {
        k: (rng.uniform(0.5, 1.5, s) if k.endswith("running_var") else rng.normal(0, 0.1, s))
        for k, s in C.expected_keys(get_backbone(backbone)).items()
    }
    state["fc.weight"] = rng.normal(size=(10, 512))
    state["fc.bias"] = np.zeros(10)
    C.save_state_dict({k: v.astype("float32") for k, v in state.items()}, str(path))
    return str(path)


def _pretrained_cfg(size: int) -> dict:
    return {
        "architecture": "seresnet_tiny",
        "pretrained_cfg": {"mean": MEAN_01, "std": STD_01, "input_size": [3, size, size]},
    }


def _backbone_equals_file(model: MultiHeadClassifier, path: str) -> bool:
    want = C.read_state_dict(path)
    got = C.backbone_state_dict(model.backbone)
    return all(np.array_equal(got[k], want[k]) for k in C.expected_keys(model.backbone))


def _normalize(model: MultiHeadClassifier) -> tuple[list[float], list[float]]:
    layer = model.get_layer("normalize")
    return layer.mean, layer.std


def test_without_weights_imagenet_statistics_and_224_px() -> None:
    model = create_model("seresnet_tiny", "deepfashion6")
    assert isinstance(model, MultiHeadClassifier)
    assert model.image_size == 224 and tuple(model.inputs[0].shape) == (None, 224, 224, 3)
    assert model.heads == get_heads("deepfashion6")
    mean, std = _normalize(model)
    np.testing.assert_allclose(mean, IMAGENET_MEAN)
    np.testing.assert_allclose(std, IMAGENET_STD)
    assert model.preprocessing is None


def test_checkpoint_with_sidecar_sets_statistics_size_and_weights(tmp_path, caplog) -> None:
    path = _write_checkpoint(tmp_path / "tiny.safetensors")
    (tmp_path / "tiny.json").write_text(json.dumps(_pretrained_cfg(96)))
    with caplog.at_level(logging.INFO, logger="fashion_keras"):
        model = create_model(
            "seresnet_tiny",
            "fashionai8",
            weights=path,
            fc_layers=1,
            fc_units=16,
            dropout=0.1,
            preprocessing={"bbox_margin": 0.2},
        )
    assert model.image_size == 96 and tuple(model.inputs[0].shape) == (None, 96, 96, 3)
    mean, std = _normalize(model)
    np.testing.assert_allclose(mean, MEAN_255)
    np.testing.assert_allclose(std, STD_255)
    assert _backbone_equals_file(model, path)
    assert model.get_layer("fc1").units == 16 and model.get_layer("fc1_dropout").rate == 0.1
    assert model.preprocessing == {"bbox_margin": 0.2}
    loaded = len(model.backbone.weights)
    assert f"{path}: loaded {loaded} tensors; ignored the ImageNet classifier" in caplog.text
    assert f"from {tmp_path / 'tiny.json'}" in caplog.text


def test_timm_config_json_and_an_explicit_image_size(tmp_path, caplog) -> None:
    """The Hugging Face layout: model.safetensors + config.json; image_size overrides the size."""
    folder = tmp_path / "seresnet_tiny.x_in1k"
    folder.mkdir()
    path = _write_checkpoint(folder / "model.safetensors", seed=3)
    (folder / "config.json").write_text(json.dumps(_pretrained_cfg(96)))
    with caplog.at_level(logging.INFO, logger="fashion_keras"):
        model = create_model("seresnet_tiny", "deepfashion6", weights=path, image_size=64)
    assert model.image_size == 64
    np.testing.assert_allclose(_normalize(model)[0], MEAN_255)
    assert _backbone_equals_file(model, path)
    assert "was trained at 96 px" in caplog.text and "building at 64 px" in caplog.text


def test_imagenet_weights_from_the_keras_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(C.CheckpointError, match="no ImageNet weights for backbone 'seresnet_tiny'"):
        create_model("seresnet_tiny", "deepfashion6", weights="imagenet")
    source = get_backbone("seresnet_tiny")
    C.load_state_dict(source, C.read_state_dict(_write_checkpoint(tmp_path / "t.safetensors")))
    (tmp_path / "models").mkdir()
    source.save_weights(str(tmp_path / "models" / "seresnet_tiny.weights.h5"))
    model = create_model("seresnet_tiny", "deepfashion6", weights="imagenet")
    assert model.image_size == 224  # timm's default pretrained_cfg: no config beside the file
    np.testing.assert_allclose(_normalize(model)[0], IMAGENET_MEAN)
    for a, b in zip(source.weights, model.backbone.weights, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


def test_bad_checkpoints_raise_checkpoint_error(tmp_path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(C.CheckpointError, match=f"{bad}: not a readable safetensors file"):
        create_model("seresnet_tiny", "deepfashion6", weights=str(bad))
    other = _write_checkpoint(tmp_path / "rx.safetensors", backbone="seresnext50_32x4d")
    with pytest.raises(C.CheckpointError, match="matches backbone\\(s\\): seresnext50_32x4d"):
        create_model("seresnet_tiny", "deepfashion6", weights=other)
    with pytest.raises(C.CheckpointError, match="no such file"):
        create_model("seresnet_tiny", "deepfashion6", weights=str(tmp_path / "none.safetensors"))
    bad_cfg = _write_checkpoint(tmp_path / "cfg.safetensors")
    (tmp_path / "cfg.json").write_text(json.dumps({"pretrained_cfg": {"std": [1, 2]}}))
    with pytest.raises(C.CheckpointError, match="std = \\[1, 2\\] must be a list of 3"):
        create_model("seresnet_tiny", "deepfashion6", weights=bad_cfg)


def test_unknown_backbone_fails_before_looking_for_weights() -> None:
    with pytest.raises(ValueError, match="unknown backbone 'resnet9000'; expected one of"):
        create_model("resnet9000", "deepfashion6", weights="imagenet")
