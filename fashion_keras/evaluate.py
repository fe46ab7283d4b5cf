"""Evaluation: ``python -m fashion_keras.evaluate MODEL [MODEL ...] --data-dir DIR``.

Scores one model or a weighted ensemble on a split of a prepared dataset, optionally with
test-time augmentation (``--tta none|flip|ten_crop|eighteen_crop``), and writes to
``--output-dir``: ``metrics.json`` (per head accuracy, top-3/top-5, the official FashionAI AP /
BasicPrecision, confusion pairs, the weights, TTA mode and each model's preprocessing),
``report.md``, ``confusion/<head>.png``, ``top_losses.png`` and, with ``--search-weights``,
``ensemble_weights.json``. Each model crops with the garment-box margin it was trained with
unless ``--bbox-margin`` overrides it. With no ``--data-dir`` it evaluates on the synthetic demo
data (``make train``'s dataset). The library call is
:func:`fashion_keras.evaluation.evaluate.evaluate`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from fashion_keras import cli, sections
from fashion_keras.data import pipeline, sources
from fashion_keras.data.config import DataConfig, PreprocessConfig
from fashion_keras.evaluation.config import EvalConfig, InferenceConfig
from fashion_keras.evaluation.ensembles import load_ensemble
from fashion_keras.evaluation.evaluate import evaluate, format_summary, load_eval_data

log = logging.getLogger("fashion_keras")

#: DataConfig fields that mean nothing here (the heads are the models').
DATA_EXCLUDE = ("heads", "sources", "source_weights", "train_split", "val_split")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.command_parser("python -m fashion_keras.evaluate", __doc__.split("\n\n")[1])
    parser.add_argument(
        "models",
        nargs="+",
        help="model(s): .keras file, SavedModel version folder or export base, training run "
        "folder, or train_stack folder; several (or comma-separated) form an ensemble",
    )
    sections.add_arguments(parser.add_argument_group("data"), DataConfig, exclude=DATA_EXCLUDE)
    sections.add_arguments(parser.add_argument_group("preprocessing"), PreprocessConfig)
    sections.add_arguments(parser.add_argument_group("inference"), InferenceConfig)
    sections.add_arguments(parser.add_argument_group("evaluation"), EvalConfig)
    return parser


def _load_data(data_cfg: DataConfig, heads, config: EvalConfig):
    """The evaluated split's truth, and the weight-search split's (or None)."""
    builder = sources.builders_for(data_cfg, heads)[0][0]
    pipeline.check_heads(heads, builder.info.features, builder.name)
    data = load_eval_data(sources.load_split(builder, config.split), heads, config.max_examples)
    if not config.search_weights:
        return data, None
    if config.search_split == config.split:
        log.warning(
            "searching ensemble weights on the evaluated split %r: the score is optimistic",
            config.split,
        )
    search = sources.load_split(builder, config.search_split)
    return data, load_eval_data(search, heads, config.max_examples)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    if args.weights and args.search_weights:
        raise SystemExit("give either --weights or --search-weights, not both")
    with cli.input_errors(args.debug):  # bad flags, models, rows, heads the data lacks
        data_cfg, preprocess, inference, config = sections.validated_from_args(
            args, DataConfig, PreprocessConfig, InferenceConfig, EvalConfig
        )
        ensemble = load_ensemble(args.models, inference.weights)
        data, search_data = _load_data(data_cfg, ensemble.heads, config)
        metrics = evaluate(
            ensemble,
            data,
            config,
            inference,
            bbox_margin=preprocess.bbox_margin,
            search_data=search_data,
        )
    print(format_summary(metrics))
    print(f"wrote {config.output_dir}/metrics.json, report.md, confusion/, top_losses.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
