"""Export: ``python -m fashion_keras.export MODEL [--keypoint-model KEYPOINT_MODEL]``.

Writes the SavedModel of a trained Keras model (a ``.keras`` file or a training run folder) as
the next version under ``--export-dir`` (default: ``<run>/export``), as training does after its
last epoch. A model trained with ``--region-crops`` becomes one two-stage model:
``--keypoint-model`` (a model trained with ``--heads fashionai_keypoints``) finds the regions,
unless the model has such a keypoint head itself. The library call is
:func:`fashion_keras.export.export_saved_model`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from fashion_keras import cli
from fashion_keras.evaluation.model_loading import training_data_of
from fashion_keras.evaluation.predictors import keras_file, load_keras_model
from fashion_keras.export.versions import export_saved_model


def build_parser() -> argparse.ArgumentParser:
    parser = cli.command_parser("python -m fashion_keras.export", __doc__.split("\n\n")[1])
    parser.add_argument("model", help="a .keras file or a training run folder")
    parser.add_argument(
        "--keypoint-model",
        default=None,
        help="For a model with region crops: the keypoint model (.keras file or run folder) "
        "whose points give the regions' boxes in the export.",
    )
    parser.add_argument(
        "--export-dir",
        default=None,
        help="TF Serving model base path (default: the run folder's export/); versions 1, 2, ...",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    with cli.input_errors(args.debug):  # a missing model, a region model without keypoints
        path = keras_file(args.model)
        model = load_keras_model(path)
        keypoints = None
        if args.keypoint_model:
            keypoints = load_keras_model(keras_file(args.keypoint_model))
        found = training_data_of(args.model)
        base = args.export_dir or os.path.join(os.path.dirname(os.path.abspath(path)), "export")
        version = export_saved_model(
            model,
            base,
            training_data=found[0].to_dict() if found else None,
            keypoint_model=keypoints,
        )
    print(f"Exported SavedModel (TF Serving layout): {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
