"""keras.applications backbones (models.applications): the table's preprocessing against Keras'
own, stage groups, saving, weights (Keras' download from a local HTTP server, .h5 files),
freezing, two-phase training and per-layer rates on them."""

from __future__ import annotations

import functools
import hashlib
import http.server
import textwrap
import threading

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import run_under_jax

from fashion_keras.heads import get_heads
from fashion_keras.models import (
    APPLICATIONS,
    ApplicationBackbone,
    create_model,
    factory,
    get_backbone,
)
from fashion_keras.training import optimizers, phases
from fashion_keras.training import trainer as T
from fashion_keras.training.config import TrainConfig

HEADS = get_heads("deepfashion6")
SIZE = 32
#: built in the fast tier; the rest of the table is built in the slow tier
FAST = ("keras_densenet121", "keras_vgg16", "keras_efficientnet_v2_b0")


def _np(x) -> np.ndarray:
    return keras.ops.convert_to_numpy(x)


def _images(n: int = 2, size: int = SIZE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


def _params(names, fast=FAST):
    return [n if n in fast else pytest.param(n, marks=pytest.mark.slow) for n in names]


# ------------------------------------------------------------------ the table


@pytest.mark.parametrize("name", sorted(n for n, i in APPLICATIONS.items() if i.mode != "v2_sml"))
def test_mean_std_reproduce_keras_preprocess_input(name: str) -> None:
    """caffe / tf / torch modes: (x - mean) / std (then RGB -> BGR for caffe) equals Keras'
    ``preprocess_input`` of that mode; EfficientNetV2-B* and ConvNeXt use torch's statistics."""
    info = APPLICATIONS[name]
    x = _images(3)
    ours = (x - np.array(info.mean, "float32")) / np.array(info.std, "float32")
    if info.bgr:
        ours = ours[..., ::-1]
    keras_mode = "torch" if info.include_preprocessing else info.mode
    want = keras.applications.imagenet_utils.preprocess_input(x.copy(), mode=keras_mode)
    np.testing.assert_allclose(ours, want, rtol=1e-5, atol=1e-4)
    assert info.bgr == (info.mode == "caffe")


def _keras_features(name: str, backbone: ApplicationBackbone, x: np.ndarray) -> np.ndarray:
    """Keras' own model (its preprocessing inside, or ``preprocess_input``) with our weights."""
    info = APPLICATIONS[name]
    kwargs = {"include_preprocessing": True} if info.include_preprocessing else {}
    ref = getattr(keras.applications, info.constructor)(
        include_top=False, weights=None, input_shape=backbone.image_shape, **kwargs
    )
    ref.set_weights(backbone.get_weights())
    if not info.include_preprocessing:
        module = {
            "ResNet50": keras.applications.resnet,
            "VGG16": keras.applications.vgg16,
            "DenseNet121": keras.applications.densenet,
            "ResNet50V2": keras.applications.resnet_v2,
            "InceptionV3": keras.applications.inception_v3,
        }[info.constructor]
        x = module.preprocess_input(x.copy())
    return _np(ref(x, training=False))


@pytest.mark.parametrize(
    "name",
    _params(
        [
            "keras_vgg16",
            "keras_densenet121",
            "keras_efficientnet_v2_b0",
            "keras_resnet50",
            "keras_resnet50_v2",
            "keras_efficientnet_v2_s",
            "keras_convnext_tiny",
        ],
        fast=("keras_vgg16", "keras_densenet121", "keras_efficientnet_v2_b0"),
    ),
)
def test_classifier_features_equal_keras_with_its_own_preprocessing(name: str) -> None:
    """The classifier's normalize layer + backbone give the features of the Keras model fed as
    Keras documents (``preprocess_input`` / ``include_preprocessing=True``)."""
    model = create_model(name, HEADS, image_size=SIZE)
    features = keras.Model(model.input, model.get_layer("pool").input)
    x = _images(2)
    got = _np(features(x, training=False))
    want = _keras_features(name, model.backbone, x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", _params(sorted(APPLICATIONS)))
def test_every_application_builds_with_heads_and_groups(name: str) -> None:
    """Output, mean/std/bgr from the table, and stage groups that are non-empty, disjoint,
    cover every backbone layer and give each trainable variable its group's multiplier."""
    info = APPLICATIONS[name]
    size = max(SIZE, info.min_size)
    model = create_model(name, HEADS, image_size=size)
    backbone = model.backbone
    assert isinstance(backbone, ApplicationBackbone) and backbone.name == name
    assert model.mean == pytest.approx(info.mean) and model.std == pytest.approx(info.std)
    assert (backbone.layers[1].name == "reverse_channels") == info.bgr
    out = model.predict(_images(1, size), verbose=0)
    assert set(out) == {h.name for h in HEADS}
    assert backbone.output.shape[-1] == backbone.num_features
    assert backbone.num_stages == 4 == len(backbone.stage_blocks)

    groups = optimizers.layer_groups(model)
    assert list(groups) == ["stem", "layer1", "layer2", "layer3", "layer4", "heads"]
    inside = [g for g in groups if g != "heads"]
    assert all(groups[g] for g in groups)
    names = [n for g in inside for n in groups[g]]
    assert len(names) == len(set(names))
    assert sorted(names) == sorted(layer.name for layer in backbone.layers[1:])
    # the stages follow the network: each stage's output is no larger than the previous one's
    sizes = [backbone.get_layer(groups[g][-1]).output.shape[1] for g in inside]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] < sizes[0]

    factors = {g: 0.1 * (i + 1) for i, g in enumerate(groups)}
    opt = optimizers.make_optimizer(
        "adamw", optimizers.lr_multiplier_patterns(model, factors), learning_rate=1.0
    )
    owner = {}
    for g in groups:
        layers = [backbone.get_layer(n) for n in groups[g]] if g != "heads" else None
        for layer in layers or [model.get_layer(n) for n in groups[g]]:
            owner.update({id(v): g for v in layer.trainable_variables})
    assert len(owner) == len(model.trainable_variables)
    for v in model.trainable_variables:
        assert opt.multiplier_for(v) == pytest.approx(factors[owner[id(v)]]), v.path


def test_unknown_names_and_small_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="keras_densenet201.*keras.applications"):
        get_backbone("densenet201")
    with pytest.raises(ValueError, match="needs inputs of at least 75 px.*--image-size"):
        create_model("keras_inception_v3", HEADS, image_size=64)
    assert factory.default_image_size("keras_inception_v3", None) == (
        299,
        "keras.applications.InceptionV3",
    )
    assert factory.default_image_size("keras_efficientnet_v2_s", "imagenet")[0] == 384


def test_saved_model_loads_back_and_predicts_the_same(tmp_path) -> None:
    model = create_model("keras_vgg16", HEADS, image_size=SIZE, dropout=0.1)
    x = _images(2)
    want = model.predict(x, verbose=0)
    path = str(tmp_path / "vgg.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.backbone, ApplicationBackbone)
    assert loaded.backbone.get_config()["application"] == "keras_vgg16"
    assert loaded.mean == model.mean and loaded.std == model.std
    got = loaded.predict(x, verbose=0)
    for h in HEADS:
        np.testing.assert_allclose(got[h.name], want[h.name], rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ weights


def test_weights_files_load_and_bad_sources_name_the_fix(tmp_path) -> None:
    """A .weights.h5 of the plain keras.applications model loads into the backbone; a timm
    checkpoint or a missing file is refused before anything is built."""
    ref = keras.applications.DenseNet121(include_top=False, weights=None, input_shape=(40, 40, 3))
    path = str(tmp_path / "densenet121.weights.h5")
    ref.save_weights(path)
    model = create_model("keras_densenet121", HEADS, weights=path, image_size=SIZE)
    for a, b in zip(model.backbone.get_weights(), ref.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="'weights' = 'x.safetensors' is not a Keras .h5"):
        create_model("keras_densenet121", HEADS, weights="x.safetensors")
    missing = str(tmp_path / "nope.weights.h5")
    with pytest.raises(ValueError, match="nope.weights.h5' does not exist"):
        factory.check_weights("keras_densenet121", missing)


def _legacy_h5(model: keras.Model, path: str) -> str:
    """``model``'s weights in Keras' legacy .h5 layout (as keras.applications serves them)."""
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_imagenet_weights_come_from_keras_download_and_its_cache(tmp_path, monkeypatch) -> None:
    """``weights="imagenet"`` is Keras' own download: served here by a local HTTP server (the
    module's URL and hash patched), cached in $KERAS_HOME/models, reused with the server down."""
    from keras.src.applications import efficientnet_v2
    from keras.src.backend import config as keras_config

    served = tmp_path / "served"
    served.mkdir()
    ref = keras.applications.EfficientNetV2B0(
        include_top=False, weights=None, input_shape=(SIZE, SIZE, 3), include_preprocessing=False
    )
    for w in ref.weights:  # distinct from any fresh initialisation
        w.assign(np.random.default_rng(1).normal(0, 0.05, w.shape).astype("float32"))
    digest = _legacy_h5(ref, str(served / "efficientnetv2-b0_notop.h5"))

    handler = functools.partial(_Quiet, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    home = tmp_path / "keras_home"
    home.mkdir()  # Keras falls back to /tmp/.keras for a folder it cannot write
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(home))
    monkeypatch.setattr(
        efficientnet_v2, "BASE_WEIGHTS_PATH", f"http://127.0.0.1:{server.server_port}/"
    )
    monkeypatch.setitem(efficientnet_v2.WEIGHTS_HASHES, "b0", ("unused", digest))
    try:
        model = create_model("keras_efficientnet_v2_b0", HEADS, weights="imagenet", image_size=SIZE)
    finally:
        server.shutdown()
        server.server_close()
    cached = home / "models" / "efficientnetv2-b0_notop.h5"
    assert cached.is_file()
    want = ref.get_weights()
    for a, b in zip(model.backbone.get_weights(), want, strict=True):
        np.testing.assert_array_equal(a, b)
    again = create_model("keras_efficientnet_v2_b0", HEADS, weights="imagenet", image_size=SIZE)
    for a, b in zip(again.backbone.get_weights(), want, strict=True):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ training


def _batches(size: int = SIZE, n: int = 16, batch: int = 8) -> tf.data.Dataset:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (n, size, size, 3)).astype("float32")
    y = {
        h.name: np.eye(h.num_classes, dtype="float32")[rng.integers(0, h.num_classes, n)]
        for h in HEADS
    }
    w = {h.name: np.ones(n, "float32") for h in HEADS}
    return tf.data.Dataset.from_tensor_slices((x, y, w)).batch(batch).repeat()


def _snapshot(layers) -> list[np.ndarray]:
    return [_np(w).copy() for layer in layers for w in layer.weights]


def _same(a, b) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_two_phase_training_and_layer_rates_on_an_application_backbone() -> None:
    """Frozen phase: DenseNet weights and BatchNorm statistics fixed, heads move; fine-tune
    phase: stem (rate 0) fixed, later stages move."""
    model = create_model("keras_densenet121", HEADS, image_size=SIZE)
    cfg = TrainConfig(
        backbone="keras_densenet121", image_size=SIZE, batch_size=8, epochs=2, freeze_epochs=1,
        learning_rate=3e-3, lr_multipliers="stem=0", lr_schedule="constant",
        output_dir="unused", verbose=0,
    ).resolve()  # fmt: skip
    backbone = model.backbone
    stem = [backbone.get_layer(n) for n in backbone.stem_layer_names]
    stage4 = [backbone.get_layer(n) for n in backbone.stage_layer_names(4)]
    snaps: list[tuple[list, list, list]] = []

    class Snap(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None) -> None:
            snaps.append(
                (_snapshot(stem), _snapshot(stage4), _snapshot([model.get_layer("sleeve")]))
            )

    start = (_snapshot(stem), _snapshot(stage4), _snapshot([model.get_layer("sleeve")]))
    frozen_flags = []

    def compile_for(phase_cfg: TrainConfig) -> None:
        frozen_flags.append(not backbone.trainable)
        T.compile_model(model, HEADS, phase_cfg, 2)

    phases.fit_phases(
        model, cfg, compile_for, _batches(), callbacks=[Snap()], steps_per_epoch=2,
        shuffle=False, verbose=0,
    )  # fmt: skip
    assert frozen_flags == [True, False]
    assert isinstance(model.optimizer, optimizers.LayerwiseAdamW)
    (stem1, stage1, head1), (stem2, stage2, _) = snaps
    assert _same(stem1, start[0]) and _same(stage1, start[1])  # incl. BN moving statistics
    assert not _same(head1, start[2])
    stem_kernel = _np(backbone.get_layer("conv1_conv").kernel)
    np.testing.assert_array_equal(stem_kernel, _np(start[0][0]))  # rate 0 in phase 2
    assert not _same(stage2, stage1)


def test_summary_of_keras_resnet50_matches_the_paper() -> None:
    """keras.applications' ResNet50 is the Caffe ResNet-50 (stride on the first 1x1 conv): its
    per-stage summary adds up to the SENet paper's 25.6 M parameters and 3.86 GMACs."""
    from fashion_keras.models import summary

    result = summary.summarize_preset("keras_resnet50", 224)
    assert [g.name for g in result.groups] == [
        "stem",
        "layer1",
        "layer2",
        "layer3",
        "layer4",
        "head",
    ]
    assert result.layout == "keras.applications"
    assert result.params / 1e6 == pytest.approx(25.6, rel=0.005)
    assert result.macs / 1e9 == pytest.approx(3.86, rel=0.005)
    assert "keras_resnet50 (keras.applications) at 224x224 px" in summary.format_summary(result)


_JAX_SCRIPT = textwrap.dedent(
    """
    import sys
    try:
        import jax  # noqa: F401
    except ImportError:
        sys.exit(77)
    import keras
    import numpy as np
    from fashion_keras.models import create_model

    assert keras.backend.backend() == "jax", keras.backend.backend()
    for name in ("keras_vgg16", "keras_efficientnet_v2_b0"):
        m = create_model(name, "deepfashion6", image_size=32)
        out = m.predict(np.zeros((2, 32, 32, 3), "float32"), verbose=0)
        for h in m.heads:
            np.testing.assert_allclose(np.asarray(out[h.name]).sum(axis=1), 1.0, rtol=1e-5)
    assert not any(k.split(".")[0] == "tensorflow" for k in sys.modules), "tensorflow imported"
    print("OK")
    """
)


def test_application_backbones_run_under_jax() -> None:
    assert run_under_jax(_JAX_SCRIPT).strip().endswith("OK")
