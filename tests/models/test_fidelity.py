"""The Keras backbones compute timm's functions (needs the `test` extra: torch, torchvision, timm).

Each timm model gets random weights (BatchNorm affine parameters and running statistics
randomised too, so no block is an identity), is saved as .safetensors, converted, and the
pooled features are compared in eval mode: max abs difference <= 1e-4. timm runs in a
subprocess (tests/models/timm_reference.py): torchvision and TensorFlow crash in one process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from fashion_keras.models import BACKBONE_PRESETS, PRETRAINED, Backbone, get_backbone
from fashion_keras.models import checkpoints as C
from fashion_keras.models.summary import summarize_preset

_MISSING = [m for m in ("torch", "torchvision", "timm") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(
    bool(_MISSING),
    reason=f"the fidelity tests need the `test` extra (pip install -e '.[test]'): "
    f"{', '.join(_MISSING)} missing",
)

TOLERANCE = 1e-4
PRESETS = sorted(n for n in BACKBONE_PRESETS if n != "seresnet_tiny")
REFERENCE = str(pathlib.Path(__file__).with_name("timm_reference.py"))


def run_reference(out: pathlib.Path, **spec) -> dict:
    """Runs timm_reference.py on ``spec``; returns its result.json."""
    out.mkdir(parents=True, exist_ok=True)
    spec_path = out / "spec.json"
    spec_path.write_text(json.dumps({"out": str(out), **spec}))
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    proc = subprocess.run(
        [sys.executable, REFERENCE, str(spec_path)], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((out / "result.json").read_text())


def keras_features(backbone: Backbone, x_nchw: np.ndarray) -> np.ndarray:
    y = backbone(np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1)), training=False)
    return keras.ops.convert_to_numpy(y).mean(axis=(1, 2))


def max_diff(backbone: Backbone, ref: pathlib.Path, stem: str, size: int) -> tuple[float, float]:
    """(max abs difference to timm, max abs timm feature) for input size ``size``."""
    x = np.load(ref / f"{stem}.{size}.x.npy")
    want = np.load(ref / f"{stem}.{size}.features.npy")
    return float(np.abs(keras_features(backbone, x) - want).max()), float(np.abs(want).max())


def tiny_timm() -> Backbone:
    """timm ``ResNet(Bottleneck, (1, 1, 1, 1), channels=(16, 32, 64, 128), attn_layer='se')``
    (timm's 7x7 stem always has 64 channels)."""
    return Backbone((1, 1, 1, 1), (16, 32, 64, 128), se=True, stem_width=64, name="tiny_timm")


def senet_small(resnext: bool, **kwargs) -> Backbone:
    extra = {"groups": 32, "base_width": 4} if resnext else {"stride_in_1x1": True}
    return Backbone(
        (1, 1, 1, 1), (64, 128, 256, 512), se=True, layout="legacy", **{**extra, **kwargs}
    )


# ---------------------------------------------------------------- fast tier: small models


@pytest.fixture(scope="module")
def small_refs(tmp_path_factory) -> tuple[pathlib.Path, dict]:
    out = tmp_path_factory.mktemp("timm_small")
    result = run_reference(
        out,
        models=[
            {"id": "tiny", "build": "tiny", "seed": 1, "sizes": [64, 65]},
            {"id": "senet", "build": "senet", "seed": 2, "sizes": [64, 67]},
            {"id": "senetx", "build": "senetx", "seed": 3, "sizes": [65]},
        ],
        cfgs=sorted(PRETRAINED),
        flops=[[n, 96] for n in ("seresnet50", "legacy_seresnet50", "seresnext50_32x4d")],
    )
    return out, result


@pytest.mark.parametrize("size", [64, 65])
def test_tiny_timm_layout(small_refs, size: int) -> None:
    ref, _ = small_refs
    backbone = tiny_timm()
    report = C.load_backbone_weights(backbone, str(ref / "tiny.safetensors"))
    assert {"fc.bias", "fc.weight"} <= set(report.ignored)
    diff, scale = max_diff(backbone, ref, "tiny", size)
    assert diff <= TOLERANCE and scale > 0.1


@pytest.mark.parametrize(("stem", "size"), [("senet", 64), ("senet", 67), ("senetx", 65)])
def test_small_senet_legacy_layout(small_refs, stem: str, size: int) -> None:
    # odd sizes exercise the ceil-mode max-pool and the strided 1x1 convs on odd maps
    ref, _ = small_refs
    backbone = senet_small(resnext=stem == "senetx")
    report = C.load_backbone_weights(backbone, str(ref / f"{stem}.safetensors"))
    assert {"last_linear.bias", "last_linear.weight"} <= set(report.ignored)
    diff, scale = max_diff(backbone, ref, stem, size)
    assert diff <= TOLERANCE and scale > 0.1


def test_stride_placement_matters(small_refs) -> None:
    """Negative control: the senet.py SE-ResNet weights in a network that strides the 3x3 conv
    (the one difference the weights cannot show) give clearly different features."""
    ref, _ = small_refs
    wrong = senet_small(resnext=False, stride_in_1x1=False)
    C.load_backbone_weights(wrong, str(ref / "senet.safetensors"))
    diff, _ = max_diff(wrong, ref, "senet", 64)
    assert diff > 1e-2


def test_exported_state_dict_loads_into_timm_strictly(tmp_path) -> None:
    """Keras -> timm: backbone_state_dict is a complete timm state dict (strict load)."""
    backbone = tiny_timm()
    rng = np.random.default_rng(0)
    state = {
        k: (rng.uniform(0.5, 1.5, s) if k.endswith("running_var") else rng.normal(0, 0.2, s))
        for k, s in C.expected_keys(backbone).items()
    }
    C.load_state_dict(backbone, {k: v.astype("float32") for k, v in state.items()})
    exported = tmp_path / "exported.safetensors"
    C.save_state_dict(C.backbone_state_dict(backbone), str(exported))
    ref = tmp_path / "ref"
    run_reference(ref, strict=[{"id": "strict", "build": "tiny", "state": str(exported)}])
    diff, scale = max_diff(backbone, ref, "strict", 64)
    assert diff <= TOLERANCE and scale > 0.1


def test_pth_checkpoints_weights_only(small_refs, tmp_path) -> None:
    torch = pytest.importorskip("torch")  # torch alone (without torchvision) is safe here
    ref, _ = small_refs
    state = {
        k: torch.from_numpy(v) for k, v in C.read_state_dict(str(ref / "tiny.safetensors")).items()
    }
    plain = tmp_path / "plain.pth"
    torch.save(state, plain)
    wrapped = tmp_path / "train_checkpoint.pth.tar"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, wrapped)
    for path in (plain, wrapped):
        backbone = tiny_timm()
        C.load_backbone_weights(backbone, str(path))
        assert max_diff(backbone, ref, "tiny", 64)[0] <= TOLERANCE

    evil = tmp_path / "evil.pth"
    torch.save({"conv1.weight": _NotATensor()}, evil)
    with pytest.raises(C.CheckpointError, match="weights-only") as e:
        C.read_state_dict(str(evil))
    assert str(evil) in str(e.value)


class _NotATensor:
    """An arbitrary pickled object: weights-only loading must refuse it."""


def test_pretrained_table_matches_timm(small_refs) -> None:
    _, result = small_refs
    assert set(PRETRAINED) == set(PRESETS)
    for name, info in PRETRAINED.items():
        cfg = result["cfgs"][name]
        assert info.tag == (None if cfg["tag"] == "untrained" else cfg["tag"]), name
        assert info.hf_hub_id == cfg.get("hf_hub_id"), name
        if info.url:
            assert info.url == cfg["url"], name
        assert info.input_size == cfg["input_size"][-1], name
        test_size = cfg.get("test_input_size")
        assert info.test_input_size == (test_size[-1] if test_size else None), name
        assert info.interpolation == cfg["interpolation"], name
        assert info.crop_pct == cfg["crop_pct"], name
        np.testing.assert_allclose(info.mean, cfg["mean"])
        np.testing.assert_allclose(info.std, cfg["std"])


def test_macs_match_torch_flop_counter(small_refs) -> None:
    """The analytic MACs (convs + FCs) are PyTorch's FLOP count / 2 for timm's models."""
    _, result = small_refs
    for key, ref in result["flops"].items():
        name, size = key.split("@")
        ours = summarize_preset(name, image_size=int(size))
        assert sum(g.macs for g in ours.groups) * 2 == ref["flops"], key
        assert ours.params == ref["params"], key


# ---------------------------------------------------------------- every preset (slow tier)


@pytest.fixture(scope="module")
def preset_refs(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("timm_presets")
    models = [{"id": n, "build": f"timm:{n}", "seed": 0, "sizes": [64]} for n in PRESETS]
    run_reference(out, models=models)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", PRESETS)
def test_preset_matches_timm(preset_refs, name: str) -> None:
    backbone = get_backbone(name, image_shape=(64, 64, 3))
    report = C.load_backbone_weights(backbone, str(preset_refs / f"{name}.safetensors"))
    assert report.loaded == len(backbone.weights)
    diff, scale = max_diff(backbone, preset_refs, name, 64)
    print(f"{name}: max abs diff {diff:.2e} (pooled features up to {scale:.2f})")
    assert diff <= TOLERANCE
    assert scale > 0.1  # not a degenerate (all-zero) comparison


_BACKEND_SCRIPT = textwrap.dedent(
    """
    import sys
    import keras
    import numpy as np
    from fashion_keras.models import get_backbone
    from fashion_keras.models import checkpoints as C

    backend, ckpt, x_path, want_path = sys.argv[1:]
    assert keras.backend.backend() == backend, keras.backend.backend()
    backbone = get_backbone("legacy_seresnext50_32x4d", image_shape=(64, 64, 3))
    C.load_backbone_weights(backbone, ckpt)
    x = np.load(x_path)
    y = keras.ops.convert_to_numpy(backbone(x.transpose(0, 2, 3, 1), training=False))
    diff = np.abs(y.mean(axis=(1, 2)) - np.load(want_path)).max()
    assert not any(k.split(".")[0] == "tensorflow" for k in sys.modules), "tensorflow imported"
    print(f"DIFF {diff:.3e}")
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_converted_model_on_other_backends(preset_refs, backend: str) -> None:
    """A converted timm checkpoint (grouped convs, senet.py layout) on the torch / jax backends."""
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    name = "legacy_seresnext50_32x4d"
    env = {**os.environ, "KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu"}
    args = [
        str(preset_refs / f"{name}.safetensors"),
        str(preset_refs / f"{name}.64.x.npy"),
        str(preset_refs / f"{name}.64.features.npy"),
    ]
    proc = subprocess.run(
        [sys.executable, "-c", _BACKEND_SCRIPT, backend, *args],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    diff = float(proc.stdout.strip().split("DIFF ")[-1])
    print(f"{name} on {backend}: max abs diff {diff:.2e}")
    assert diff <= TOLERANCE
