"""Evaluation: ``python -m fashion_keras.evaluate MODEL [MODEL ...] --data-dir DIR``.

Scores one model or a weighted ensemble on a split of a prepared dataset, optionally with
test-time augmentation (``--tta none|flip|ten_crop|eighteen_crop``), and writes to
``--output-dir``: ``metrics.json`` (per head accuracy, the majority-class baseline from the
training split's counts, balanced accuracy, recall and precision per class, top-3/top-5, AP,
named the official FashionAI metric on FashionAI data only, confusion pairs, the weights, TTA
mode and each model's preprocessing), ``report.md``, ``confusion/<head>.png``,
``top_losses.png`` and, with ``--search-weights``, ``ensemble_weights.json``. A head that does
not beat its majority baseline is named in the report and on the console. Keypoint
heads add their NE tables beside the training split's mean-position baseline (``keypoints``
in ``metrics.json``, ``report.md``), ``keypoints_<head>_worst.png`` and, with
``--submission`` or on a split without keypoint labels (FashionAI's ``test``), the FashionAI
submission CSV; ``--tta flip`` averages their heatmaps with the mirror image, the crop grids
apply to softmax heads only. Each model crops with the garment-box margin it was trained with
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
from fashion_keras.data import sources
from fashion_keras.data.config import DataConfig, PreprocessConfig
from fashion_keras.evaluation.config import EvalConfig, InferenceConfig
from fashion_keras.evaluation.ensembles import load_ensemble
from fashion_keras.evaluation.eval_data import data_config_for, keypoint_truth, load_splits
from fashion_keras.evaluation.evaluate import evaluate
from fashion_keras.evaluation.keypoint_evaluation import keypoint_summary
from fashion_keras.evaluation.model_loading import split_model_paths
from fashion_keras.evaluation.predictors import keras_file, load_keras_model
from fashion_keras.evaluation.region_inputs import use_region_sources
from fashion_keras.evaluation.summaries import format_summary
from fashion_keras.heads import softmax_heads

log = logging.getLogger("fashion_keras")

#: DataConfig fields that mean nothing here (the heads are the models').
DATA_EXCLUDE = (
    "heads",
    "sources",
    "source_weights",
    "train_split",
    "val_split",
    "balance_classes",
)


#: The sections of a ``--config`` file, by key.
CONFIG_SECTIONS = {
    "data": DataConfig,
    "preprocess": PreprocessConfig,
    "inference": InferenceConfig,
    "evaluation": EvalConfig,
}


def build_parser() -> argparse.ArgumentParser:
    parser = cli.command_parser("python -m fashion_keras.evaluate", __doc__.split("\n\n")[1])
    parser.add_argument(
        "models",
        nargs="*",
        help="model(s): .keras file, SavedModel version folder or export base, training run "
        "folder, or train_stack folder; several (or comma-separated) form an ensemble",
    )
    parser.add_argument(
        "--config",
        default=None,
        help='A JSON file of this command\'s options: {"models": [...], "data": {...}, '
        '"preprocess": {...}, "inference": {...}, "evaluation": {...}} (e.g. '
        "recipes/fashionai_ensemble/evaluate.json); models and flags given here win.",
    )
    sections.add_arguments(parser.add_argument_group("data"), DataConfig, exclude=DATA_EXCLUDE)
    sections.add_arguments(parser.add_argument_group("preprocessing"), PreprocessConfig)
    sections.add_arguments(parser.add_argument_group("inference"), InferenceConfig)
    sections.add_arguments(parser.add_argument_group("evaluation"), EvalConfig)
    return parser


def _train_counts(builders, split: str, heads):
    """Labelled rows per class of each head in the training split (from the build reports),
    or None, with a warning, when the dataset stores none (None without softmax heads)."""
    if not softmax_heads(heads):
        return None
    try:
        return sources.label_counts(builders, split, heads)
    except ValueError as e:
        log.warning("majority baselines from the evaluated labels instead: %s", e)
        return None


def _load_data(data_cfg: DataConfig, heads, config: EvalConfig):
    """The evaluated split's truth (every source of a joint training), the weight-search
    split's (or None), the training split's class counts (or None) and its keypoint truth
    (the keypoint heads' mean-position baseline; None without keypoint heads)."""
    builders = sources.builders_for(data_cfg, heads)[0]
    data = load_splits(builders, config.split, heads, config.max_examples)
    counts = _train_counts(builders, data_cfg.train_split, heads)
    points = keypoint_truth(builders, data_cfg.train_split, heads)
    if not config.search_weights:
        return data, None, counts, points
    if config.search_split == config.split:
        log.warning(
            "searching ensemble weights on the evaluated split %r: the score is optimistic",
            config.split,
        )
    search = load_splits(builders, config.search_split, heads, config.max_examples)
    return data, search, counts, points


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.config:
        try:
            extra = sections.fill_from_file(args, args.config, CONFIG_SECTIONS, ("models",))
        except ValueError as e:
            parser.error(str(e))
        args.models = args.models or list(extra.get("models", []))
    if not args.models:
        parser.error('name at least one model (or give --config with "models")')
    if args.weights and args.search_weights:
        raise SystemExit("give either --weights or --search-weights, not both")
    with cli.input_errors(args.debug):  # bad flags, models, rows, heads the data lacks
        preprocess, inference, config = sections.validated_from_args(
            args, PreprocessConfig, InferenceConfig, EvalConfig
        )
        data_cfg = data_config_for(split_model_paths(args.models), args)
        data_cfg.validate()
        ensemble = load_ensemble(args.models, inference.weights)
        data, search_data, train_counts, train_keypoints = _load_data(
            data_cfg, ensemble.heads, config
        )
        region_sources = {
            "region_file": data_cfg.region_file,
            "keypoint_model": preprocess.keypoint_model
            and load_keras_model(keras_file(preprocess.keypoint_model)),
            "skip_bad_rows": data_cfg.skip_bad_rows,
            "inherited": args.region_file is None,
        }
        data.examples = use_region_sources(ensemble.predictors, data.examples, **region_sources)
        if search_data is not None:
            search_data.examples = use_region_sources(
                ensemble.predictors, search_data.examples, **region_sources
            )
        metrics = evaluate(
            ensemble,
            data,
            config,
            inference,
            bbox_margin=preprocess.bbox_margin,
            search_data=search_data,
            train_counts=train_counts,
            train_keypoints=train_keypoints,
        )
    written = ["metrics.json", "report.md"]
    if "heads" in metrics:
        print(format_summary(metrics))
        written += ["confusion/", "top_losses.png"]
    if "keypoints" in metrics:
        print(keypoint_summary(metrics))
        written += [m["worst_cases"] for m in metrics["keypoints"].values() if m["worst_cases"]]
    print(f"wrote {config.output_dir}/{', '.join(written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
