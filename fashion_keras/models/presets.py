"""The presets: backbone architectures by timm name and timm's default ImageNet checkpoints.

``BACKBONE_PRESETS`` holds the :class:`~fashion_keras.models.backbones.Backbone` arguments of
each name (timm's model names, as keras-hub's presets); ``PRETRAINED`` mirrors timm's default
``pretrained_cfg`` of each architecture (timm ``default_cfgs``, timm 1.0), in timm's units.
``IMAGENET_MEAN`` / ``IMAGENET_STD`` are the one copy of the ImageNet statistics, in the 0-255
units of the model's input (``ImageNormalization``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

#: ImageNet RGB mean and standard deviation in 0-255 pixel units (timm's 0-1 values * 255).
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)

# --------------------------------------------------------------------------------------------
# Backbone architectures
# --------------------------------------------------------------------------------------------

_RESNET50 = {"stage_blocks": (3, 4, 6, 3), "stage_widths": (64, 128, 256, 512)}
_RESNET101 = {**_RESNET50, "stage_blocks": (3, 4, 23, 3)}
_RESNET152 = {**_RESNET50, "stage_blocks": (3, 8, 36, 3)}
_X32x4D = {"groups": 32, "base_width": 4}
_LEGACY_LAYOUT = {"layout": "legacy", "se": True}

#: Backbone presets; the names are timm's model names. Comments: timm's parameter count with its
#: 1000-way classifier (equal here, see tests/models/test_backbones.py).
BACKBONE_PRESETS: dict[str, dict[str, Any]] = {
    # timm resnet.py layout (stride on the 3x3 conv, "ResNet v1.5")
    "resnet50": {**_RESNET50, "se": False},  # 25,557,032
    "seresnet50": {**_RESNET50, "se": True},  # 28,088,024
    "seresnet101": {**_RESNET101, "se": True},  # 49,326,872
    "seresnet152": {**_RESNET152, "se": True},  # 66,821,848
    "seresnext50_32x4d": {**_RESNET50, **_X32x4D, "se": True},  # 27,559,896
    "seresnext101_32x4d": {**_RESNET101, **_X32x4D, "se": True},  # 48,955,416
    # timm senet.py layout (Caffe SENet port; SE-ResNet blocks stride on the first 1x1 conv)
    "legacy_seresnet50": {**_RESNET50, **_LEGACY_LAYOUT, "stride_in_1x1": True},  # 28,088,024
    "legacy_seresnet101": {**_RESNET101, **_LEGACY_LAYOUT, "stride_in_1x1": True},  # 49,326,872
    "legacy_seresnet152": {**_RESNET152, **_LEGACY_LAYOUT, "stride_in_1x1": True},  # 66,821,848
    "legacy_seresnext50_32x4d": {**_RESNET50, **_X32x4D, **_LEGACY_LAYOUT},  # 27,559,896
    "legacy_seresnext101_32x4d": {**_RESNET101, **_X32x4D, **_LEGACY_LAYOUT},  # 48,955,416
    # Small SE-ResNet for tests and CPU demos (512 output channels).
    "seresnet_tiny": {
        "stage_blocks": (1, 1, 1, 1),
        "stage_widths": (16, 32, 64, 128),
        "stem_width": 16,
        "se": True,
    },
}


def backbone_preset(name: str) -> dict[str, Any]:
    """The ``Backbone`` arguments of the preset ``name`` (a copy); raises ``ValueError`` listing
    the valid names."""
    if name not in BACKBONE_PRESETS:
        raise ValueError(
            f"unknown backbone {name!r}; expected one of {', '.join(sorted(BACKBONE_PRESETS))}"
        )
    return dict(BACKBONE_PRESETS[name])


# --------------------------------------------------------------------------------------------
# Pretrained checkpoints (timm's default pretrained_cfg per architecture, timm 1.0)
# --------------------------------------------------------------------------------------------


def _timm_units(values: tuple[float, float, float]) -> tuple[float, float, float]:
    """0-255 values in timm's 0-1 units."""
    return tuple(v / 255.0 for v in values)


@dataclasses.dataclass(frozen=True)
class PretrainedInfo:
    """timm's default ImageNet checkpoint of an architecture (tests compare it with timm).

    The fields are timm's ``pretrained_cfg`` keys in timm's units (``mean``/``std`` in 0-1);
    ``fashion_keras.models.checkpoints`` converts them when it reads them.
    """

    tag: str | None  # e.g. "a1_in1k"; None: timm has no ImageNet weights for it
    hf_hub_id: str | None = None  # Hugging Face repo holding model.safetensors
    url: str | None = None  # older .pth release URL (senet.py models)
    input_size: int = 224
    test_input_size: int | None = None
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    mean: tuple[float, float, float] = _timm_units(IMAGENET_MEAN)
    std: tuple[float, float, float] = _timm_units(IMAGENET_STD)
    top1: float | None = None  # ImageNet top-1 (%) at input_size, timm's results-imagenet.csv
    test_top1: float | None = None  # the same at test_input_size
    sha256: str | None = None  # the file's SHA-256 where known (else checked on download)

    @property
    def source(self) -> str | None:
        """Where ``--weights imagenet`` fetches from: the hub id or the release URL."""
        return self.hf_hub_id or self.url

    def primary_file(self, arch: str) -> str | None:
        """The file name to put in the Keras cache folder for ``--weights imagenet``."""
        if self.hf_hub_id:
            return f"{arch}.{self.tag}.safetensors"
        if self.url:
            return self.url.rsplit("/", 1)[-1]
        return None

    def file_names(self, arch: str) -> list[str]:
        """File names ``--weights imagenet`` accepts in the Keras cache folder, best first."""
        names = [f"{arch}.weights.h5"]
        if self.tag:
            names += [f"{arch}.{self.tag}.safetensors", f"{arch}.{self.tag}/model.safetensors"]
        if self.url:
            names.append(self.url.rsplit("/", 1)[-1])
        if self.tag:
            names += [f"{arch}.{self.tag}.pth", f"{arch}.{self.tag}/pytorch_model.bin"]
        return names


_CADENE = "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-cadene/"
_TIMM_V01 = "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-weights/"
_LEGACY_CFG = {"interpolation": "bilinear", "crop_pct": 0.875}

#: timm's default checkpoint per backbone preset (all but ``seresnet_tiny``). ``top1`` /
#: ``test_top1``: timm's results/results-imagenet.csv (huggingface/pytorch-image-models, commit
#: aa4b5850c154) at ``input_size`` / ``test_input_size``. The release files carry the first hex
#: digits of their SHA-256 in the name (``-ce0d4300.pth``), checked on download.
PRETRAINED: dict[str, PretrainedInfo] = {
    "resnet50": PretrainedInfo(
        "a1_in1k",
        "timm/resnet50.a1_in1k",
        test_input_size=288,
        crop_pct=0.95,
        top1=80.382,
        test_top1=81.240,
    ),
    "seresnet50": PretrainedInfo(
        "a1_in1k",
        "timm/seresnet50.a1_in1k",
        test_input_size=288,
        crop_pct=0.95,
        top1=80.012,
        test_top1=81.114,
    ),
    "seresnet101": PretrainedInfo(None, test_input_size=288),
    "seresnet152": PretrainedInfo(None, test_input_size=288),
    "seresnext50_32x4d": PretrainedInfo(
        "racm_in1k",
        "timm/seresnext50_32x4d.racm_in1k",
        test_input_size=288,
        top1=81.268,
        test_top1=82.186,
    ),
    "seresnext101_32x4d": PretrainedInfo(
        "gluon_in1k", "timm/seresnext101_32x4d.gluon_in1k", top1=80.886
    ),
    "legacy_seresnet50": PretrainedInfo(
        "in1k", url=_CADENE + "se_resnet50-ce0d4300.pth", top1=77.650, **_LEGACY_CFG
    ),
    "legacy_seresnet101": PretrainedInfo(
        "in1k", url=_CADENE + "se_resnet101-7e38fcc6.pth", top1=78.370, **_LEGACY_CFG
    ),
    "legacy_seresnet152": PretrainedInfo(
        "in1k", url=_CADENE + "se_resnet152-d17c99b7.pth", top1=78.662, **_LEGACY_CFG
    ),
    "legacy_seresnext50_32x4d": PretrainedInfo(
        "in1k",
        url=_TIMM_V01 + "legacy_se_resnext50_32x4d-f3651bad.pth",
        top1=79.080,
        **_LEGACY_CFG,
    ),
    "legacy_seresnext101_32x4d": PretrainedInfo(
        "in1k",
        url=_TIMM_V01 + "legacy_se_resnext101_32x4d-37725eac.pth",
        top1=80.274,
        **_LEGACY_CFG,
    ),
}


def pretrained_table() -> str:
    """The ``--weights imagenet`` checkpoints as a markdown table (for the README)."""
    rows = [
        "| backbone | `--weights imagenet` fetches | file in `$KERAS_HOME/models` "
        "| preprocessing | ImageNet top-1 (timm) |",
        "|---|---|---|---|---|",
    ]
    for arch, info in PRETRAINED.items():
        if info.source is None:
            rows.append(f"| `{arch}` | none (timm has no ImageNet weights) | | | |")
            continue
        where = f"`{info.hf_hub_id}` (Hugging Face)" if info.hf_hub_id else info.url
        size = f"{info.input_size} px"
        if info.test_input_size:
            size += f" (test {info.test_input_size})"
        pre = f"{size}, {info.interpolation}, crop {info.crop_pct}"
        top1 = f"{info.top1:.2f} %" if info.top1 is not None else "n/a"
        if info.test_top1 is not None:
            top1 += f" ({info.test_top1:.2f} % at {info.test_input_size} px)"
        rows.append(f"| `{arch}` | {where} | `{info.primary_file(arch)}` | {pre} | {top1} |")
    return "\n".join(rows) + "\n"
