"""The training view made on the accelerator (``augment_on = accelerator``): the batch of decoded
garment windows the pipeline hands over becomes, in the model's training call, the same views the
CPU pipeline makes on the same draws; it runs under JAX; what is saved and exported has no trace
of it."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import tensorflow as tf

from fashion_keras.data import augment, pipeline
from fashion_keras.data.preprocess import resize_size
from fashion_keras.heads import Head, get_heads
from fashion_keras.models import batch_view
from tests.conftest import drawn_garment, run_under_jax, tiny_train_config

SIZE = 64
MARGIN = 0.1
#: Old and new views on the same draws, in 0-255 levels: measured mean 0.18 / 99th percentile
#: 3.6 (64 px views of 300 px photos) and 0.05 / 0.9 (600 px photos: DCT-scaled, antialiased).
#: The rest is the fill colour (the CPU view's mean is of every 4th pixel) and float rounding;
#: a shifted crop, a wrong mirror or scale differs by tens of levels.
MEAN_TOLERANCE, P99_TOLERANCE = 0.5, 8.0


def _window_batch(side: int, count: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``count`` garments: the padded window batch, its plans on the CPU view's own draws
    (``view_draws`` of each seed), and the CPU views (``train_view``) of the same seeds."""
    windows, plans, views = [], [], []
    for i in range(count):
        data, box = drawn_garment(i, side)
        seed = tf.constant([i, 7])
        view = augment.train_view(tf.constant(data), SIZE, tf.constant(box), MARGIN, seed)
        views.append(view.image.numpy())
        window, hw = augment.photo_for_batch_view(tf.constant(data), SIZE, tf.constant(box), MARGIN)
        windows.append(window.numpy())
        plans.append(np.concatenate([hw.numpy(), augment.view_draws(seed, SIZE).numpy()]))
    height = max(w.shape[0] for w in windows)
    width = max(w.shape[1] for w in windows)
    batch = np.zeros((count, height, width, 3), np.uint8)
    for i, w in enumerate(windows):
        batch[i, : w.shape[0], : w.shape[1]] = w
    return batch, np.stack(plans).astype(np.float32), np.stack(views)


@pytest.mark.parametrize("side", [300, 600])
def test_batch_views_are_the_cpu_views_on_the_same_draws(side):
    windows, plans, cpu_views = _window_batch(side)
    if side == 600:  # the DCT-scaled, antialiased case is exercised
        assert (plans[:, :2].max(axis=1) / resize_size(SIZE) > augment.ANTIALIAS_ABOVE).any()
    assert plans[:, 4].min() == 0 and plans[:, 4].max() == 1  # both mirrors are in the batch
    views = np.asarray(batch_view.batch_train_views(windows, plans, SIZE))
    assert views.shape == (8, SIZE, SIZE, 3)
    diff = np.abs(views - cpu_views)
    assert diff.mean() < MEAN_TOLERANCE and np.percentile(diff, 99) < P99_TOLERANCE, (
        diff.mean(),
        np.percentile(diff, 99),
    )
    # the mirror is in the plan, not in the window: the unmirrored view differs by far more
    unflipped = plans.copy()
    unflipped[:, 4] = 0
    other = np.asarray(batch_view.batch_train_views(windows, unflipped, SIZE))
    flipped = plans[:, 4] == 1
    assert np.abs(other[flipped] - cpu_views[flipped]).mean() > 10 * MEAN_TOLERANCE


def test_the_batch_draws_have_the_cpu_views_ranges():
    draws = augment.batch_draws(tf.constant([3, 4]), 4000, SIZE).numpy()
    room = resize_size(SIZE) - SIZE
    offsets = draws[:, :2]
    assert set(np.unique(offsets)) == set(range(room + 1))  # every offset, whole pixels
    assert 0.45 < draws[:, 2].mean() < 0.55 and set(np.unique(draws[:, 2])) == {0.0, 1.0}
    for column, low, high in ((3, -25.5, 25.5), (4, 0.8, 1.2), (5, 0.8, 1.2)):
        values = draws[:, column]
        assert low <= values.min() < low + 0.02 * (high - low)
        assert high - 0.02 * (high - low) < values.max() <= high
    again = augment.batch_draws(tf.constant([3, 4]), 4000, SIZE).numpy()
    np.testing.assert_array_equal(draws, again)  # a seed gives the same batch


def _examples(count: int = 12, side: int = 120) -> tf.data.Dataset:
    rows = [drawn_garment(i, side) for i in range(count)]
    labels = {h.name: np.arange(count) % h.num_classes for h in get_heads("deepfashion6")}
    return tf.data.Dataset.from_tensor_slices(
        {
            "image": [r[0] for r in rows],
            "bbox": np.stack([r[1] for r in rows]),
            "labels": labels,
        }
    )


def test_the_pipeline_hands_over_windows_and_plans():
    heads = get_heads("deepfashion6")
    ds = pipeline.make_dataset(_examples(), heads, SIZE, 4, True, seed=0, view_on="accelerator")
    x, targets, weights = next(iter(ds))
    assert sorted(x) == sorted([batch_view.PHOTO_KEY, batch_view.PLAN_KEY])
    window, plan = x[batch_view.PHOTO_KEY].numpy(), x[batch_view.PLAN_KEY].numpy()
    assert window.dtype == np.uint8 and plan.shape == (4, len(batch_view.PLAN_FIELDS))
    for image, (h, w) in zip(window, plan[:, :2], strict=True):
        # each window's decoded size; the batch pads it with zeros
        assert h >= 1 and w >= 1 and image[int(h) :].max(initial=0) == 0
        assert image[:, int(w) :].max(initial=0) == 0 and image[: int(h), : int(w)].max() > 0
    assert sorted(targets) == sorted(h.name for h in heads) == sorted(weights)
    views = np.asarray(batch_view.views_of(x, SIZE))
    assert views.shape == (4, SIZE, SIZE, 3) and 0 <= views.min() and views.max() <= 255


def test_runs_the_view_cannot_serve_are_refused():
    heads = get_heads("fashionai_keypoints")
    with pytest.raises(ValueError, match="keypoint heads .* use augment_on = 'cpu'"):
        pipeline.make_dataset(_examples(2), heads, SIZE, 2, True, view_on="accelerator")
    softmax = (Head("sleeve", ("short", "long")),)
    with pytest.raises(ValueError, match="augment_scale = 0.1"):
        augment.check_batch_view(softmax, [None], 0.1, 0.0)
    with pytest.raises(ValueError, match=r"region views \['collar'\]"):
        augment.check_batch_view(softmax, [None, "collar"], 0.0, 0.0)
    augment.check_batch_view(softmax, [None], 0.0, 0.0)


@pytest.mark.parametrize("gpu", [False, True])
def test_auto_makes_the_view_on_an_accelerator_where_the_run_allows(small_demo, monkeypatch, gpu):
    from fashion_keras.training import inputs

    monkeypatch.setattr(inputs, "accelerator_present", lambda: gpu)
    cfg = tiny_train_config(small_demo, "unused").resolve()
    assert cfg.optimization.augment_on == "auto"
    softmax, keypoints = get_heads("deepfashion6"), get_heads("fashionai_keypoints")
    assert inputs.view_on(cfg, softmax) == ("accelerator" if gpu else "cpu")
    assert inputs.view_on(cfg, keypoints) == "cpu"  # keypoint targets need the CPU view
    zoom = tiny_train_config(small_demo, "unused", augment_scale=0.1).resolve()
    assert inputs.view_on(zoom, softmax) == "cpu"
    cpu = tiny_train_config(small_demo, "unused", augment_on="cpu").resolve()
    assert inputs.view_on(cpu, softmax) == "cpu"


def test_training_on_the_accelerator_view_exports_the_plain_model(small_demo, tmp_path):
    from fashion_keras.training import inputs
    from fashion_keras.training.trainer import train

    cfg = tiny_train_config(
        small_demo, tmp_path / "run", augment_on="accelerator", epochs=1, steps_per_epoch=3
    )
    assert inputs.view_on(cfg.resolve(), get_heads("deepfashion6")) == "accelerator"
    result = train(cfg, export=True)
    assert np.isfinite(result.history["loss"][0])
    # the saved and exported model take images, as ever; the window keys appear nowhere
    loaded = tf.saved_model.load(result.export_path)
    signature = loaded.signatures["serving_default"]
    names = [*signature.structured_input_signature[1], *signature.structured_outputs]
    assert not any(batch_view.PHOTO_KEY in n or batch_view.PLAN_KEY in n for n in names)
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    direct = result.model.predict(images, verbose=0)
    assert set(direct) == {h.name for h in get_heads("deepfashion6")}


_JAX_SCRIPT = textwrap.dedent(
    """
    import sys
    try:
        import jax  # noqa: F401
    except ImportError:
        sys.exit(77)
    import keras
    import numpy as np
    from fashion_keras.heads import Head
    from fashion_keras.models import batch_view, build_model

    assert keras.backend.backend() == "jax", keras.backend.backend()
    data = np.load(sys.argv[1])
    views = np.asarray(batch_view.batch_train_views(data["windows"], data["plans"], 64))
    np.save(sys.argv[2], views)
    # a training step of the model on a window batch: the view runs inside the jitted step
    heads = (Head("sleeve", ("short", "long")),)
    model = build_model("seresnet_tiny", heads, image_size=64)
    model.compile("adam", loss={"sleeve": "categorical_crossentropy"})
    x = {batch_view.PHOTO_KEY: data["windows"], batch_view.PLAN_KEY: data["plans"]}
    y = {"sleeve": np.eye(2, dtype="float32")[np.arange(len(data["plans"])) % 2]}
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert not any(k.split(".")[0] == "tensorflow" for k in sys.modules), "tensorflow imported"
    print("OK")
    """
)


def test_the_view_runs_under_jax(tmp_path):
    windows, plans, _ = _window_batch(300)
    np.savez(tmp_path / "batch.npz", windows=windows, plans=plans)
    out = run_under_jax(_JAX_SCRIPT, str(tmp_path / "batch.npz"), str(tmp_path / "views.npy"))
    assert out.strip().endswith("OK")
    tf_views = np.asarray(batch_view.batch_train_views(windows, plans, SIZE))
    np.testing.assert_allclose(np.load(tmp_path / "views.npy"), tf_views, atol=0.05)
