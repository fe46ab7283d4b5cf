"""Tests for fashion_keras.training.keypoint_losses: target maps, hand-computed values, the
masks (absent never, occluded by option), zero gradient where masked, serialisation, a short fit
that finds a bright dot, and the same under JAX."""

from __future__ import annotations

import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import run_under_jax

from fashion_keras.training.keypoint_losses import (
    KeypointHeatmapLoss,
    KeypointVisibilityLoss,
    target_heatmaps,
)


def _np(x) -> np.ndarray:
    return keras.ops.convert_to_numpy(x)


def _log_softmax_hw(logits: np.ndarray) -> np.ndarray:
    """NumPy log-softmax over axes 1, 2 of (N, H, W, K), float64."""
    z = logits.astype("float64")
    z = z - z.max(axis=(1, 2), keepdims=True)
    return z - np.log(np.exp(z).sum(axis=(1, 2), keepdims=True))


def _reference_ce(logits: np.ndarray, points: np.ndarray, stride: int, sigma: float) -> np.ndarray:
    """Per-keypoint cross-entropy (N, K) written out with NumPy: a Gaussian target at
    ``((x - (s - 1) / 2) / s, (y - (s - 1) / 2) / s)`` in cells, normalised to sum 1."""
    n, h, w, k = logits.shape
    ys, xs = np.mgrid[:h, :w]
    out = np.zeros((n, k))
    logp = _log_softmax_hw(logits)
    for i in range(n):
        for j in range(k):
            u = (points[i, j, 0] - (stride - 1) / 2) / stride
            v = (points[i, j, 1] - (stride - 1) / 2) / stride
            t = np.exp(-((xs - u) ** 2 + (ys - v) ** 2) / (2 * sigma**2))
            t /= t.sum()
            out[i, j] = -(t * logp[i, :, :, j]).sum()
    return out


def _batch(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """4x4 heatmap logits at stride 2 (an 8x8 image), 2 examples x 3 keypoints, with
    v = [[1, 0, -1], [1, 1, 0]]."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, size=(2, 4, 4, 3)).astype("float32")
    y = np.array(
        [
            [[3.1, 4.7, 1], [1.0, 6.2, 0], [-1, -1, -1]],
            [[6.4, 0.3, 1], [2.5, 2.5, 1], [5.0, 1.0, 0]],
        ],
        "float32",
    )
    return logits, y


# --- target maps ------------------------------------------------------------------------------


def test_bilinear_target_hand_values() -> None:
    # x = 3.1, y = 4.7 at stride 2 -> cells (1.3, 2.1): columns 1/2 weigh 0.7/0.3, rows 2/3 0.9/0.1
    t = _np(target_heatmaps(np.array([[[3.1, 4.7, 1]]], "float32"), 4, 4, 2, 0.0))[0, :, :, 0]
    expected = np.zeros((4, 4))
    expected[2, 1], expected[2, 2], expected[3, 1], expected[3, 2] = 0.63, 0.27, 0.07, 0.03
    np.testing.assert_allclose(t, expected, atol=1e-6)
    ys, xs = np.mgrid[:4, :4]
    np.testing.assert_allclose([(t * xs).sum(), (t * ys).sum()], [1.3, 2.1], atol=1e-6)


def test_gaussian_target_matches_numpy() -> None:
    y = np.array([[[9.0, 13.0, 1], [30.0, 2.0, 0]]], "float32")
    t = _np(target_heatmaps(y, 6, 8, 4, 1.5))
    assert t.shape == (1, 6, 8, 2)
    np.testing.assert_allclose(t.sum(axis=(1, 2)), 1.0, rtol=1e-5)
    ys, xs = np.mgrid[:6, :8]
    g = np.exp(-((xs - 1.875) ** 2 + (ys - 2.875) ** 2) / (2 * 1.5**2))
    np.testing.assert_allclose(t[0, :, :, 0], g / g.sum(), rtol=1e-5, atol=1e-7)


# --- the heatmap loss -------------------------------------------------------------------------


def test_uniform_logits_give_log_of_the_cell_count() -> None:
    _, y = _batch()
    loss = KeypointHeatmapLoss(stride=2, sigma=1.0)(y, np.zeros((2, 4, 4, 3), "float32"))
    np.testing.assert_allclose(float(loss), np.log(16), rtol=1e-6)


@pytest.mark.parametrize("sigma", [0.7, 2.0])
def test_hand_computed_value_on_a_4x4_heatmap(sigma: float) -> None:
    logits, y = _batch()
    ce = _reference_ce(logits, y, 2, sigma)
    counted = np.array([[1, 1, 0], [1, 1, 1]], bool)  # count_occluded=True: all but v = -1
    loss = KeypointHeatmapLoss(stride=2, sigma=sigma)(y, logits)
    np.testing.assert_allclose(float(loss), ce[counted].mean(), rtol=1e-5)
    per_point = _np(KeypointHeatmapLoss(stride=2, sigma=sigma, reduction="none")(y, logits))
    np.testing.assert_allclose(per_point, np.where(counted, ce, 0.0), rtol=1e-5, atol=1e-6)


def test_coordinate_term_is_the_l1_of_the_soft_argmax_in_cells() -> None:
    logits, y = _batch(1)
    p = np.exp(_log_softmax_hw(logits))
    ys, xs = np.mgrid[:4, :4]
    sx = (p * xs[None, :, :, None]).sum(axis=(1, 2))
    sy = (p * ys[None, :, :, None]).sum(axis=(1, 2))
    l1 = np.abs(sx - (y[..., 0] - 0.5) / 2) + np.abs(sy - (y[..., 1] - 0.5) / 2)
    counted = y[..., 2] >= 0
    plain = float(KeypointHeatmapLoss(stride=2, sigma=1.0)(y, logits))
    both = float(KeypointHeatmapLoss(stride=2, sigma=1.0, coord_weight=0.5)(y, logits))
    np.testing.assert_allclose(both - plain, 0.5 * l1[counted].mean(), rtol=1e-4)


def test_absent_keypoints_change_nothing_and_get_no_gradient() -> None:
    logits, y = _batch()
    loss_fn = KeypointHeatmapLoss(stride=2, sigma=1.0, coord_weight=0.3)
    base = float(loss_fn(y, logits))
    other = logits.copy()
    other[0, :, :, 2] = np.random.default_rng(9).normal(0, 5, (4, 4))  # the absent point's map
    moved = y.copy()
    moved[0, 2, :2] = (np.nan, 1e6)  # its coordinates: garbage
    assert float(loss_fn(moved, other)) == pytest.approx(base, rel=1e-6)
    var = tf.Variable(logits)
    with tf.GradientTape() as tape:
        loss = loss_fn(moved, var)
    grad = tape.gradient(loss, var).numpy()
    assert np.isfinite(grad).all()
    assert np.count_nonzero(grad[0, :, :, 2]) == 0
    assert np.count_nonzero(grad[0, :, :, :2]) > 0 and np.count_nonzero(grad[1]) > 0


def test_count_occluded_changes_exactly_the_occluded_contribution() -> None:
    logits, y = _batch()
    ce = _reference_ce(logits, y, 2, 1.0)
    on = KeypointHeatmapLoss(stride=2, sigma=1.0, reduction="none")
    off = KeypointHeatmapLoss(stride=2, sigma=1.0, count_occluded=False, reduction="none")
    per_on, per_off = _np(on(y, logits)), _np(off(y, logits))
    occluded, visible = y[..., 2] == 0, y[..., 2] == 1
    np.testing.assert_allclose(per_on[occluded], ce[occluded], rtol=1e-5)
    assert (per_off[occluded] == 0).all()
    np.testing.assert_array_equal(per_on[~occluded], per_off[~occluded])
    mean_off = float(KeypointHeatmapLoss(stride=2, sigma=1.0, count_occluded=False)(y, logits))
    np.testing.assert_allclose(mean_off, ce[visible].mean(), rtol=1e-5)
    # occluded logits do not matter when they do not count
    other = logits.copy()
    other[occluded.nonzero()[0], :, :, occluded.nonzero()[1]] += 3.0 * np.arange(16).reshape(4, 4)
    mean_off2 = float(KeypointHeatmapLoss(stride=2, sigma=1.0, count_occluded=False)(y, other))
    assert mean_off2 == pytest.approx(mean_off, rel=1e-6)


def test_nothing_counted_gives_zero_loss_and_zero_gradient() -> None:
    logits, y = _batch()
    y[..., 2] = -1
    for loss_fn in (KeypointHeatmapLoss(stride=2, coord_weight=1.0), KeypointVisibilityLoss()):
        pred = logits if isinstance(loss_fn, KeypointHeatmapLoss) else np.full((2, 3), 0.3)
        var = tf.Variable(pred.astype("float32"))
        with tf.GradientTape() as tape:
            loss = loss_fn(y, var)
        assert float(loss) == 0.0
        assert np.count_nonzero(tape.gradient(loss, var).numpy()) == 0


def test_sample_weights_drop_rows_and_weigh_keypoints() -> None:
    logits, y = _batch()
    loss_fn = KeypointHeatmapLoss(stride=2, sigma=1.0)
    ce = _reference_ce(logits, y, 2, 1.0)
    row0 = float(loss_fn(y, logits, sample_weight=np.array([1.0, 0.0])))
    np.testing.assert_allclose(row0, ce[0, :2].mean(), rtol=1e-5)
    np.testing.assert_allclose(row0, float(loss_fn(y[:1], logits[:1])), rtol=1e-6)
    w = np.array([[2.0, 1.0, 5.0], [0.0, 1.0, 1.0]])  # the 5 sits on the absent keypoint
    counted = w * (y[..., 2] >= 0)
    np.testing.assert_allclose(
        float(loss_fn(y, logits, sample_weight=w)), (counted * ce).sum() / counted.sum(), rtol=1e-5
    )
    with pytest.raises(ValueError, match=r"sample_weight shape \(2, 3, 1\) must be"):
        loss_fn(y, logits, sample_weight=np.ones((2, 3, 1)))


def test_compiled_loss_with_sample_weights_matches_the_direct_call() -> None:
    """Through ``compile`` / ``evaluate`` (Keras passes the ``(N,)`` sample weight) the value is
    the direct call's: the keypoint mask and the row weights both apply."""
    logits, y = _batch()
    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, keras.layers.Identity()(inputs))
    loss_fn = KeypointHeatmapLoss(stride=2, sigma=1.0)
    model.compile(loss=loss_fn)
    w = np.array([1.0, 0.0], "float32")
    value = model.evaluate(logits, y, sample_weight=w, batch_size=2, verbose=0)
    np.testing.assert_allclose(value, float(loss_fn(y, logits, sample_weight=w)), rtol=1e-5)
    np.testing.assert_allclose(value, _reference_ce(logits, y, 2, 1.0)[0, :2].mean(), rtol=1e-5)


# --- the visibility loss ----------------------------------------------------------------------


def _bce(label: np.ndarray, p: np.ndarray) -> np.ndarray:
    return -(label * np.log(p) + (1 - label) * np.log(1 - p))


@pytest.mark.parametrize("target", ["visible", "annotated"])
def test_visibility_loss_hand_values(target: str) -> None:
    _, y = _batch()
    p = np.array([[0.8, 0.3, 0.6], [0.4, 0.9, 0.2]], "float32")
    v = y[..., 2]
    if target == "visible":
        labels, counted = (v == 1).astype(float), v >= 0
    else:
        labels, counted = (v >= 0).astype(float), np.ones_like(v, bool)
    expected = _bce(labels, p.astype("float64"))[counted].mean()
    loss = KeypointVisibilityLoss(target=target)(y, p)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    logits = np.log(p / (1 - p))
    loss2 = KeypointVisibilityLoss(target=target, from_logits=True)(y, logits)
    np.testing.assert_allclose(float(loss2), expected, rtol=1e-4)
    # the absent keypoint's prediction matters only for "annotated"
    q = p.copy()
    q[0, 2] = 0.01
    changed = float(KeypointVisibilityLoss(target=target)(y, q)) != pytest.approx(float(loss))
    assert changed == (target == "annotated")


# --- configuration, errors --------------------------------------------------------------------


def test_losses_serialise() -> None:
    h = KeypointHeatmapLoss(stride=8, sigma=0.0, count_occluded=False, coord_weight=0.25)
    h2 = keras.losses.deserialize(keras.losses.serialize(h))
    assert isinstance(h2, KeypointHeatmapLoss)
    assert (h2.stride, h2.sigma, h2.count_occluded, h2.coord_weight) == (8, 0.0, False, 0.25)
    assert h2.reduction == "mean_with_sample_weight"
    v2 = keras.losses.deserialize(
        keras.losses.serialize(KeypointVisibilityLoss("annotated", from_logits=True, name="vis"))
    )
    assert isinstance(v2, KeypointVisibilityLoss)
    assert (v2.target, v2.from_logits, v2.name) == ("annotated", True, "vis")


def test_argument_and_shape_errors() -> None:
    logits, y = _batch()
    with pytest.raises(ValueError, match="stride = 0 must be an int >= 1"):
        KeypointHeatmapLoss(stride=0)
    with pytest.raises(ValueError, match="sigma = -1 must be a number >= 0"):
        KeypointHeatmapLoss(sigma=-1)
    with pytest.raises(ValueError, match="count_occluded = 'yes' must be True or False"):
        KeypointHeatmapLoss(count_occluded="yes")
    with pytest.raises(ValueError, match=r"target = 'present'; expected one of"):
        KeypointVisibilityLoss(target="present")
    with pytest.raises(ValueError, match=r"y_true shape \(2, 3, 2\) must be \(N, K, 3\)"):
        KeypointHeatmapLoss(stride=2)(y[..., :2], logits)
    with pytest.raises(ValueError, match=r"y_pred shape \(2, 16, 3\) must be \(N, H, W, K\)"):
        KeypointHeatmapLoss(stride=2)(y, logits.reshape(2, 16, 3))
    with pytest.raises(ValueError, match=r"y_pred shape \(2, 3, 1\) must be \(N, K\)"):
        KeypointVisibilityLoss()(y, np.full((2, 3, 1), 0.5, "float32"))


# --- training ---------------------------------------------------------------------------------

#: Shared by the TensorFlow test and the JAX subprocess: a seresnet_tiny + heatmap head fitted
#: for 60 steps on 16 images, each a bright blurred dot, keypoint 0 on the dot, keypoint 1 absent.
_FIT = textwrap.dedent(
    """
    import keras
    import numpy as np
    from fashion_keras.models import get_backbone
    from fashion_keras.models.keypoint_layers import KeypointHeatmapHead, SpatialSoftmaxArgmax
    from fashion_keras.training.keypoint_losses import KeypointHeatmapLoss, KeypointVisibilityLoss


    def fit_dots():
        keras.utils.set_random_seed(0)
        size, n = 64, 16
        rng = np.random.default_rng(0)
        dots = rng.uniform(8, size - 9, size=(n, 2))
        yy, xx = np.mgrid[:size, :size]
        d2 = (xx[None] - dots[:, 0, None, None]) ** 2 + (yy[None] - dots[:, 1, None, None]) ** 2
        images = np.repeat(3.0 * np.exp(-d2 / 8.0)[..., None], 3, axis=-1).astype("float32")
        y = np.zeros((n, 2, 3), "float32")
        y[:, 0, :2], y[:, 0, 2], y[:, 1] = dots, 1, -1
        inputs = keras.Input((size, size, 3))
        head = KeypointHeatmapHead(2, filters=32, name="kp")
        heatmaps, visibility = head(get_backbone("seresnet_tiny", image_shape=(size, size, 3))(inputs))
        model = keras.Model(inputs, {"kp_heatmaps": heatmaps, "kp_visibility": visibility})
        reader = SpatialSoftmaxArgmax(head.stride)

        def error():
            points = keras.ops.convert_to_numpy(reader(model(images, training=False)["kp_heatmaps"]))
            return float(np.linalg.norm(points[:, 0, :2] - dots, axis=1).mean())

        before = error()
        model.compile(
            optimizer=keras.optimizers.Adam(3e-3),
            loss={
                "kp_heatmaps": KeypointHeatmapLoss(stride=head.stride),
                "kp_visibility": KeypointVisibilityLoss(),
            },
        )
        history = model.fit(
            images, {"kp_heatmaps": y, "kp_visibility": y}, batch_size=8, epochs=30, verbose=0
        )
        losses = history.history["loss"]
        return before, error(), losses[0], losses[-1]
    """
)


def test_a_short_fit_finds_the_dot() -> None:
    namespace: dict = {}
    exec(compile(_FIT, "<fit>", "exec"), namespace)  # the script the JAX test runs too
    before, after, first_loss, last_loss = namespace["fit_dots"]()
    assert before > 10.0, before  # the untrained head points near the image centre
    assert after < 0.35 * before, (before, after)
    assert last_loss < first_loss


_JAX_SCRIPT = (
    textwrap.dedent(
        """
        import sys
        try:
            import jax
        except ImportError:
            sys.exit(77)
        """
    )
    + _FIT
    + textwrap.dedent(
        """
        assert keras.backend.backend() == "jax", keras.backend.backend()
        # masked keypoints get exactly zero gradient under jax.grad too
        rng = np.random.default_rng(0)
        logits = rng.normal(size=(2, 4, 4, 3)).astype("float32")
        y = np.array([[[3.1, 4.7, 1], [1, 6.2, 0], [-1, -1, -1]],
                      [[6.4, 0.3, 1], [2.5, 2.5, 1], [5, 1, 0]]], "float32")
        loss_fn = KeypointHeatmapLoss(stride=2, sigma=1.0, count_occluded=False, coord_weight=0.3)
        g = np.asarray(jax.grad(lambda z: loss_fn(y, z))(logits))
        assert np.isfinite(g).all()
        assert not g[0, :, :, 1:].any() and not g[1, :, :, 2].any(), "masked point has gradient"
        assert g[0, :, :, 0].any() and g[1, :, :, :2].any()
        y_none = y.copy(); y_none[..., 2] = -1
        assert float(loss_fn(y_none, logits)) == 0.0
        assert not np.asarray(jax.grad(lambda z: loss_fn(y_none, z))(logits)).any()
        # (Keras' fit imports tensorflow when installed, for its data adapters; the losses must not)
        assert not any(k.split(".")[0] == "tensorflow" for k in sys.modules), "tensorflow imported"
        before, after, first, last = fit_dots()
        assert after < 0.35 * before and last < first, (before, after, first, last)
        print("OK", before, after)
        """
    )
)


def test_losses_and_fit_under_jax_backend() -> None:
    out = run_under_jax(_JAX_SCRIPT, timeout=900)
    assert out.strip().splitlines()[-1].startswith("OK")
