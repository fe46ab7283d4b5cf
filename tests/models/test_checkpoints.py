"""Tests for fashion_keras.models.checkpoints that need no PyTorch (timm: test_fidelity.py)."""

from __future__ import annotations

import json
import struct
import subprocess
import sys

import keras
import numpy as np
import pytest

from fashion_keras.models import IMAGENET_MEAN, Backbone, get_backbone
from fashion_keras.models import checkpoints as C
from fashion_keras.models.checkpoints import cli, files


def _np(x) -> np.ndarray:
    return keras.ops.convert_to_numpy(x)


def _random_state(backbone: Backbone, seed: int = 0) -> dict[str, np.ndarray]:
    """A timm-layout state dict with random values of the right shapes (+ a classifier)."""
    rng = np.random.default_rng(seed)
    state = {}
    for key, shape in C.expected_keys(backbone).items():
        if key.endswith("running_var"):
            state[key] = rng.uniform(0.5, 1.5, shape).astype("float32")
        else:
            state[key] = rng.normal(0, 0.1, shape).astype("float32")
    state["fc.weight"] = rng.normal(size=(1000, backbone.num_features)).astype("float32")
    state["fc.bias"] = np.zeros(1000, "float32")
    return state


@pytest.fixture(scope="module")
def tiny() -> Backbone:
    return get_backbone("seresnet_tiny", image_shape=(32, 32, 3))


def _legacy_tiny() -> Backbone:
    return Backbone(
        (1, 1), (16, 32), se=True, layout="legacy", stride_in_1x1=True, stem_width=8, name="lt"
    )


@pytest.mark.parametrize(
    ("layer", "key"),
    [
        ("conv1", "conv1"),
        ("bn1", "bn1"),
        ("layer0_conv1", "layer0.conv1"),
        ("layer1_0_conv2", "layer1.0.conv2"),
        ("layer3_12_bn3", "layer3.12.bn3"),
        ("layer1_0_downsample_0", "layer1.0.downsample.0"),
        ("layer2_0_downsample_1", "layer2.0.downsample.1"),
        ("layer1_0_se", "layer1.0.se"),
        ("layer1_0_se_module", "layer1.0.se_module"),
    ],
)
def test_torch_prefix(layer: str, key: str) -> None:
    assert C.torch_prefix(layer) == key


def test_expected_keys_timm_layout(tiny: Backbone) -> None:
    keys = C.expected_keys(tiny)
    assert keys["conv1.weight"] == (16, 3, 7, 7)
    assert keys["bn1.running_var"] == (16,)
    assert keys["layer1.0.se.fc1.weight"] == (8, 64, 1, 1)
    assert keys["layer1.0.se.fc1.bias"] == (8,)
    assert keys["layer2.0.downsample.0.weight"] == (128, 64, 1, 1)
    # every variable exactly once
    assert len(keys) == len(tiny.weights)
    rx = Backbone((1,), (16,), groups=4, base_width=16, se=True, stem_width=8)
    assert C.expected_keys(rx)["layer1.0.conv2.weight"] == (16, 4, 3, 3)  # grouped: O, I/g, kh, kw
    legacy = C.expected_keys(_legacy_tiny())
    assert "layer0.conv1.weight" in legacy and "layer1.0.se_module.fc2.bias" in legacy


def test_stem_conv_layout_matches_pytorch_cross_correlation() -> None:
    """The OIHW -> HWIO mapping computes PyTorch's conv (checked with plain numpy)."""
    b = Backbone((1,), (16,), stem_width=4)
    state = _random_state(b, seed=3)
    C.load_state_dict(b, state)
    x = np.random.default_rng(1).normal(size=(1, 12, 12, 3)).astype("float32")
    stem = keras.Model(b.input, b.get_layer("conv1").output)
    got = _np(stem(x))[0]
    w = state["conv1.weight"]  # (O, I, kh, kw)
    xp = np.pad(x[0], ((3, 3), (3, 3), (0, 0)))
    want = np.zeros((6, 6, 4), "float64")
    for i in range(6):
        for j in range(6):
            patch = xp[2 * i : 2 * i + 7, 2 * j : 2 * j + 7, :]  # (kh, kw, I)
            want[i, j] = np.einsum("hwc,ochw->o", patch, w)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_round_trip_export_import(tiny: Backbone, tmp_path) -> None:
    state = _random_state(tiny, seed=1)
    path = tmp_path / "tiny.safetensors"
    C.save_state_dict(state, str(path))
    target = get_backbone("seresnet_tiny", image_shape=(32, 32, 3))
    report = C.load_backbone_weights(target, str(path))
    assert report.loaded == len(target.weights)
    assert report.ignored == ["fc.bias", "fc.weight"]
    assert "ignored the ImageNet classifier (fc.bias, fc.weight)" in str(report)
    exported = C.backbone_state_dict(target)
    for key, value in state.items():
        if not key.startswith("fc."):
            np.testing.assert_array_equal(exported[key], value)
    assert exported["bn1.num_batches_tracked"].dtype == np.int64
    np.testing.assert_array_equal(
        _np(target.get_layer("bn1").moving_variance), state["bn1.running_var"]
    )


def test_legacy_round_trip_and_last_linear_ignored(tmp_path) -> None:
    b = _legacy_tiny()
    state = _random_state(b)
    state["last_linear.weight"] = state.pop("fc.weight")
    state["last_linear.bias"] = state.pop("fc.bias")
    path = tmp_path / "legacy.safetensors"
    C.save_state_dict(state, str(path))
    report = C.load_backbone_weights(_legacy_tiny(), str(path))
    assert report.ignored == ["last_linear.bias", "last_linear.weight"]


def test_se_fully_connected_weights_accepted(tiny: Backbone) -> None:
    state = _random_state(tiny)
    fc1 = state["layer2.0.se.fc1.weight"]
    state["layer2.0.se.fc1.weight"] = fc1[:, :, 0, 0]  # nn.Linear layout (out, in)
    target = get_backbone("seresnet_tiny", image_shape=(32, 32, 3))
    C.load_state_dict(target, state)
    kernel = _np(target.get_layer("layer2_0_se").fc1.kernel)
    np.testing.assert_array_equal(kernel[0, 0], fc1[:, :, 0, 0].T)


def test_module_prefix_and_num_batches_tracked(tiny: Backbone) -> None:
    state = {f"module.{k}": v for k, v in _random_state(tiny).items()}
    state["module.bn1.num_batches_tracked"] = np.array(7, np.int64)
    report = C.load_state_dict(get_backbone("seresnet_tiny"), state)
    assert "bn1.num_batches_tracked" in report.ignored
    assert "num_batches_tracked" not in str(report)


def test_error_lists_missing_unexpected_and_misshaped(tiny: Backbone, tmp_path) -> None:
    state = _random_state(tiny)
    del state["layer3.0.bn2.running_mean"]
    del state["layer4.0.se.fc2.bias"]
    state["layer9.0.conv1.weight"] = np.zeros((4, 4, 1, 1), "float32")
    state["layer1.0.conv2.weight"] = np.zeros((16, 8, 3, 3), "float32")
    path = tmp_path / "bad.safetensors"
    C.save_state_dict(state, str(path))
    target = get_backbone("seresnet_tiny", image_shape=(32, 32, 3))
    before = [_np(v).copy() for v in target.weights]
    with pytest.raises(C.CheckpointError) as e:
        C.load_backbone_weights(target, str(path))
    msg = str(e.value)
    assert str(path) in msg and "'seresnet_tiny'" in msg
    assert "missing keys (backbone variables the checkpoint lacks) (2)" in msg
    assert "layer3.0.bn2.running_mean [64]" in msg
    assert "layer4.0.se.fc2.bias [512]" in msg
    assert "unexpected keys (no backbone variable) (1)" in msg
    assert "layer9.0.conv1.weight [4, 4, 1, 1]" in msg
    assert "mis-shaped keys (1)" in msg
    assert "layer1.0.conv2.weight: checkpoint [16, 8, 3, 3], expected [16, 16, 3, 3]" in msg
    # all-or-nothing: nothing was assigned
    for b, v in zip(before, target.weights, strict=True):
        np.testing.assert_array_equal(b, _np(v))


def test_error_names_the_matching_preset() -> None:
    legacy = get_backbone("legacy_seresnet50")
    state = C.backbone_state_dict(legacy)
    assert C.matching_presets(state) == ["legacy_seresnet50"]
    assert C.describe_state_dict(state)["layout"] == "legacy"
    with pytest.raises(C.CheckpointError, match="matches backbone\\(s\\): legacy_seresnet50"):
        C.load_state_dict(get_backbone("seresnet50"), state, source="se_resnet50.pth")
    rx = C.backbone_state_dict(get_backbone("seresnext50_32x4d"))
    assert C.matching_presets(rx) == ["seresnext50_32x4d"]
    arch = C.describe_state_dict(rx)
    assert arch["groups"] == 32 and arch["base_width"] == 4 and arch["se"] is True


def test_unknown_architecture_is_described(tiny: Backbone) -> None:
    state = C.backbone_state_dict(Backbone((2, 1), (8, 16), se=True, stem_width=8))
    with pytest.raises(C.CheckpointError) as e:
        C.load_state_dict(tiny, state, source="x.safetensors")
    assert "stage_blocks': (2, 1)" in str(e.value)


def test_bfloat16_safetensors(tmp_path) -> None:
    """BF16 tensors (numpy has no bfloat16) are widened to float32."""
    values = np.array([1.0, -2.5, 3.140625], "float32")
    bf16 = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    header = json.dumps({"x": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]}}).encode()
    path = tmp_path / "bf16.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bf16)
    state = C.read_state_dict(str(path))
    assert state["x"].dtype == np.float32
    np.testing.assert_array_equal(state["x"], values)
    np.testing.assert_array_equal(files._read_safetensors_raw(str(path))["x"], values)


def test_unreadable_and_unknown_files(tmp_path) -> None:
    with pytest.raises(C.CheckpointError, match="does not exist"):
        C.read_state_dict(str(tmp_path / "none.safetensors"))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(C.CheckpointError, match=f"{bad}: not a readable safetensors file"):
        C.read_state_dict(str(bad))
    other = tmp_path / "model.onnx"
    other.write_bytes(b"x")
    with pytest.raises(C.CheckpointError, match="unknown checkpoint type"):
        C.read_state_dict(str(other))


def test_pth_without_torch_says_what_to_do(tmp_path, monkeypatch) -> None:
    path = tmp_path / "model.pth"
    path.write_bytes(b"PK")
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    with pytest.raises(C.CheckpointError, match="needs PyTorch") as e:
        C.read_state_dict(str(path))
    assert str(path) in str(e.value) and ".safetensors" in str(e.value)


def test_keras_weights_h5_round_trip_and_mismatch(tiny: Backbone, tmp_path) -> None:
    C.load_state_dict(tiny, _random_state(tiny, seed=5))
    path = tmp_path / "tiny.weights.h5"
    tiny.save_weights(str(path))
    target = get_backbone("seresnet_tiny", image_shape=(32, 32, 3))
    report = C.load_backbone_weights(target, str(path))
    assert report.loaded == len(target.weights)
    for a, b in zip(tiny.weights, target.weights, strict=True):
        np.testing.assert_array_equal(_np(a), _np(b))
    other = Backbone((1, 1, 1, 1), (16, 32, 64, 64), se=True, stem_width=16)
    with pytest.raises(C.CheckpointError) as e:
        C.load_backbone_weights(other, str(path))
    msg = str(e.value)
    assert f"Keras weights file {path}" in msg and "mis-shaped arrays" in msg
    assert "expected [1, 1, 256, 256]" in msg or "expected [256]" in msg


def test_default_preprocessing_follows_timm_cfg() -> None:
    pre = C.default_pretrained_config("seresnet50")
    np.testing.assert_allclose(pre.mean, (123.675, 116.28, 103.53))
    np.testing.assert_allclose(pre.std, (58.395, 57.12, 57.375))
    assert pre.input_size == 224 and pre.interpolation == "bicubic" and pre.crop_pct == 0.95
    legacy = C.default_pretrained_config("legacy_seresnet50")
    assert legacy.interpolation == "bilinear" and legacy.crop_pct == 0.875
    assert legacy.mean == pre.mean  # the Caffe ports use the same ImageNet mean/std in timm


def test_preprocessing_from_timm_config_json_and_sidecar(tmp_path) -> None:
    ckpt = tmp_path / "model.safetensors"
    ckpt.write_bytes(b"")
    cfg = {
        "architecture": "seresnet50",
        "pretrained_cfg": {
            "mean": [0.5, 0.5, 0.5],
            "std": [0.25, 0.25, 0.25],
            "input_size": [3, 256, 256],
            "interpolation": "bilinear",
        },
    }
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    pre = C.read_pretrained_config(str(ckpt), "seresnet50")
    assert pre.mean == (127.5, 127.5, 127.5) and pre.std == (63.75, 63.75, 63.75)
    assert pre.input_size == 256 and pre.source == str(tmp_path / "config.json")
    # <checkpoint>.json wins over config.json; Caffe-style BGR in [0, 255]
    bgr = {"pretrained_cfg": {"mean": [104, 117, 123], "std": [1, 1, 1], "input_range": [0, 255]}}
    bgr["pretrained_cfg"]["input_space"] = "BGR"
    (tmp_path / "model.json").write_text(json.dumps(bgr))
    pre = C.read_pretrained_config(str(ckpt), "seresnet50")
    assert pre.mean == (123.0, 117.0, 104.0) and pre.std == (1.0, 1.0, 1.0)
    assert pre.input_space == "BGR" and pre.source == str(tmp_path / "model.json")
    (tmp_path / "model.json").write_text(json.dumps({"pretrained_cfg": {"mean": [1, 2]}}))
    with pytest.raises(C.CheckpointError, match="mean = \\[1, 2\\] must be a list of 3"):
        C.read_pretrained_config(str(ckpt), "seresnet50")


def test_bgr_checkpoint_stem_is_flipped(tiny: Backbone) -> None:
    state = _random_state(tiny, seed=2)
    rgb = get_backbone("seresnet_tiny")
    bgr = get_backbone("seresnet_tiny")
    C.load_state_dict(rgb, state)
    C.load_state_dict(bgr, state, input_space="BGR")
    k_rgb, k_bgr = _np(rgb.get_layer("conv1").kernel), _np(bgr.get_layer("conv1").kernel)
    np.testing.assert_array_equal(k_bgr, k_rgb[:, :, ::-1, :])
    # the BGR-trained stem on RGB input == the original stem on BGR input
    x = np.random.default_rng(0).normal(size=(1, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(_np(bgr(x)), _np(rgb(x[..., ::-1])), rtol=1e-5, atol=1e-5)


def test_weights_imagenet_looks_in_the_keras_cache(tmp_path, monkeypatch) -> None:
    """The cache lookup (downloads: test_download.py, against a server on 127.0.0.1)."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    cache = tmp_path / "models"
    assert C.keras_cache_dir() == str(cache)
    with pytest.raises(C.CheckpointError, match="use --backbone legacy_seresnet101 instead"):
        C.checkpoint_path("imagenet", "seresnet101")
    with pytest.raises(C.CheckpointError, match="no ImageNet weights for backbone 'seresnet_tiny'"):
        C.checkpoint_path("imagenet", "seresnet_tiny")
    (cache / "seresnet50.a1_in1k").mkdir(parents=True)
    converted = cache / "seresnet_tiny.weights.h5"
    converted.write_bytes(b"")
    assert C.checkpoint_path("imagenet", "seresnet_tiny") == str(converted)
    hf = cache / "seresnet50.a1_in1k" / "model.safetensors"
    hf.write_bytes(b"")
    assert C.checkpoint_path("imagenet", "seresnet50") == str(hf)
    with pytest.raises(C.CheckpointError, match="'nope.safetensors': no such file"):
        C.checkpoint_path("nope.safetensors", "seresnet50")


def test_convert_cli_writes_weights_and_preprocessing(tiny: Backbone, tmp_path, capsys) -> None:
    src = tmp_path / "tiny.safetensors"
    C.save_state_dict(_random_state(tiny, seed=4), str(src))
    out = tmp_path / "tiny.weights.h5"
    assert cli.main(["seresnet_tiny", str(src), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"loaded {len(tiny.weights)} tensors" in printed and "--weights" in printed
    sidecar = json.loads((tmp_path / "tiny.json").read_text())
    assert sidecar["architecture"] == "seresnet_tiny"
    np.testing.assert_allclose(sidecar["pretrained_cfg"]["mean"], np.divide(IMAGENET_MEAN, 255))
    loaded = get_backbone("seresnet_tiny")
    C.load_backbone_weights(loaded, str(out))
    np.testing.assert_array_equal(
        _np(loaded.get_layer("layer1_0_conv1").kernel),
        np.transpose(C.read_state_dict(str(src))["layer1.0.conv1.weight"], (2, 3, 1, 0)),
    )
    assert cli.main(["seresnet50", str(src), "-o", str(tmp_path / "x.weights.h5")]) == 1
    assert "matches backbone(s): seresnet_tiny" in capsys.readouterr().err


def test_resolve_gives_the_file_and_its_config(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    release = tmp_path / "models" / "legacy_seresnet50.in1k.pth"  # no hash prefix to check
    release.write_bytes(b"")
    path, config = C.resolve("imagenet", "legacy_seresnet50")
    assert path == str(release)
    assert config == C.default_pretrained_config("legacy_seresnet50")
    assert config.interpolation == "bilinear" and config.source.startswith("timm's")
    ckpt = tmp_path / "mine.safetensors"
    ckpt.write_bytes(b"")
    (tmp_path / "mine.json").write_text(json.dumps({"pretrained_cfg": {"input_size": [3, 96, 96]}}))
    path, config = C.resolve(ckpt, "seresnet50")
    assert path == str(ckpt) and config.input_size == 96
    assert config.source == str(tmp_path / "mine.json")


def test_converter_runs_as_a_module() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "fashion_keras.models.checkpoints", "--help"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage: python -m fashion_keras.models.checkpoints" in proc.stdout
    assert "seresnet_tiny" in proc.stdout
