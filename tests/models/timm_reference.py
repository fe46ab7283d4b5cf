"""Reference outputs from timm, computed in a separate process (used by test_fidelity.py).

TensorFlow and torchvision (which timm imports) crash when loaded into one process
(segmentation fault), so the tests run timm here, without TensorFlow:

    python tests/models/timm_reference.py SPEC.json

SPEC (JSON): ``out`` folder; ``models``: ``[{"id", "build", "seed", "sizes", "input_seed"}]``
where ``build`` is ``tiny`` (SE-ResNet, 64-channel stem, stages of one block, widths
16-128), ``senet`` /
``senetx`` (senet.py SE-ResNet / SE-ResNeXt with one block per stage) or ``timm:<name>``;
each writes ``<id>.safetensors`` (random weights, BatchNorm statistics randomised too) and, per
size S, ``<id>.<S>.x.npy`` (NCHW input) and ``<id>.<S>.features.npy`` (pooled features, eval
mode). ``strict``: ``[{"id", "build", "state", "size", "input_seed"}]`` loads ``state`` with
``load_state_dict(strict=True)`` and writes the features likewise. ``cfgs``: model names whose
``pretrained_cfg`` go to ``result.json``; ``flops``: ``[[name, size]]`` forward FLOPs counted
by ``torch.utils.flop_counter`` and parameter counts, also in ``result.json``.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import timm
import torch
from safetensors.torch import save_file


def randomize(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random BN affine parameters and running statistics (timm zero-inits the last BN)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) * 0.5 + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return model.eval()


def build(kind: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    if kind == "tiny":
        from timm.models.resnet import Bottleneck, ResNet

        return ResNet(
            Bottleneck,
            (1, 1, 1, 1),
            channels=(16, 32, 64, 128),
            block_args={"attn_layer": "se"},
            num_classes=10,
        )
    if kind in ("senet", "senetx"):
        from timm.models.senet import SENet, SEResNetBottleneck, SEResNeXtBottleneck

        resnext = kind == "senetx"
        block = SEResNeXtBottleneck if resnext else SEResNetBottleneck
        return SENet(block, [1, 1, 1, 1], groups=32 if resnext else 1, reduction=16, num_classes=10)
    if kind.startswith("timm:"):
        return timm.create_model(kind[len("timm:") :], pretrained=False)
    raise ValueError(f"unknown build {kind!r}")


def features(model: torch.nn.Module, out: str, stem: str, size: int, input_seed: int) -> None:
    x = np.random.default_rng(input_seed).normal(size=(2, 3, size, size)).astype("float32")
    with torch.no_grad():
        f = model.forward_head(model.forward_features(torch.from_numpy(x)), pre_logits=True)
    np.save(os.path.join(out, f"{stem}.{size}.x.npy"), x)
    np.save(os.path.join(out, f"{stem}.{size}.features.npy"), f.numpy())


def main(spec_path: str) -> None:
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    out = spec["out"]
    os.makedirs(out, exist_ok=True)
    result: dict = {"cfgs": {}, "flops": {}}
    for m in spec.get("models", []):
        model = randomize(build(m["build"], m.get("seed", 0)), m.get("seed", 0))
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(state, os.path.join(out, f"{m['id']}.safetensors"), metadata={"format": "pt"})
        for size in m.get("sizes", [64]):
            features(model, out, m["id"], size, m.get("input_seed", 0))
    for m in spec.get("strict", []):
        from safetensors.torch import load_file

        model = build(m["build"], 0).eval()
        state = load_file(m["state"])
        state.update({k: v for k, v in model.state_dict().items() if k.startswith("fc.")})
        model.load_state_dict(state, strict=True)
        features(model, out, m["id"], m.get("size", 64), m.get("input_seed", 0))
    for name in spec.get("cfgs", []):
        cfg = timm.create_model(name, pretrained=False).pretrained_cfg
        result["cfgs"][name] = {
            k: v
            for k, v in cfg.items()
            if isinstance(v, (str, int, float, list, tuple, type(None)))
        }
    for name, size in spec.get("flops", []):
        from torch.utils.flop_counter import FlopCounterMode

        model = timm.create_model(name, pretrained=False).eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.zeros(1, 3, size, size))
        params = sum(p.numel() for p in model.parameters())
        result["flops"][f"{name}@{size}"] = {"flops": counter.get_total_flops(), "params": params}
    with open(os.path.join(out, "result.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
