"""Training: ``python -m fashion_keras.train --heads deepfashion6``.

With no ``--data-dir`` it trains on the embedded synthetic demo data (generated once, cached,
and read through the same TFDS builder as the real release) with the ``demo`` preset. The run
folder gets ``config.json``, ``history.csv``, TensorBoard logs, checkpoints, a resumable backup
(re-run the same command after an interruption to resume), ``model.keras``, ``metrics.json``
and a SavedModel in TF Serving layout under ``export/<version>/``.

Every flag is a field of a config section (:mod:`fashion_keras.training.config`); the library
call is :func:`fashion_keras.training.trainer.train`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from fashion_keras import cli
from fashion_keras.training.config import TrainConfig, add_arguments
from fashion_keras.training.trainer import check_command_config, train


def parse_training_flags(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> tuple[argparse.Namespace, TrainConfig]:
    """Adds every training flag to ``parser``, parses ``argv`` and returns the arguments with
    their checked config (a bad value exits with the usage error); logs at INFO."""
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return args, check_command_config(args)
    except (ValueError, OSError) as e:
        parser.error(str(e))


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.command_parser("python -m fashion_keras.train", __doc__.split("\n\n")[1])
    args, cfg = parse_training_flags(parser, argv)
    with cli.input_errors(args.debug):
        train(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
