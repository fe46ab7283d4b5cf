"""Region detection: ``python -m fashion_keras.regions KEYPOINT_MODEL --output regions.csv``.

Runs a keypoint model (a ``.keras`` file, training run folder or export) over a split of a
dataset and writes a region file (``image,region,x1,y1,x2,y2,score``; see
``fashion_keras/data/region_files.py``): one row per image and region whose box the model's
keypoints give, the score being the mean visibility score of the region's present keypoints
(present: score >= ``--min-score``). A progress bar runs; the rows are appended per batch, so a
rerun with the same ``--output`` after an interruption skips the images already written and
appends the rest. The summary names images, rows per region and images without a box per
region. With no ``--data-dir`` it reads the data the model was trained on, or the synthetic
demo data. The library call is
:func:`fashion_keras.evaluation.region_detection.detect_regions`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from fashion_keras import cli, sections
from fashion_keras.data.config import DataConfig, PreprocessConfig
from fashion_keras.evaluation.config import InferenceConfig
from fashion_keras.evaluation.eval_data import data_config_for
from fashion_keras.evaluation.model_loading import load_predictor
from fashion_keras.evaluation.region_detection import (
    RegionConfig,
    detect_regions,
    region_heads,
    split_examples,
)

#: DataConfig fields that mean nothing here: the heads are the model's, one dataset is read,
#: and the region file is what this command writes (named only where the section has them).
DATA_EXCLUDE = tuple(
    name
    for name in (
        "heads",
        "sources",
        "source_weights",
        "train_split",
        "val_split",
        "balance_classes",
        "region_file",
    )
    if name in DataConfig.field_names()
)
#: InferenceConfig fields that mean nothing here (one model, keypoint TTA only).
INFERENCE_EXCLUDE = ("tta_resize", "weights")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.command_parser("python -m fashion_keras.regions", __doc__.split("\n\n")[1])
    parser.add_argument(
        "model", help="keypoint model: .keras file, training run folder or SavedModel export"
    )
    sections.add_arguments(parser.add_argument_group("data"), DataConfig, exclude=DATA_EXCLUDE)
    sections.add_arguments(parser.add_argument_group("preprocessing"), PreprocessConfig)
    sections.add_arguments(
        parser.add_argument_group("inference"), InferenceConfig, exclude=INFERENCE_EXCLUDE
    )
    sections.add_arguments(parser.add_argument_group("regions"), RegionConfig)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    with cli.input_errors(args.debug):  # bad flags, model, data, regions, output file
        preprocess, inference, config = sections.validated_from_args(
            args, PreprocessConfig, InferenceConfig, RegionConfig
        )
        data_cfg = data_config_for([args.model], args)
        data_cfg.validate()
        predictor = load_predictor(args.model)
        region_heads(predictor.heads, config.region_names())  # before preparing the data
        examples = split_examples(data_cfg, config.split, predictor.heads)
        if config.max_examples:
            examples = examples.take(config.max_examples)
        summary = detect_regions(
            predictor,
            examples,
            config.output,
            regions=config.region_names(),
            min_score=config.min_score,
            tta=inference.tta,
            batch_size=inference.batch_size,
            bbox_margin=preprocess.bbox_margin,
        )
    print(summary.format())
    return 0


if __name__ == "__main__":
    sys.exit(main())
