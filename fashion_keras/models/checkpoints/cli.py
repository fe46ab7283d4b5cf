"""``python -m fashion_keras.models.checkpoints``: convert a checkpoint to a Keras .weights.h5.

Checks every key and shape, writes ``<output>.weights.h5`` and, beside it, ``<output>.json``
with the checkpoint's timm ``pretrained_cfg`` (mean/std, input size), which
:func:`~fashion_keras.models.checkpoints.read_pretrained_config` reads back::

    python -m fashion_keras.models.checkpoints seresnet50 model.safetensors \
        -o seresnet50.weights.h5
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Sequence

from fashion_keras.models.backbones import get_backbone
from fashion_keras.models.checkpoints.files import KERAS_SUFFIX, CheckpointError, LoadReport
from fashion_keras.models.checkpoints.loading import load_backbone_weights
from fashion_keras.models.checkpoints.pretrained_config import (
    PretrainedConfig,
    read_pretrained_config,
    sidecar_path,
)
from fashion_keras.models.presets import BACKBONE_PRESETS


def convert(
    backbone_name: str, checkpoint: str, output: str, image_size: int | None = None
) -> tuple[LoadReport, PretrainedConfig]:
    """Converts ``checkpoint`` for ``backbone_name`` to ``output`` (``.weights.h5``) and writes
    the checkpoint's config beside it as ``<output>.json`` (timm ``pretrained_cfg``)."""
    if not output.endswith(KERAS_SUFFIX):
        raise CheckpointError(f"output {output!r} must end with {KERAS_SUFFIX}")
    config = read_pretrained_config(checkpoint, backbone_name)
    size = image_size or config.input_size
    backbone = get_backbone(backbone_name, image_shape=(size, size, 3))
    report = load_backbone_weights(backbone, checkpoint, config)
    backbone.save_weights(output)
    sidecar = {
        "architecture": backbone_name,
        "source": os.path.abspath(checkpoint),
        # a BGR stem was flipped on loading: the converted weights take RGB
        "pretrained_cfg": dataclasses.replace(config, input_space="RGB").to_timm_cfg(),
    }
    with open(sidecar_path(output), "w", encoding="utf-8") as f:
        json.dump(sidecar, f, indent=2)
        f.write("\n")
    return report, config


def main(argv: Sequence[str] | None = None) -> int:
    """The converter's command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m fashion_keras.models.checkpoints",
        description="Convert a timm/PyTorch checkpoint (.safetensors, .pth) to a Keras "
        ".weights.h5 for a backbone, checking every key and shape.",
    )
    parser.add_argument("backbone", choices=sorted(BACKBONE_PRESETS), help="Backbone preset.")
    parser.add_argument("checkpoint", help="The timm/PyTorch checkpoint file.")
    parser.add_argument(
        "-o", "--output", default=None, help="Output .weights.h5 (default: <backbone>.weights.h5)."
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    output = args.output or f"{args.backbone}{KERAS_SUFFIX}"
    try:
        report, pre = convert(args.backbone, args.checkpoint, output)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(report)
    print(
        f"wrote {output} and {sidecar_path(output)} (preprocessing from {pre.source}: mean "
        f"{[round(m, 3) for m in pre.mean]}, std {[round(s, 3) for s in pre.std]} in 0-255 "
        f"units, {pre.input_size} px, {pre.interpolation})"
    )
    print(
        f"train from it: python -m fashion_keras.train --backbone {args.backbone} --weights {output}"
    )
    return 0
