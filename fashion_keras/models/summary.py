"""Parameter counts and MACs of a backbone, checked against the SENet paper.

``python -m fashion_keras.models.summary seresnet50 --image-size 224`` prints a per-stage table
(parameters, multiply-accumulates) for the backbone with a ``--num-classes`` classifier, and
compares the totals with the SENet paper (Hu et al., ImageNet, 224 px; the figures of
``shared/spec/formats.md`` section 4). ``--check`` exits with status 1 when they disagree.

MACs are computed analytically from the layer graph at the given input size: every ``Conv2D``
(``H_out * W_out * C_out * kh * kw * C_in / groups``), the classifier (``features * classes``),
and each SE block (its two fully connected layers, plus one MAC per element for the squeeze
average and one for the excitation scaling). BatchNorm (foldable into the convs), ReLU,
additions and max-pooling are not counted, as in the paper.

The paper's ResNets are the Caffe models, which put the block stride on the first 1x1 conv.
timm's ``resnet.py`` layout (``seresnet50``, "ResNet v1.5") strides the 3x3 conv instead, which
costs about 0.23 GMACs more at 224 px; the comparison is then made for the same network with the
paper's stride placement (which ``legacy_seresnet50`` has), and the difference is explained.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from fashion_keras.models.applications import APPLICATIONS
from fashion_keras.models.backbones import get_backbone
from fashion_keras.models.layers import SqueezeExcite
from fashion_keras.models.presets import BACKBONE_PRESETS

#: Relative tolerance of the paper comparison (the paper gives 3 significant digits).
TOLERANCE = 0.005


@dataclasses.dataclass(frozen=True)
class PaperFigures:
    """Reference figures (ImageNet, 224 px) from the SENet paper, formats.md section 4."""

    model: str
    params: float | None  # parameters, millions
    gmacs: float


#: The architecture each preset implements, as the SENet paper names it.
PAPER: dict[str, PaperFigures] = {
    "resnet50": PaperFigures("ResNet-50", 25.6, 3.86),
    "seresnet50": PaperFigures("SE-ResNet-50", 28.1, 3.87),
    "legacy_seresnet50": PaperFigures("SE-ResNet-50", 28.1, 3.87),
    "seresnext50_32x4d": PaperFigures("SE-ResNeXt-50 (32x4d)", None, 4.25),
    "legacy_seresnext50_32x4d": PaperFigures("SE-ResNeXt-50 (32x4d)", None, 4.25),
}


@dataclasses.dataclass
class GroupCost:
    """Parameters and MACs of one layer group (stem, layer1, ..., head)."""

    name: str
    params: int = 0
    macs: int = 0  # convolutions and fully connected layers
    gate_macs: int = 0  # SE squeeze averages and excitation scaling


@dataclasses.dataclass
class Summary:
    """The cost of a backbone with a classifier at one input size."""

    backbone: str
    layout: str
    stride_in_1x1: bool
    image_size: int
    num_classes: int
    groups: list[GroupCost]

    @property
    def params(self) -> int:
        return sum(g.params for g in self.groups)

    @property
    def macs(self) -> int:
        return sum(g.macs + g.gate_macs for g in self.groups)


def _group_names(backbone: keras.Model) -> dict[str, str]:
    """Group (``stem``, ``layer1`` ...) of each backbone layer, from the backbone's stages."""
    stages = backbone.num_stages
    groups = {name: "stem" for name in backbone.stem_layer_names}
    for i in range(stages):
        groups.update({name: f"layer{i + 1}" for name in backbone.stage_layer_names(i + 1)})
    return groups


def _layer_macs(layer: keras.layers.Layer) -> int:
    """Multiply-accumulates of a Conv2D, DepthwiseConv2D or (per-pixel) Dense layer; 0 else."""
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        h, w, c = _static(layer.output.shape, layer.name)
        kh, kw = (int(d) for d in layer.kernel.shape[:2])
        return h * w * c * kh * kw
    if isinstance(layer, keras.layers.Conv2D):
        h, w, c = _static(layer.output.shape, layer.name)
        kh, kw, cin_per_group, _ = (int(d) for d in layer.kernel.shape)
        return h * w * c * kh * kw * cin_per_group
    if isinstance(layer, keras.layers.Dense):
        positions = int(np.prod(_static(layer.output.shape, layer.name)[:-1], dtype=np.int64))
        return positions * int(np.prod(layer.kernel.shape))
    if isinstance(layer, keras.Model):  # a nested block (ConvNeXt stem / downsampling)
        return sum(_layer_macs(sub) for sub in layer.layers)
    return 0


def _static(shape: Sequence[int | None], layer: str) -> tuple[int, ...]:
    if any(d is None for d in shape[1:]):
        raise ValueError(f"layer {layer!r} has a dynamic output shape {shape}; give image_size")
    return tuple(int(d) for d in shape[1:])


def summarize(backbone: keras.Model, num_classes: int = 1000) -> Summary:
    """Per-group parameters and MACs of ``backbone`` (a ``Backbone`` or an
    ``ApplicationBackbone``, built with a static ``image_shape``) plus a ``num_classes`` linear
    classifier on the pooled features."""
    groups: dict[str, GroupCost] = {}
    group_of = _group_names(backbone)
    for layer in backbone.layers:
        if not layer.weights and not isinstance(layer, SqueezeExcite):
            continue
        name = group_of[layer.name]
        g = groups.setdefault(name, GroupCost(name))
        g.params += int(sum(np.prod(w.shape) for w in layer.trainable_weights))
        if isinstance(layer, SqueezeExcite):
            h, w, c = _static(layer.output.shape, layer.name)
            g.macs += 2 * c * layer.reduced_channels
            g.gate_macs += 2 * h * w * c
        else:
            g.macs += _layer_macs(layer)
    head = GroupCost(
        "head",
        params=backbone.num_features * num_classes + num_classes,
        macs=backbone.num_features * num_classes,
    )
    order = ["stem"] + [f"layer{i + 1}" for i in range(len(backbone.stage_blocks))]
    image_size = int(backbone.image_shape[0]) if backbone.image_shape[0] else 0
    application = getattr(backbone, "application", None)
    return Summary(
        backbone=backbone.name,
        layout=backbone.layout if application is None else "keras.applications",
        stride_in_1x1=bool(getattr(backbone, "stride_in_1x1", False)),
        image_size=image_size,
        num_classes=num_classes,
        groups=[groups[k] for k in order if k in groups] + [head],
    )


def summarize_preset(
    name: str, image_size: int = 224, num_classes: int = 1000, **overrides: Any
) -> Summary:
    """:func:`summarize` for the preset ``name`` at ``image_size`` px."""
    backbone = get_backbone(name, image_shape=(image_size, image_size, 3), **overrides)
    return summarize(backbone, num_classes)


@dataclasses.dataclass(frozen=True)
class Check:
    """One comparison with the paper."""

    what: str
    ours: float
    paper: float
    ok: bool
    note: str = ""


def _close(ours: float, paper: float) -> bool:
    return abs(ours - paper) <= TOLERANCE * paper


def paper_checks(name: str) -> list[Check]:
    """Compares the preset ``name`` (224 px, 1000 classes) with the paper's figures.

    The MACs are compared for the paper's stride placement (first 1x1 conv for ResNets, 3x3 for
    ResNeXts); when the preset places it differently its own MACs are reported in the note.
    """
    ref = PAPER.get(name)
    if ref is None:
        return []
    preset = BACKBONE_PRESETS[name]
    paper_stride_in_1x1 = preset.get("groups", 1) == 1
    own = summarize_preset(name)
    checks = []
    if ref.params is not None:
        ours = own.params / 1e6
        checks.append(Check(f"{ref.model} params (M)", ours, ref.params, _close(ours, ref.params)))
    if own.stride_in_1x1 == paper_stride_in_1x1:
        ours = own.macs / 1e9
        checks.append(Check(f"{ref.model} GMACs", ours, ref.gmacs, _close(ours, ref.gmacs)))
    else:
        paper_layout = summarize_preset(name, stride_in_1x1=paper_stride_in_1x1)
        ours = paper_layout.macs / 1e9
        note = (
            f"{name} itself: {own.macs / 1e9:.3f} GMACs ({(own.macs / 1e9 / ref.gmacs - 1):+.1%}); "
            "it strides the 3x3 conv (timm / ResNet v1.5) where the paper's Caffe ResNets stride "
            "the first 1x1 conv; compared: the same network with the paper's stride placement"
        )
        checks.append(Check(f"{ref.model} GMACs", ours, ref.gmacs, _close(ours, ref.gmacs), note))
    return checks


def format_summary(summary: Summary) -> str:
    """A plain-text table of the per-group costs."""
    stride = "first 1x1 conv" if summary.stride_in_1x1 else "3x3 conv"
    layout = f"{summary.layout} layout, block stride on the {stride}"
    if summary.layout == "keras.applications":
        layout = "keras.applications"
    lines = [
        f"{summary.backbone} ({layout}) at "
        f"{summary.image_size}x{summary.image_size} px, {summary.num_classes}-class classifier",
        f"{'group':<8} {'params':>12} {'MACs':>16} {'SE gate MACs':>14}",
    ]
    for g in summary.groups:
        lines.append(f"{g.name:<8} {g.params:>12,} {g.macs:>16,} {g.gate_macs:>14,}")
    lines.append(
        f"{'total':<8} {summary.params:>12,} {summary.macs:>16,}   "
        f"({summary.params / 1e6:.2f} M params, {summary.macs / 1e9:.3f} GMACs)"
    )
    return "\n".join(lines)


def format_checks(name: str, checks: Sequence[Check]) -> str:
    if not checks:
        return f"no SENet paper figures for {name} (formats.md section 4 lists {', '.join(PAPER)})"
    lines = ["SENet paper (ImageNet, 224 px; formats.md section 4):"]
    for c in checks:
        status = "OK" if c.ok else f"MISMATCH (more than {TOLERANCE:.1%} off)"
        lines.append(f"  {c.what}: ours {c.ours:.3f}, paper {c.paper:.2f}  {status}")
        if c.note:
            lines.append(f"    note: {c.note}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fashion_keras.models.summary",
        description="Parameters and MACs of a backbone, checked against the SENet paper.",
    )
    parser.add_argument("backbone", choices=sorted(BACKBONE_PRESETS) + sorted(APPLICATIONS))
    parser.add_argument("--image-size", type=int, default=224, help="Square input size (px).")
    parser.add_argument("--num-classes", type=int, default=1000, help="Classifier classes.")
    parser.add_argument(
        "--check", action="store_true", help="Exit with status 1 if the paper figures differ."
    )
    args = parser.parse_args(argv)
    if args.image_size < 32 or args.num_classes < 1:
        parser.error(
            f"--image-size = {args.image_size} must be >= 32 and --num-classes = "
            f"{args.num_classes} >= 1"
        )
    print(format_summary(summarize_preset(args.backbone, args.image_size, args.num_classes)))
    checks = paper_checks(args.backbone)
    print(format_checks(args.backbone, checks))
    return 1 if args.check and not all(c.ok for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
