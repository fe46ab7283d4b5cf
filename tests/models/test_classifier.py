"""Tests for fashion_keras.models.classifier."""

from __future__ import annotations

import json
import textwrap
import zipfile

import keras
import numpy as np
import pytest
from conftest import run_under_jax

from fashion_keras.heads import Head, get_heads, heads_to_dict
from fashion_keras.models import MultiHeadClassifier, build_model, get_backbone

SIZE = 64


def _images(n: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, size=(n, SIZE, SIZE, 3)).astype("float32")


def _np(outputs: dict) -> dict[str, np.ndarray]:
    return {k: keras.ops.convert_to_numpy(v) for k, v in outputs.items()}


@pytest.fixture(scope="module")
def model() -> MultiHeadClassifier:
    return build_model(
        "seresnet_tiny", "deepfashion6", image_size=SIZE, fc_layers=2, fc_units=32, dropout=0.2
    )


@pytest.mark.parametrize("preset", ["deepfashion6", "fashionai8"])
def test_dict_outputs_per_head(preset: str) -> None:
    heads = get_heads(preset)
    m = build_model("seresnet_tiny", preset, image_size=SIZE)
    out = _np(m(_images(3)))
    assert list(out) == [h.name for h in heads]
    for h in heads:
        assert out[h.name].shape == (3, h.num_classes)
        assert out[h.name].dtype == np.float32
        np.testing.assert_allclose(out[h.name].sum(axis=1), 1.0, rtol=1e-5)
    assert m.heads == heads
    assert m.head_names == tuple(h.name for h in heads)


def test_graph_layout(model: MultiHeadClassifier) -> None:
    assert model.input.name == "image" or model.inputs[0].name == "image"
    assert tuple(model.inputs[0].shape) == (None, SIZE, SIZE, 3)
    assert model.backbone is model.get_layer("seresnet_tiny")
    names = [layer.name for layer in model.layers]
    for name in ("normalize", "pool", "fc1", "fc1_dropout", "fc2", "fc2_dropout"):
        assert name in names
    assert "dropout" not in names  # the fc dropouts already precede the heads
    assert model.get_layer("fc1").units == 32
    assert model.get_layer("fc2_dropout").rate == 0.2
    for h in model.heads:
        dense = model.get_layer(h.name)
        assert dense.units == h.num_classes
        assert dense.activation is keras.activations.softmax
        assert dense.dtype_policy.name == "float32"


def test_dropout_without_fc_layers() -> None:
    m = build_model("seresnet_tiny", "deepfashion6", image_size=SIZE, dropout=0.5)
    assert m.get_layer("dropout").rate == 0.5
    m0 = build_model("seresnet_tiny", "deepfashion6", image_size=SIZE)
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in m0.layers)


def test_normalization(model: MultiHeadClassifier) -> None:
    x = _images(1)
    y = keras.ops.convert_to_numpy(model.get_layer("normalize")(x))
    mean = np.array([123.675, 116.28, 103.53], "float32")
    std = np.array([58.395, 57.12, 57.375], "float32")
    np.testing.assert_allclose(y, (x - mean) / std, rtol=1e-6, atol=1e-6)


def test_heads_dict_form_and_variable_size() -> None:
    heads = (Head("sleeve", ("long", "short")), Head("color", ("red", "green", "blue"), 0.5))
    m = MultiHeadClassifier(get_backbone("seresnet_tiny"), heads_to_dict(heads))
    assert m.heads == heads
    assert tuple(m.inputs[0].shape) == (None, None, None, 3)
    for size in (64, 96):
        out = _np(m(np.zeros((1, size, size, 3), "float32")))
        assert out["color"].shape == (1, 3)


def test_config_roundtrip(model: MultiHeadClassifier) -> None:
    config = model.get_config()
    json.dumps(config)
    assert config["heads"] == heads_to_dict(model.heads)
    clone = MultiHeadClassifier.from_config(config)
    assert clone.get_config() == config
    assert clone.heads == model.heads
    clone.set_weights(model.get_weights())
    x = _images()
    expected, got = _np(model(x)), _np(clone(x))
    assert list(got) == list(expected)
    for k in expected:
        np.testing.assert_array_equal(got[k], expected[k])


def test_save_load_keras(model: MultiHeadClassifier, tmp_path) -> None:
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, MultiHeadClassifier)
    assert loaded.heads == model.heads
    assert loaded.get_config() == model.get_config()
    x = _images()
    expected, got = _np(model(x)), _np(loaded(x))
    assert list(got) == list(expected)
    for k in expected:
        np.testing.assert_array_equal(got[k], expected[k])


def test_preprocessing_is_kept_saved_and_loaded(tmp_path) -> None:
    spec = {"bbox_margin": 0.2, "resize": [234, 224], "pad": {"square": True}}
    m = build_model("seresnet_tiny", "deepfashion6", image_size=SIZE, preprocessing=spec)
    assert m.preprocessing == spec and type(m.preprocessing) is dict
    m.preprocessing["bbox_margin"] = 0.5  # a copy: the model's record does not change
    assert m.preprocessing["bbox_margin"] == 0.2
    config = m.get_config()
    assert json.loads(json.dumps(config))["preprocessing"] == spec
    assert MultiHeadClassifier.from_config(config).preprocessing == spec
    path = tmp_path / "model.keras"
    m.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.preprocessing == spec and loaded.get_config() == config


def test_keras_file_saved_before_preprocessing_existed_loads(tmp_path) -> None:
    m = build_model("seresnet_tiny", "deepfashion6", image_size=SIZE)
    assert m.preprocessing is None and m.get_config()["preprocessing"] is None
    new, old = tmp_path / "new.keras", tmp_path / "old.keras"
    m.save(new)
    with zipfile.ZipFile(new) as src, zipfile.ZipFile(old, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "config.json":
                saved = json.loads(data)
                del saved["config"]["preprocessing"]  # as written before the argument existed
                data = json.dumps(saved).encode()
            dst.writestr(item, data)
    loaded = keras.saving.load_model(old)
    assert isinstance(loaded, MultiHeadClassifier) and loaded.preprocessing is None
    x = _images()
    expected, got = _np(m(x)), _np(loaded(x))
    for k in expected:
        np.testing.assert_array_equal(got[k], expected[k])


@pytest.mark.parametrize(
    ("preprocessing", "match"),
    [
        ([("bbox_margin", 0.2)], r"preprocessing = \[\('bbox_margin', 0.2\)\] must be a dict"),
        ({1: 0.2}, r"preprocessing = \{1: 0.2\} must be a dict with string keys"),
        ({"margin": {0.2}}, "must be JSON-serialisable"),
        ({"margin": float("nan")}, "must be JSON-serialisable"),
    ],
)
def test_bad_preprocessing_names_the_value(preprocessing, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MultiHeadClassifier(
            get_backbone("seresnet_tiny"), get_heads("deepfashion6"), preprocessing=preprocessing
        )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fc_layers": -1}, "fc_layers = -1"),
        ({"fc_layers": 1.5}, "fc_layers = 1.5"),
        ({"fc_units": 0}, "fc_units = 0"),
        ({"dropout": 1.0}, "dropout = 1.0"),
        ({"dropout": -0.1}, r"dropout = -0\.1"),
        ({"image_size": 0}, "image_size = 0"),
        ({"heads": ()}, r"heads = \(\)"),
        ({"heads": "deepfashion6"}, "heads = 'deepfashion6'"),
        ({"heads": (Head("pool", ("a", "b")),)}, r"\['pool'\]"),
    ],
)
def test_bad_args_name_the_value(kwargs: dict, match: str) -> None:
    args = {"heads": get_heads("deepfashion6"), **kwargs}
    with pytest.raises(ValueError, match=match):
        MultiHeadClassifier(get_backbone("seresnet_tiny"), **args)


def test_build_model_unknown_backbone() -> None:
    with pytest.raises(ValueError, match="seresnet_tiny"):
        build_model("resnet9000")


def test_mixed_bfloat16_outputs_are_float32() -> None:
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        m = build_model("seresnet_tiny", "deepfashion6", image_size=SIZE, fc_layers=1, fc_units=16)
        assert m.backbone.output.dtype == "bfloat16"
        out = m(_images(1))
        for h in m.heads:
            assert keras.backend.standardize_dtype(out[h.name].dtype) == "float32"
            np.testing.assert_allclose(
                keras.ops.convert_to_numpy(out[h.name]).sum(axis=1), 1.0, rtol=1e-3
            )
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert keras.mixed_precision.global_policy().name == previous.name


_JAX_SCRIPT = textwrap.dedent(
    """
    import sys
    try:
        import jax  # noqa: F401
    except ImportError:
        sys.exit(77)
    import keras
    import numpy as np
    from fashion_keras.models import build_model

    assert keras.backend.backend() == "jax", keras.backend.backend()
    m = build_model("seresnet_tiny", "fashionai8", image_size=64, fc_layers=1, fc_units=16)
    out = m.predict(np.zeros((2, 64, 64, 3), "float32"), verbose=0)  # jit: faster than eager
    assert list(out) == [h.name for h in m.heads], list(out)
    for h in m.heads:
        y = np.asarray(out[h.name])
        assert y.shape == (2, h.num_classes), y.shape
        np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)
    # region crops: one backbone over the stacked views, each head on its own view
    m = build_model("seresnet_tiny", "fashionai8", image_size=32, regions=("collar", "lower"))
    views = {n: np.random.rand(2, 32, 32, 3).astype("float32") * 255
             for n in ("image", "collar_crop", "lower_crop")}  # fmt: skip
    out = m.predict(views, verbose=0)
    changed = m.predict({**views, "collar_crop": views["collar_crop"][::-1]}, verbose=0)
    for h in m.heads:
        moved = not np.allclose(out[h.name], changed[h.name], atol=1e-7)
        assert moved == (h.region == "collar"), h.name
    assert not any(k.split(".")[0] == "tensorflow" for k in sys.modules), "tensorflow imported"
    print("OK")
    """
)


def test_forward_under_jax_backend() -> None:
    assert run_under_jax(_JAX_SCRIPT).strip().endswith("OK")


# --- keypoint heads ----------------------------------------------------------------------------


def _kp_model(stride: int = 4) -> MultiHeadClassifier:
    from fashion_keras.heads import FASHIONAI_KEYPOINTS

    heads = (Head("colour", ("dark", "light")), FASHIONAI_KEYPOINTS)
    return build_model(
        "seresnet_tiny", heads, image_size=SIZE, keypoint_filters=8, keypoint_stride=stride
    )


@pytest.mark.parametrize("stride", [4, 8])
def test_keypoint_heads_give_heatmaps_at_their_stride_and_visibility(stride):
    model = _kp_model(stride)
    out = _np(model(_images()))
    assert set(out) == {"colour", "fashionai_keypoints", "fashionai_keypoints_visibility"}
    assert out["fashionai_keypoints"].shape == (2, SIZE // stride, SIZE // stride, 24)
    assert out["fashionai_keypoints_visibility"].shape == (2, 24)
    assert out["colour"].shape == (2, 2)
    assert [h.name for h in model.keypoint_heads] == ["fashionai_keypoints"]
    assert [h.name for h in model.softmax_heads] == ["colour"]


def test_a_keypoint_model_saves_and_loads_with_the_same_outputs(tmp_path):
    model = _kp_model(8)
    path = str(tmp_path / "kp.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.keypoint_stride == 8 and loaded.keypoint_filters == 8
    a, b = _np(model(_images())), _np(loaded(_images()))
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-5)


def test_bad_keypoint_settings_are_named():
    from fashion_keras.heads import FASHIONAI_KEYPOINTS

    with pytest.raises(ValueError, match="keypoint_stride = 3 must be a power of two"):
        build_model("seresnet_tiny", (FASHIONAI_KEYPOINTS,), image_size=SIZE, keypoint_stride=3)
    clash = Head("fashionai_keypoints_visibility", ("a", "b"))
    with pytest.raises(ValueError, match="clash with layer names"):
        build_model("seresnet_tiny", (FASHIONAI_KEYPOINTS, clash), image_size=SIZE)


# --- region crops ------------------------------------------------------------------------------

REGION_SIZE = 32


@pytest.fixture(scope="module")
def collar_model() -> MultiHeadClassifier:
    return build_model(
        "seresnet_tiny", "deepfashion6", image_size=REGION_SIZE, fc_layers=1, fc_units=16,
        regions=("collar",),
    )  # fmt: skip


def _views(seed: int = 0, n: int = 2) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (n, REGION_SIZE, REGION_SIZE, 3)
    return {
        "image": rng.uniform(0, 255, shape).astype("float32"),
        "collar_crop": rng.uniform(0, 255, shape).astype("float32"),
    }


def _input_names(m: MultiHeadClassifier) -> list[str]:
    """The names of a region model's inputs (a dict keyed by them), sorted."""
    assert isinstance(m.input, dict)
    assert all(t.name == name for name, t in m.input.items())
    assert sorted(t.name for t in m.inputs) == sorted(m.input)
    return sorted(m.input)


def test_a_region_model_reads_the_garment_view_and_each_region_crop(collar_model) -> None:
    assert collar_model.regions == ("collar",)
    assert _input_names(collar_model) == ["collar_crop", "image"]
    for t in collar_model.inputs:
        assert tuple(t.shape) == (None, REGION_SIZE, REGION_SIZE, 3)
    # one backbone (and one set of fc layers) over both views
    backbones = [la for la in collar_model.layers if la.name == "seresnet_tiny"]
    assert len(backbones) == 1 and collar_model.backbone is backbones[0]
    out = _np(collar_model(_views()))
    assert list(out) == [h.name for h in get_heads("deepfashion6")]
    for h in get_heads("deepfashion6"):
        assert out[h.name].shape == (2, h.num_classes)


def test_the_neckline_reads_the_collar_crop_and_the_others_the_image(collar_model) -> None:
    base = _views(0)
    out = _np(collar_model(base))
    new_crop = {**base, "collar_crop": _views(1)["collar_crop"]}
    new_image = {**base, "image": _views(2)["image"]}
    crop_out, image_out = _np(collar_model(new_crop)), _np(collar_model(new_image))
    for name in out:
        if name == "neckline":
            assert not np.allclose(crop_out[name], out[name], atol=1e-6)
            np.testing.assert_array_equal(image_out[name], out[name])
        else:
            np.testing.assert_array_equal(crop_out[name], out[name])
            assert not np.allclose(image_out[name], out[name], atol=1e-6)


def test_a_region_model_saves_and_loads_with_the_same_outputs(collar_model, tmp_path) -> None:
    config = collar_model.get_config()
    assert json.loads(json.dumps(config))["regions"] == ["collar"]
    path = tmp_path / "collar.keras"
    collar_model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, MultiHeadClassifier)
    assert loaded.regions == ("collar",) and loaded.get_config() == config
    assert _input_names(loaded) == ["collar_crop", "image"]
    x = _views(3)
    expected, got = _np(collar_model(x)), _np(loaded(x))
    assert list(got) == list(expected)
    for k in expected:
        np.testing.assert_array_equal(got[k], expected[k])
    clone = MultiHeadClassifier.from_config(config)
    assert clone.regions == ("collar",) and clone.get_config() == config


def test_a_model_without_regions_keeps_its_config_and_single_input(model) -> None:
    assert "regions" not in model.get_config()
    assert model.regions == ()
    assert len(model.inputs) == 1 and model.inputs[0].name == "image"
    # an empty list is the same as none
    m = build_model("seresnet_tiny", "deepfashion6", image_size=REGION_SIZE, regions=[])
    assert "regions" not in m.get_config() and len(m.inputs) == 1


@pytest.mark.parametrize(
    "regions, match",
    [
        (("sleeves",), r"no head reads region 'sleeves'; the heads name \['collar'\]"),
        (("collar", "collar"), r"regions = \['collar', 'collar'\] repeats a name"),
        ("collar", "must be a list of region names"),
    ],
    ids=["unnamed", "repeated", "string"],
)
def test_bad_regions_are_named(regions, match) -> None:
    with pytest.raises(ValueError, match=match):
        build_model("seresnet_tiny", "deepfashion6", image_size=REGION_SIZE, regions=regions)


def test_a_model_whose_every_head_reads_a_region_has_no_image_input(tmp_path) -> None:
    heads = (
        Head("neck", ("v", "round"), region="collar"),
        Head("hem", ("short", "long", "none"), region="lower"),
        Head("cut", ("a", "b"), region="collar"),
    )
    m = build_model("seresnet_tiny", heads, image_size=REGION_SIZE, regions=("lower", "collar"))
    assert _input_names(m) == ["collar_crop", "lower_crop"]
    rng = np.random.default_rng(5)
    shape = (2, REGION_SIZE, REGION_SIZE, 3)
    x = {k: rng.uniform(0, 255, shape).astype("float32") for k in ("lower_crop", "collar_crop")}
    out = _np(m(x))
    assert {k: v.shape for k, v in out.items()} == {"neck": (2, 2), "hem": (2, 3), "cut": (2, 2)}
    moved = _np(m({**x, "lower_crop": x["collar_crop"]}))
    np.testing.assert_array_equal(moved["neck"], out["neck"])
    np.testing.assert_array_equal(moved["cut"], out["cut"])
    assert not np.allclose(moved["hem"], out["hem"], atol=1e-6)
    # only some heads cropped: the image is back for the others
    partial = build_model("seresnet_tiny", heads, image_size=REGION_SIZE, regions=("collar",))
    assert _input_names(partial) == ["collar_crop", "image"]


def test_a_keypoint_head_keeps_the_image_input() -> None:
    from fashion_keras.heads import FASHIONAI_KEYPOINTS

    heads = (Head("neck", ("v", "round"), region="collar"), FASHIONAI_KEYPOINTS)
    m = build_model(
        "seresnet_tiny", heads, image_size=REGION_SIZE, keypoint_filters=8, regions=("collar",)
    )
    assert _input_names(m) == ["collar_crop", "image"]
    base = _views(0)
    out = _np(m(base))
    assert out["fashionai_keypoints"].shape == (2, REGION_SIZE // 4, REGION_SIZE // 4, 24)
    moved = _np(m({**base, "collar_crop": _views(1)["collar_crop"]}))
    np.testing.assert_array_equal(moved["fashionai_keypoints"], out["fashionai_keypoints"])
    assert not np.allclose(moved["neck"], out["neck"], atol=1e-6)
