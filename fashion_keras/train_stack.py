"""Feature-stacking ensemble: ``python -m fashion_keras.train_stack MODEL.keras MODEL.keras ...``.

The pooled features of several trained, frozen backbones (each in its own view: input size and
garment-box margin) are concatenated, and a small MLP with one softmax per head is trained on
them with the same masked focal losses and weighted metrics as the main training. The output
folder (``stack.json``, ``head_model.keras``, ``metrics.json``, ``history.csv``) is a model that
``python -m fashion_keras.evaluate`` and ``.predict`` accept like any other. The library call is
:func:`fashion_keras.evaluation.stacking.train_stack`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from fashion_keras import cli, sections
from fashion_keras.data import sources
from fashion_keras.data.config import DataConfig, PreprocessConfig
from fashion_keras.evaluation.config import InferenceConfig, StackConfig
from fashion_keras.evaluation.eval_data import data_config_for, load_splits
from fashion_keras.evaluation.model_loading import split_model_paths
from fashion_keras.evaluation.predictors import union_heads
from fashion_keras.evaluation.stacking import load_members, train_stack
from fashion_keras.heads import get_heads


def build_parser() -> argparse.ArgumentParser:
    parser = cli.command_parser("python -m fashion_keras.train_stack", __doc__.split("\n\n")[1])
    parser.add_argument("models", nargs="+", help=".keras files or training run folders")
    data = parser.add_argument_group("data (--heads default: the members' heads)")
    sections.add_arguments(
        data, DataConfig, exclude=("sources", "source_weights", "balance_classes")
    )
    sections.add_arguments(parser.add_argument_group("preprocessing"), PreprocessConfig)
    features = parser.add_argument_group("features")
    sections.add_arguments(features, InferenceConfig, exclude=("batch_size", "weights"))
    sections.add_arguments(parser.add_argument_group("stack"), StackConfig)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    with cli.input_errors(args.debug):  # bad flags, models, rows, heads the data lacks
        preprocess, inference, config = sections.validated_from_args(
            args, PreprocessConfig, InferenceConfig, StackConfig
        )
        paths = split_model_paths(args.models)
        data_cfg = data_config_for(paths, args)
        data_cfg.validate()
        members = load_members(paths)
        heads = get_heads(args.heads) if args.heads else union_heads(members)
        builders = sources.builders_for(data_cfg, heads)[0]
        data = {
            split: load_splits(builders, split, heads, config.max_examples)
            for split in (data_cfg.train_split, data_cfg.val_split)
        }
        metrics = train_stack(
            members,
            data[data_cfg.train_split],
            data[data_cfg.val_split],
            config,
            heads=heads,
            tta=inference.tta,
            tta_resize=inference.tta_resize,
            bbox_margin=preprocess.bbox_margin,
        )
    print(json.dumps(metrics["val_accuracy"], indent=2))
    print(f"val mean accuracy {metrics['val_mean_accuracy']:.4f}; wrote {config.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
