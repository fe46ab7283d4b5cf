"""Prediction: ``python -m fashion_keras.predict MODEL IMAGE_OR_DIR... [--format json|csv]``.

For each image (JPEG, PNG, WebP, BMP or GIF; folders are searched recursively), per head the
top classes: ``class_index``, ``class_name``, ``probability`` (the JSON keys and CSV columns, as
in ``python -m serving.client``). Files that cannot be read or decoded are
skipped and listed (``skipped`` in JSON, a stderr line each for CSV) with the reason.
``MODEL`` may be several comma-separated models (an ensemble, ``--weights``) and ``--tta``
averages test-time-augmentation views, as in ``python -m fashion_keras.evaluate``. Each model
crops with the garment-box margin it was trained with unless ``--bbox-margin`` overrides it.

Keypoint heads: per image every keypoint's ``keypoint_index``, ``keypoint_name``, ``x``, ``y``
in the original image's pixels and ``score`` (visibility probability), under ``keypoints`` in
the JSON (CSV: the columns ``keypoint_index,keypoint_name,x,y,score``); ``--tta flip``
averages their heatmaps with the mirror image, the crop grids apply to softmax heads only.

With ``--fashionai-question PATH/Tests/question.csv`` it writes the FashionAI submission
instead: the question rows in their order, the ``?`` replaced by the task's class
probabilities in class order, ``%.8f`` joined by ``;``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from fashion_keras import cli, sections
from fashion_keras.data.config import PreprocessConfig
from fashion_keras.evaluation.config import InferenceConfig
from fashion_keras.evaluation.ensembles import load_ensemble, predict_keypoints
from fashion_keras.evaluation.predict import (
    QuestionFileError,
    check_image,
    file_examples,
    find_images,
    predictions,
    write_csv,
    write_submission,
)
from fashion_keras.evaluation.predictors import keras_file, load_keras_model
from fashion_keras.evaluation.region_inputs import set_keypoint_model
from fashion_keras.evaluation.views import keypoint_tta
from fashion_keras.heads import keypoint_heads, softmax_heads


def build_parser() -> argparse.ArgumentParser:
    parser = cli.command_parser("python -m fashion_keras.predict", __doc__.split("\n\n")[0])
    parser.add_argument(
        "model",
        help=".keras file, SavedModel (version folder or export base), run folder or "
        "train_stack folder; comma-separated for an ensemble",
    )
    parser.add_argument("images", nargs="*", help="image files and/or folders")
    parser.add_argument("--format", choices=("json", "csv"), default="json")
    parser.add_argument("--top-k", type=int, default=3, help="classes listed per head")
    parser.add_argument("--output", default=None, help="output file (default: stdout)")
    parser.add_argument(
        "--fashionai-question",
        default=None,
        help="a FashionAI Tests/question.csv: write the submission CSV to --output "
        "(default submission.csv)",
    )
    parser.add_argument(
        "--images-root",
        default=None,
        help="folder the question image paths are relative to (default: the release folder)",
    )
    sections.add_arguments(parser.add_argument_group("inference"), InferenceConfig)
    sections.add_arguments(parser.add_argument_group("preprocessing"), PreprocessConfig)
    return parser


def _submission(args: argparse.Namespace, ensemble, inference, margin) -> int:
    output = args.output or "submission.csv"
    try:
        n = write_submission(
            ensemble,
            args.fashionai_question,
            output,
            images_root=args.images_root,
            tta=inference.tta,
            batch_size=inference.batch_size,
            bbox_margin=margin,
        )
    except QuestionFileError as e:  # several lines, one per bad question row
        raise SystemExit(f"error: {e}") from None
    print(f"wrote {n} rows to {output}", file=sys.stderr)
    return 0


def _predict_files(args: argparse.Namespace, ensemble, inference, margin) -> int:
    files, skipped = find_images(args.images)
    readable = []
    for f in files:
        reason = check_image(f)
        if reason:
            skipped.append({"image": f, "reason": reason})
        else:
            readable.append(f)
    classes = softmax_heads(ensemble.heads)
    probs = (
        ensemble.predict_examples(
            file_examples(readable),
            tta=inference.tta,
            batch_size=inference.batch_size,
            bbox_margin=margin.bbox_margin,
            resize_ratio=inference.tta_resize,
        )
        if readable and classes
        else {}
    )
    points = None
    if readable and keypoint_heads(ensemble.heads):
        points = predict_keypoints(
            ensemble.predictors,
            ensemble.weights,
            file_examples(readable),
            tta=keypoint_tta(inference.tta),
            batch_size=inference.batch_size,
            bbox_margin=margin.bbox_margin,
            labelled_only=False,
        )
    records = predictions(readable, probs, classes, args.top_k, points)
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    try:
        if args.format == "json":
            json.dump({"predictions": records, "skipped": skipped}, out, indent=2)
            out.write("\n")
        else:
            write_csv(records, out)
    finally:
        if out is not sys.stdout:
            out.close()
    for s in skipped:
        print(f"skipped {s['image']}: {s['reason']}", file=sys.stderr)
    print(f"{len(records)} images predicted, {len(skipped)} skipped", file=sys.stderr)
    if not records:
        where = ", ".join(args.images)
        print(f"error: no image predicted in {where}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    if args.top_k < 1:
        raise SystemExit(f"error: --top-k = {args.top_k}: must be >= 1")
    with cli.input_errors(args.debug):  # bad flags, models, files
        inference, margin = sections.validated_from_args(args, InferenceConfig, PreprocessConfig)
        ensemble = load_ensemble([args.model], inference.weights)
        if margin.keypoint_model:  # the regions' boxes of a model with region crops
            model = load_keras_model(keras_file(margin.keypoint_model))
            set_keypoint_model(ensemble.predictors, model)
        if args.fashionai_question:
            return _submission(args, ensemble, inference, margin.bbox_margin)
        if not args.images:
            raise SystemExit("error: give image files or folders (or --fashionai-question)")
        return _predict_files(args, ensemble, inference, margin)


if __name__ == "__main__":
    sys.exit(main())
