"""Tests for fashion_keras.models.keypoint_layers: the pixel convention, the soft-argmax's
sub-pixel accuracy, the SimpleBaselines head on a real backbone, saving and JAX."""

from __future__ import annotations

import textwrap

import keras
import numpy as np
import pytest
from conftest import run_under_jax

from fashion_keras.models import get_backbone
from fashion_keras.models.keypoint_layers import (
    KeypointHeatmapHead,
    SpatialSoftmaxArgmax,
    heatmap_to_image,
    image_to_heatmap,
    soft_argmax,
)

SIZE = 64


def _gaussian_logits(
    h: int, w: int, centres: list[tuple[float, float]], sigma: float
) -> np.ndarray:
    """``(1, h, w, K)`` logits whose spatial softmax is a sampled Gaussian at each (x, y) cell."""
    ys, xs = np.mgrid[:h, :w].astype("float64")
    maps = [-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2) for x, y in centres]
    return np.stack(maps, axis=-1)[None].astype("float32")


def _head_model(num_deconv: int = 3, filters: int = 16, k: int = 5) -> keras.Model:
    backbone = get_backbone("seresnet_tiny", image_shape=(SIZE, SIZE, 3))
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    head = KeypointHeatmapHead(k, filters=filters, num_deconv=num_deconv, name="kp")
    heatmaps, visibility = head(backbone(inputs))
    points = SpatialSoftmaxArgmax(head.stride, name="kp_points")(heatmaps)
    return keras.Model(inputs, {"heatmaps": heatmaps, "visibility": visibility, "points": points})


def _images(n: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, SIZE, SIZE, 3)).astype("float32")


# --- the pixel convention -------------------------------------------------------------------


@pytest.mark.parametrize("stride", [1, 4, 8])
def test_image_heatmap_round_trip(stride: int) -> None:
    p = np.array([0.0, 0.3, 17.0, 17.75, 63.0, -0.5, 63.5])
    np.testing.assert_allclose(heatmap_to_image(image_to_heatmap(p, stride), stride), p, atol=1e-12)


def test_cell_centres_tile_the_image_symmetrically() -> None:
    # a 64-px image at stride 4: cell 0 covers pixels 0-3 (centre 1.5), cell 15 pixels 60-63
    assert heatmap_to_image(0.0, 4) == 1.5
    assert heatmap_to_image(15.0, 4) == 61.5
    assert heatmap_to_image(0.0, 4) - (-0.5) == (SIZE - 0.5) - heatmap_to_image(15.0, 4)
    assert image_to_heatmap(1.5, 4) == 0.0 and image_to_heatmap(-0.5, 4) == -0.5
    assert heatmap_to_image(3.0, 1) == 3.0  # stride 1: cells are pixels


# --- soft-argmax ----------------------------------------------------------------------------


@pytest.mark.parametrize("stride", [4, 8])
def test_soft_argmax_recovers_a_sub_pixel_peak(stride: int) -> None:
    """A point at input pixel p, put on the heatmap as a sharp Gaussian, comes back as p."""
    h = w = SIZE // stride
    # input pixels (x, y), >= 2.5 sigma from the border at stride 8 (a cut-off tail biases the mean)
    truth = np.array([[25.37, 36.81], [30.02, 27.6], [37.5, 29.13]])
    cells = image_to_heatmap(truth, stride)
    logits = _gaussian_logits(h, w, [tuple(c) for c in cells], sigma=0.8)
    out = keras.ops.convert_to_numpy(SpatialSoftmaxArgmax(stride)(logits))
    assert out.shape == (1, 3, 3)
    np.testing.assert_allclose(out[0, :, :2], truth, atol=0.05)
    # confidence: the largest probability of the (normalised) sampled Gaussian
    probs = np.exp(logits[0] - logits[0].max(axis=(0, 1)))
    probs /= probs.sum(axis=(0, 1))
    np.testing.assert_allclose(out[0, :, 2], probs.max(axis=(0, 1)), rtol=1e-5)


def test_uniform_logits_give_the_image_centre_and_lowest_confidence() -> None:
    out = keras.ops.convert_to_numpy(SpatialSoftmaxArgmax(4)(np.zeros((2, 16, 8, 3), "float32")))
    np.testing.assert_allclose(out[..., 0], (32 - 1) / 2, atol=1e-4)  # 8 cells = 32 px wide
    np.testing.assert_allclose(out[..., 1], (64 - 1) / 2, atol=1e-4)
    np.testing.assert_allclose(out[..., 2], 1 / (16 * 8), rtol=1e-5)


def test_beta_scales_the_logits() -> None:
    logits = np.random.default_rng(1).normal(size=(2, 6, 5, 4)).astype("float32")
    a = [keras.ops.convert_to_numpy(t) for t in soft_argmax(logits, beta=3.0)]
    b = [keras.ops.convert_to_numpy(t) for t in soft_argmax(3.0 * logits)]
    for u, v in zip(a, b, strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)
    c = keras.ops.convert_to_numpy(soft_argmax(logits)[0])
    assert np.abs(a[0] - c).max() > 1e-2


def test_soft_argmax_is_the_expectation() -> None:
    logits = np.random.default_rng(2).normal(size=(1, 3, 4, 1)).astype("float32")
    p = np.exp(logits[0, :, :, 0])
    p /= p.sum()
    ys, xs = np.mgrid[:3, :4]
    x, y, conf = (keras.ops.convert_to_numpy(t)[0, 0] for t in soft_argmax(logits))
    np.testing.assert_allclose([x, y, conf], [(p * xs).sum(), (p * ys).sum(), p.max()], rtol=1e-5)


# --- the head ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("num_deconv", "stride"), [(3, 4), (2, 8)])
def test_head_on_seresnet_tiny(num_deconv: int, stride: int) -> None:
    model = _head_model(num_deconv=num_deconv)
    head = model.get_layer("kp")
    assert head.stride == stride
    out = {k: keras.ops.convert_to_numpy(v) for k, v in model(_images(3)).items()}
    assert out["heatmaps"].shape == (3, SIZE // stride, SIZE // stride, 5)
    assert out["visibility"].shape == (3, 5)
    assert out["points"].shape == (3, 5, 3)
    assert all(v.dtype == np.float32 for v in out.values())
    assert ((out["visibility"] > 0) & (out["visibility"] < 1)).all()
    assert ((out["points"][..., :2] >= -0.5) & (out["points"][..., :2] <= SIZE - 0.5)).all()
    # SimpleBaselines layout: deconv 4x4/2 without bias, BN, then a 1x1 conv to K maps
    names = [layer.name for layer in head._layers]
    assert names[: 2 * num_deconv] == [
        n for i in range(num_deconv) for n in (f"deconv{i + 1}", f"deconv{i + 1}_bn")
    ]
    deconv = head.deconvs[0]
    assert deconv.kernel_size == (4, 4) and deconv.strides == (2, 2) and not deconv.use_bias
    assert head.final.kernel_size == (1, 1) and head.final.filters == 5


def test_head_output_shapes_match_compute_output_shape() -> None:
    head = KeypointHeatmapHead(3, filters=8, num_deconv=2)
    hm, vis = head(np.zeros((2, 3, 5, 12), "float32"))
    assert tuple(hm.shape) == (2, 12, 20, 3) and tuple(vis.shape) == (2, 3)
    assert head.compute_output_shape((None, 3, 5, 12)) == ((None, 12, 20, 3), (None, 3))
    assert head.compute_output_shape((None, None, None, 12)) == ((None, None, None, 3), (None, 3))


def test_head_variable_input_size() -> None:
    inputs = keras.Input((None, None, 7))
    hm, vis = KeypointHeatmapHead(2, filters=4, num_deconv=1, input_stride=8)(inputs)
    points = SpatialSoftmaxArgmax(4)(hm)
    model = keras.Model(inputs, [hm, vis, points])
    for h, w in [(3, 5), (4, 2)]:
        out = model(np.ones((1, h, w, 7), "float32"))
        assert tuple(out[0].shape) == (1, 2 * h, 2 * w, 2)
        assert tuple(out[2].shape) == (1, 2, 3)


def test_head_mixed_precision_outputs_float32() -> None:
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        head = KeypointHeatmapHead(2, filters=8, num_deconv=1)
        hm, vis = head(np.ones((1, 2, 2, 4), "float32"))
        assert head.deconvs[0].compute_dtype == "bfloat16"
        assert keras.backend.standardize_dtype(hm.dtype) == "float32"
        assert keras.backend.standardize_dtype(vis.dtype) == "float32"
    finally:
        keras.mixed_precision.set_global_policy(previous)


def test_save_load_round_trip(tmp_path) -> None:
    keras.utils.set_random_seed(5)
    model = _head_model(filters=8, k=3)
    rng = np.random.default_rng(3)
    head = model.get_layer("kp")
    for v in head.weights:  # away from the tiny initial values, so a lost weight shows
        value = rng.normal(0, 1.0, size=v.shape)
        v.assign((np.abs(value) + 0.5 if "variance" in v.path else value).astype("float32"))
    x = _images(2)
    before = {k: keras.ops.convert_to_numpy(v) for k, v in model(x).items()}
    path = tmp_path / "kp.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    after = {k: keras.ops.convert_to_numpy(v) for k, v in loaded(x).items()}
    for k in before:
        np.testing.assert_allclose(after[k], before[k], rtol=1e-5, atol=1e-6)
    assert np.ptp(before["points"][..., :2]) > 1.0  # the outputs carry information
    lh = loaded.get_layer("kp")
    assert isinstance(lh, KeypointHeatmapHead) and lh.get_config() == head.get_config()
    lp = loaded.get_layer("kp_points")
    assert isinstance(lp, SpatialSoftmaxArgmax) and lp.stride == 4


def test_configs_round_trip() -> None:
    head = KeypointHeatmapHead(7, filters=12, num_deconv=2, kernel_size=2, input_stride=16)
    again = KeypointHeatmapHead.from_config(head.get_config())
    assert (again.num_keypoints, again.filters, again.num_deconv) == (7, 12, 2)
    assert (again.kernel_size, again.input_stride, again.stride) == (2, 16, 4)
    layer = keras.layers.deserialize(keras.layers.serialize(SpatialSoftmaxArgmax(8, beta=2.5)))
    assert isinstance(layer, SpatialSoftmaxArgmax) and (layer.stride, layer.beta) == (8, 2.5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_keypoints": 0}, "num_keypoints = 0 must be an int >= 1"),
        ({"num_keypoints": 3, "kernel_size": 3}, "kernel_size = 3 must be even"),
        ({"num_keypoints": 3, "num_deconv": 6}, "must be a power of two >= 2**num_deconv = 64"),
        ({"num_keypoints": 3, "input_stride": 24}, "input_stride = 24 must be a power of two"),
        ({"num_keypoints": 3, "filters": True}, "filters = True must be an int"),
    ],
)
def test_head_argument_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("*", r"\*")):
        KeypointHeatmapHead(**kwargs)


def test_argmax_argument_and_shape_errors() -> None:
    with pytest.raises(ValueError, match="stride = 0 must be an int >= 1"):
        SpatialSoftmaxArgmax(0)
    with pytest.raises(ValueError, match="beta = -1 must be a number > 0"):
        SpatialSoftmaxArgmax(4, beta=-1)
    with pytest.raises(ValueError, match=r"must be \(N, H, W, K\) heatmap logits"):
        SpatialSoftmaxArgmax(4)(np.zeros((2, 5, 3), "float32"))
    with pytest.raises(ValueError, match="known channel count"):
        KeypointHeatmapHead(2).build((None, 2, 2, None))


_JAX_SCRIPT = textwrap.dedent(
    """
    import os, sys
    try:
        import jax  # noqa: F401
    except ImportError:
        sys.exit(77)
    import keras
    import numpy as np
    from fashion_keras.models import get_backbone
    from fashion_keras.models.keypoint_layers import KeypointHeatmapHead, SpatialSoftmaxArgmax

    assert keras.backend.backend() == "jax", keras.backend.backend()
    backbone = get_backbone("seresnet_tiny", image_shape=(64, 64, 3))
    inputs = keras.Input((64, 64, 3))
    head = KeypointHeatmapHead(4, filters=8, name="kp")
    hm, vis = head(backbone(inputs))
    model = keras.Model(inputs, [hm, vis, SpatialSoftmaxArgmax(head.stride)(hm)])
    x = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype("float32")
    out = model.predict(x, verbose=0)
    assert [o.shape for o in out] == [(2, 16, 16, 4), (2, 4), (2, 4, 3)], [o.shape for o in out]
    # a sharp peak at a sub-pixel point comes back through the layer under jax too
    ys, xs = np.mgrid[:16, :16]
    logits = -((xs - 5.3) ** 2 + (ys - 9.7) ** 2) / (2 * 0.8**2)
    p = np.asarray(SpatialSoftmaxArgmax(4)(logits[None, :, :, None].astype("float32")))
    np.testing.assert_allclose(p[0, 0, :2], [4 * 5.3 + 1.5, 4 * 9.7 + 1.5], atol=0.05)
    # (Keras' own .keras saving imports tensorflow when installed; the model code must not)
    assert not any(k.split(".")[0] == "tensorflow" for k in sys.modules), "tensorflow imported"
    path = os.path.join(sys.argv[1], "kp.keras")
    model.save(path)
    again = keras.saving.load_model(path).predict(x, verbose=0)
    for a, b in zip(out, again):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    print("OK")
    """
)


def test_head_under_jax_backend(tmp_path) -> None:
    assert run_under_jax(_JAX_SCRIPT, str(tmp_path)).strip().endswith("OK")
