"""Tests for fashion_keras.models.backbones and fashion_keras.models.layers."""

from __future__ import annotations

import ast
import json
import pathlib

import keras
import numpy as np
import pytest

import fashion_keras.models as models_pkg
from fashion_keras.models import (
    BACKBONE_PRESETS,
    Backbone,
    SqueezeExcite,
    get_backbone,
    make_divisible,
)
from fashion_keras.models.layers import se_reduced_channels

# timm param counts (backbone + global pool + Dense(1000)); buffers (BN moving stats) excluded.
TIMM_PARAMS = {
    "resnet50": 25_557_032,
    "seresnet50": 28_088_024,
    "seresnext50_32x4d": 27_559_896,
}
# the deeper and the senet.py-layout presets (timm 1.0 sum(p.numel() for p in parameters()))
TIMM_PARAMS_MORE = {
    "seresnet101": 49_326_872,
    "seresnet152": 66_821_848,
    "seresnext101_32x4d": 48_955_416,
    "legacy_seresnet50": 28_088_024,
    "legacy_seresnet101": 49_326_872,
    "legacy_seresnet152": 66_821_848,
    "legacy_seresnext50_32x4d": 27_559_896,
    "legacy_seresnext101_32x4d": 48_955_416,
}


def _trainable_params(model: keras.Model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def _parents(model: keras.Model, layer_name: str) -> list[str]:
    """Names of the layers feeding ``layer_name`` (its first call in the graph)."""
    node = model.get_layer(layer_name)._inbound_nodes[0]
    return [t._keras_history.operation.name for t in node.input_tensors]


@pytest.fixture(scope="module")
def big_backbones() -> dict[str, Backbone]:
    return {name: get_backbone(name, image_shape=(224, 224, 3)) for name in TIMM_PARAMS}


@pytest.fixture(scope="module")
def tiny() -> Backbone:
    return get_backbone("seresnet_tiny")


@pytest.mark.parametrize("name", sorted(TIMM_PARAMS))
def test_param_counts_match_timm(big_backbones: dict[str, Backbone], name: str) -> None:
    backbone = big_backbones[name]
    assert backbone.num_features == 2048
    total = _trainable_params(backbone) + backbone.num_features * 1000 + 1000
    assert total == TIMM_PARAMS[name]


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.slow) if ("101" in n or "152" in n) else n
        for n in sorted(TIMM_PARAMS_MORE)
    ],
)
def test_param_counts_match_timm_more(name: str) -> None:
    backbone = get_backbone(name)
    assert backbone.num_features == 2048
    total = _trainable_params(backbone) + backbone.num_features * 1000 + 1000
    assert total == TIMM_PARAMS_MORE[name]


def test_every_preset_has_a_timm_count() -> None:
    assert set(BACKBONE_PRESETS) - {"seresnet_tiny"} == set(TIMM_PARAMS) | set(TIMM_PARAMS_MORE)


@pytest.fixture(scope="module")
def legacy50() -> Backbone:
    return get_backbone("legacy_seresnet50", image_shape=(224, 224, 3))


def test_legacy_layout_names_and_se_width(legacy50: Backbone) -> None:
    names = {layer.name for layer in legacy50.layers}
    assert {"layer0_conv1", "layer0_bn1", "layer0_relu1", "pool0"} <= names
    assert "conv1" not in names and "maxpool" not in names
    assert "layer1_0_se_module" in names and "layer1_0_se" not in names
    se = legacy50.get_layer("layer4_2_se_module")
    assert se.fc1.kernel.shape == (1, 1, 2048, 128)  # 2048 // 16
    assert _parents(legacy50, "layer1_0_add") == ["layer1_0_se_module", "layer1_0_downsample_1"]
    # senet.py SEModule: channels // reduction, no rounding to a multiple of 8
    odd = Backbone((1,), (25,), se=True, layout="legacy", stem_width=8)
    assert odd.get_layer("layer1_0_se_module").reduced_channels == 100 // 16
    assert get_backbone("seresnet_tiny").get_layer("layer1_0_se").reduced_channels == 8


def test_legacy_stride_on_first_1x1(legacy50: Backbone) -> None:
    for stage in (2, 3, 4):
        assert legacy50.get_layer(f"layer{stage}_0_conv1").strides == (2, 2)
        assert legacy50.get_layer(f"layer{stage}_0_conv2").strides == (1, 1)
        assert legacy50.get_layer(f"layer{stage}_0_downsample_0").strides == (2, 2)
    # SE-ResNeXt in senet.py strides the 3x3 conv
    rx = get_backbone("legacy_seresnext50_32x4d")
    assert rx.get_layer("layer2_0_conv1").strides == (1, 1)
    assert rx.get_layer("layer2_0_conv2").strides == (2, 2)
    assert rx.get_layer("layer2_0_conv2").groups == 32
    # no zero-init of the last BN in the Caffe port, zero-init in timm
    assert np.all(keras.ops.convert_to_numpy(legacy50.get_layer("layer1_0_bn3").gamma) == 1)
    tiny = get_backbone("seresnet_tiny")
    assert np.all(keras.ops.convert_to_numpy(tiny.get_layer("layer1_0_bn3").gamma) == 0)


@pytest.mark.parametrize(("size", "pool"), [(64, 16), (65, 16), (67, 17), (33, 8), (224, 56)])
def test_legacy_ceil_mode_max_pool_sizes(size: int, pool: int) -> None:
    # PyTorch: conv floor((H + 6 - 7) / 2) + 1, then MaxPool2d(3, 2, ceil_mode=True):
    # ceil((h - 3) / 2) + 1
    m = Backbone((1,), (16,), se=True, layout="legacy", stem_width=8, stride_in_1x1=True)
    conv = (size + 6 - 7) // 2 + 1
    assert pool == -(-(conv - 3) // 2) + 1
    stem = keras.Model(m.input, m.get_layer("pool0").output)
    assert tuple(stem(np.zeros((1, size, size, 3), "float32")).shape) == (1, pool, pool, 8)


def test_legacy_ceil_mode_max_pool_values() -> None:
    # a maximum in the last row/column only counts in ceil mode's extra window
    m = Backbone((1,), (16,), layout="legacy", stem_width=4)
    pool = m.get_layer("pool0")
    x = np.zeros((1, 4, 4, 1), "float32")
    x[0, 3, 3, 0] = 5.0
    pad = m.get_layer("pool0_pad")
    y = keras.ops.convert_to_numpy(pool(pad(x)))
    assert y.shape == (1, 2, 2, 1)  # ceil((4 - 3) / 2) + 1
    np.testing.assert_array_equal(y[0, :, :, 0], [[0, 0], [0, 5]])


def test_stage_and_stem_layer_names() -> None:
    tiny = get_backbone("seresnet_tiny")
    assert tiny.stem_layer_names == ("conv1_pad", "conv1", "bn1", "act1", "maxpool_pad", "maxpool")
    assert "layer2_0_conv1" in tiny.stage_layer_names(2)
    assert all(n.startswith("layer4_") for n in tiny.stage_layer_names(4))
    with pytest.raises(ValueError, match="stage = 5"):
        tiny.stage_layer_names(5)
    legacy = Backbone((1,), (16,), layout="legacy", stem_width=8)
    assert legacy.stem_layer_names[:2] == ("layer0_conv1_pad", "layer0_conv1")


def test_presets_registry() -> None:
    assert {"resnet50", "seresnet50", "seresnext50_32x4d", "seresnet_tiny"} <= set(BACKBONE_PRESETS)
    assert BACKBONE_PRESETS["resnet50"]["se"] is False
    assert BACKBONE_PRESETS["seresnext50_32x4d"]["groups"] == 32


@pytest.mark.parametrize(
    ("channels", "expected"), [(64, 8), (256, 16), (512, 32), (1024, 64), (2048, 128), (200, 16)]
)
def test_se_reduced_channels_follow_timm(channels: int, expected: int) -> None:
    assert se_reduced_channels(channels) == expected
    assert SqueezeExcite(channels).reduced_channels == expected


def test_make_divisible_round_limit() -> None:
    assert make_divisible(10, 8) == 16  # 8 < 0.9 * 10 -> bumped
    assert make_divisible(10, 8, round_limit=0.0) == 8
    assert make_divisible(3, 8) == 8  # min_value defaults to the divisor


def test_timm_layer_names_and_shapes(big_backbones: dict[str, Backbone]) -> None:
    m = big_backbones["seresnet50"]
    names = {layer.name for layer in m.layers}
    for stage, blocks in enumerate((3, 4, 6, 3), start=1):
        for b in range(blocks):
            p = f"layer{stage}_{b}"
            for suffix in ("conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "se", "add"):
                assert f"{p}_{suffix}" in names
            has_down = b == 0
            assert (f"{p}_downsample_0" in names) == has_down
            assert (f"{p}_downsample_1" in names) == has_down
        assert f"layer{stage}_{blocks}_conv1" not in names
    assert {"conv1", "bn1", "maxpool"} <= names
    assert m.get_layer("conv1").kernel.shape == (7, 7, 3, 64)
    se = m.get_layer("layer4_2_se")
    assert se.fc1.kernel.shape == (1, 1, 2048, 128)
    assert se.fc2.kernel.shape == (1, 1, 128, 2048)
    assert se.fc1.kernel.path == "layer4_2_se/fc1/kernel"
    assert m.get_layer("layer2_0_downsample_0").kernel.shape == (1, 1, 256, 512)

    rx = big_backbones["seresnext50_32x4d"]
    conv2 = rx.get_layer("layer1_0_conv2")
    assert conv2.groups == 32 and conv2.filters == 128
    assert conv2.kernel.shape == (3, 3, 4, 128)
    assert not any(isinstance(layer, SqueezeExcite) for layer in big_backbones["resnet50"].layers)


def test_timm_strides_padding_and_bn(big_backbones: dict[str, Backbone]) -> None:
    m = big_backbones["seresnet50"]
    assert m.get_layer("conv1").strides == (2, 2)
    assert m.get_layer("conv1_pad").padding == ((3, 3), (3, 3))
    assert m.get_layer("maxpool").strides == (2, 2)
    # stride lives on the 3x3 conv of the first block of stages 2-4 (and on the projection)
    assert m.get_layer("layer1_0_conv2").strides == (1, 1)
    for stage in (2, 3, 4):
        assert m.get_layer(f"layer{stage}_0_conv1").strides == (1, 1)
        assert m.get_layer(f"layer{stage}_0_conv2").strides == (2, 2)
        assert m.get_layer(f"layer{stage}_0_downsample_0").strides == (2, 2)
        assert m.get_layer(f"layer{stage}_1_conv2").strides == (1, 1)
    for layer in m.layers:
        if isinstance(layer, keras.layers.Conv2D):
            assert layer.padding == "valid" and not layer.use_bias
        if isinstance(layer, keras.layers.BatchNormalization):
            assert layer.epsilon == 1e-5 and layer.momentum == 0.9


def test_se_sits_before_the_residual_addition(big_backbones: dict[str, Backbone]) -> None:
    m = big_backbones["seresnet50"]
    # projection shortcut
    assert _parents(m, "layer1_0_add") == ["layer1_0_se", "layer1_0_downsample_1"]
    assert _parents(m, "layer1_0_se") == ["layer1_0_bn3"]
    assert _parents(m, "layer1_0_bn3") == ["layer1_0_conv3"]
    # identity shortcut
    assert _parents(m, "layer1_1_add") == ["layer1_1_se", "layer1_0_act3"]
    assert _parents(m, "layer1_1_act3") == ["layer1_1_add"]
    n_se = sum(isinstance(layer, SqueezeExcite) for layer in m.layers)
    assert n_se == 16
    # without SE the last BN feeds the addition directly
    assert _parents(big_backbones["resnet50"], "layer3_2_add") == ["layer3_2_bn3", "layer3_1_act3"]


def test_squeeze_excite_math_and_config() -> None:
    layer = SqueezeExcite(32, name="se")
    x = np.random.default_rng(0).normal(size=(2, 5, 4, 32)).astype("float32")
    y = keras.ops.convert_to_numpy(layer(x))
    w1, b1 = (keras.ops.convert_to_numpy(v) for v in (layer.fc1.kernel, layer.fc1.bias))
    w2, b2 = (keras.ops.convert_to_numpy(v) for v in (layer.fc2.kernel, layer.fc2.bias))
    s = x.mean(axis=(1, 2))
    s = np.maximum(s @ w1[0, 0] + b1, 0.0) @ w2[0, 0] + b2
    expected = x * (1.0 / (1.0 + np.exp(-s)))[:, None, None, :]
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)

    config = layer.get_config()
    clone = SqueezeExcite.from_config(config)
    assert clone.get_config() == config
    assert keras.saving.get_registered_name(SqueezeExcite) == "fashion_keras>SqueezeExcite"


def test_squeeze_excite_bad_args() -> None:
    with pytest.raises(ValueError, match="channels = 0"):
        SqueezeExcite(0)
    with pytest.raises(ValueError, match="rd_ratio = 2"):
        SqueezeExcite(64, rd_ratio=2)
    with pytest.raises(ValueError, match="expected channels = 64"):
        SqueezeExcite(64)(np.zeros((1, 2, 2, 32), "float32"))


def test_tiny_forward_64px(tiny: Backbone) -> None:
    assert tiny.num_features == 512
    assert _trainable_params(tiny) < 600_000
    x = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype("float32")
    y = keras.ops.convert_to_numpy(tiny(x))
    assert y.shape == (2, 2, 2, 512)
    assert np.isfinite(y).all()


@pytest.mark.parametrize(("size", "out"), [(64, 2), (96, 3), (65, 3), (33, 2)])
def test_output_stride_32(tiny: Backbone, size: int, out: int) -> None:
    # PyTorch sizes: floor((H + 2p - k) / s) + 1 per layer, i.e. ceil(H / 32) overall.
    y = tiny(np.zeros((1, size, size, 3), "float32"))
    assert tuple(y.shape) == (1, out, out, 512)


def test_static_feature_shape(big_backbones: dict[str, Backbone]) -> None:
    for backbone in big_backbones.values():
        assert tuple(backbone.output.shape) == (None, 7, 7, 2048)


def test_small_resnext_forward() -> None:
    # grouped 3x3 convs (ResNeXt) must run on the current backend
    m = Backbone((1, 1), (16, 32), groups=4, base_width=16, se=True, stem_width=8)
    assert m.get_layer("layer1_0_conv2").groups == 4
    y = m(np.ones((1, 32, 32, 3), "float32"))
    assert tuple(y.shape) == (1, 4, 4, 128)


def test_legacy_config_roundtrip() -> None:
    m = Backbone((1, 1), (16, 32), se=True, layout="legacy", stride_in_1x1=True, stem_width=8)
    config = m.get_config()
    assert config["layout"] == "legacy" and config["stride_in_1x1"] is True
    clone = Backbone.from_config(config)
    assert clone.get_config() == config
    # configs saved before the layout options existed still load (timm layout)
    old = {k: v for k, v in get_backbone("seresnet_tiny").get_config().items()}
    del old["layout"], old["stride_in_1x1"]
    assert Backbone.from_config(old).layout == "timm"


def test_frozen_backbone_config_stays_frozen() -> None:
    frozen = get_backbone("seresnet_tiny")
    frozen.trainable = False
    clone = Backbone.from_config(frozen.get_config())
    assert not clone.trainable and not clone.trainable_weights
    assert not clone.get_layer("layer1_0_bn1").trainable  # BN in inference mode


def test_backbone_config_roundtrip(tiny: Backbone) -> None:
    config = tiny.get_config()
    json.dumps(config)
    clone = Backbone.from_config(config)
    assert clone.get_config() == config
    assert [w.shape for w in clone.weights] == [w.shape for w in tiny.weights]
    clone.set_weights(tiny.get_weights())
    x = np.random.default_rng(1).normal(size=(1, 64, 64, 3)).astype("float32")
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(clone(x)), keras.ops.convert_to_numpy(tiny(x))
    )
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(tiny))
    assert isinstance(restored, Backbone) and restored.get_config() == config


def test_unknown_backbone_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="resnet18") as e:
        get_backbone("resnet18")
    for name in BACKBONE_PRESETS:
        assert name in str(e.value)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"stage_blocks": (1, 1), "stage_widths": (16,)}, r"stage_widths = \[16\]"),
        ({"stage_blocks": (1, 0), "stage_widths": (16, 32)}, r"stage_blocks\[1\] = 0"),
        ({"stage_blocks": (1,), "stage_widths": (16,), "groups": 0}, "groups = 0"),
        ({"stage_blocks": (1,), "stage_widths": (16,), "se_reduction": 0}, "se_reduction = 0"),
        ({"stage_blocks": (1,), "stage_widths": (16,), "image_shape": (64, 64)}, r"\(64, 64\)"),
        ({"stage_blocks": (1,), "stage_widths": (16,), "se": "yes"}, "se = 'yes'"),
        ({"stage_blocks": (1,), "stage_widths": (16,), "layout": "caffe"}, "layout = 'caffe'"),
        ({"stage_blocks": (1,), "stage_widths": (16,), "stride_in_1x1": 1}, "stride_in_1x1 = 1"),
    ],
)
def test_bad_backbone_args(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Backbone(**kwargs)


def test_models_package_does_not_import_tensorflow() -> None:
    root = pathlib.Path(models_pkg.__file__).parent
    files = sorted(root.rglob("*.py"))
    assert files
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [node.module or ""]
            else:
                continue
            for mod in mods:
                assert mod.split(".")[0] != "tensorflow", f"{path} imports {mod}"
