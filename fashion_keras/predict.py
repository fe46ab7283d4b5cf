"""Prediction: ``python -m fashion_keras.predict MODEL IMAGE_OR_DIR... [--format json|csv]``.

For each image (JPEG, PNG, WebP, BMP or GIF; folders are searched recursively), per head the
top classes with their probabilities and names. Files that cannot be read or decoded are
skipped and listed (``skipped`` in JSON, a stderr line each for CSV) with the reason.
``MODEL`` may be several comma-separated models (an ensemble, ``--weights``) and ``--tta``
averages test-time-augmentation views, as in ``fashion_keras.evaluate``.

With ``--fashionai-question PATH/Tests/question.csv`` it writes the FashionAI submission
instead: the question rows in their order, the ``?`` replaced by the task's class
probabilities in class order, ``%.8f`` joined by ``;``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from fashion_keras import inference
from fashion_keras.data.preprocess import DEFAULT_BBOX_MARGIN
from fashion_keras.heads import Head

log = logging.getLogger("fashion_keras")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")


def find_images(paths: Sequence[str]) -> tuple[list[str], list[dict[str, str]]]:
    """Image files named or found (recursively, sorted) under folders; missing paths are
    returned as skipped entries. Files named explicitly are taken whatever their extension."""
    found: list[str] = []
    skipped: list[dict[str, str]] = []
    for path in paths:
        if os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs.sort()
                found.extend(
                    os.path.join(root, f)
                    for f in sorted(files)
                    if f.lower().endswith(IMAGE_EXTENSIONS)
                )
        elif os.path.isfile(path):
            found.append(path)
        else:
            skipped.append({"image": path, "reason": "no such file or folder"})
    return found, skipped


def check_image(path: str) -> str | None:
    """``None`` when TensorFlow decodes the file as an image (what the model runs), else why
    not."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return f"cannot read: {e.strerror or e}"
    if not data:
        return "empty file"
    try:
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
        return f"not a decodable image ({e.message.splitlines()[0][:120]})"
    if image.shape[0] < 1 or image.shape[1] < 1:
        return f"empty image of shape {tuple(image.shape)}"
    return None


def file_examples(files: Sequence[str]) -> tf.data.Dataset:
    """Examples (``{"image": bytes}``, whole image) read from image files, in order."""
    return tf.data.Dataset.from_tensor_slices(list(files)).map(
        lambda p: {"image": tf.io.read_file(p)}
    )


def top_classes(probs: np.ndarray, head: Head, k: int) -> list[dict[str, Any]]:
    """The ``k`` most probable classes of one row, most probable first."""
    order = np.argsort(-probs, kind="stable")[:k]
    return [
        {"index": int(i), "class": head.classes[int(i)], "probability": float(probs[i])}
        for i in order
    ]


def predictions(
    files: Sequence[str], probs: dict[str, np.ndarray], heads: Sequence[Head], k: int
) -> list[dict[str, Any]]:
    """One ``{"image", "heads": {head: [top classes]}}`` record per file."""
    return [
        {"image": f, "heads": {h.name: top_classes(probs[h.name][i], h, k) for h in heads}}
        for i, f in enumerate(files)
    ]


def write_csv(records: Sequence[dict[str, Any]], out: io.TextIOBase) -> None:
    """Rows ``image,head,rank,class,probability``."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["image", "head", "rank", "class", "probability"])
    for r in records:
        for head, tops in r["heads"].items():
            for rank, t in enumerate(tops, 1):
                writer.writerow([r["image"], head, rank, t["class"], f"{t['probability']:.6f}"])


class QuestionFileError(ValueError):
    """A malformed FashionAI ``question.csv``."""


@dataclasses.dataclass
class Question:
    line: int
    image: str
    task: str


def read_questions(path: str, heads: Sequence[Head]) -> list[Question]:
    """Rows ``image_path,task,?`` of a FashionAI ``question.csv``; errors name file:line."""
    names = {h.name for h in heads}
    rows = []
    with open(path, encoding="utf-8", newline="") as f:
        for lineno, row in enumerate(csv.reader(f), 1):
            if not row or not "".join(row).strip():
                continue
            where = f"{path}:{lineno}"
            if len(row) != 3:
                raise QuestionFileError(
                    f"{where}: expected 3 columns image_path,task,? but got {len(row)}: {row!r}"
                )
            image, task, mark = (c.strip() for c in row)
            if task not in names:
                raise QuestionFileError(
                    f"{where}: task = {task!r} is not a head of the model ({sorted(names)})"
                )
            if mark != "?":
                raise QuestionFileError(f"{where}: third column = {mark!r}, expected '?'")
            if not image:
                raise QuestionFileError(f"{where}: empty image path")
            rows.append(Question(lineno, image, task))
    if not rows:
        raise QuestionFileError(f"{path}: no question rows")
    return rows


def write_submission(
    ensemble: inference.Ensemble,
    question_path: str,
    output_path: str,
    *,
    images_root: str | None = None,
    tta: str = "none",
    batch_size: int = 32,
    bbox_margin: float = DEFAULT_BBOX_MARGIN,
) -> int:
    """Writes the FashionAI submission CSV for ``question.csv``; returns the row count.

    ``images_root``: the folder the question's image paths are relative to (default: the
    release folder, i.e. the parent of ``Tests/``). Every row must have a decodable image:
    a submission with missing rows is not accepted, so bad rows raise one error listing them.
    """
    heads = {h.name: h for h in ensemble.heads}
    questions = read_questions(question_path, list(heads.values()))
    if images_root is None:
        images_root = os.path.dirname(os.path.dirname(os.path.abspath(question_path)))
    files = [os.path.join(images_root, q.image) for q in questions]
    bad = []
    for q, f in zip(questions, files, strict=True):
        reason = check_image(f)
        if reason:
            bad.append(f"{question_path}:{q.line}: {f}: {reason}")
    if bad:
        more = f"\n... and {len(bad) - 20} more" if len(bad) > 20 else ""
        raise QuestionFileError(
            f"{len(bad)} question rows have no usable image (a submission needs every row):\n"
            + "\n".join(bad[:20])
            + more
        )
    probs = ensemble.predict_examples(
        file_examples(files), tta=tta, batch_size=batch_size, bbox_margin=bbox_margin
    )
    tmp = f"{output_path}.tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        for i, q in enumerate(questions):
            values = ";".join(f"{p:.8f}" for p in probs[q.task][i])
            f.write(f"{q.image},{q.task},{values}\n")
    os.replace(tmp, output_path)
    return len(questions)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fashion_keras.predict",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "model",
        help=".keras file, SavedModel (version folder or export base), run folder or "
        "train_stack folder; comma-separated for an ensemble",
    )
    parser.add_argument("images", nargs="*", help="image files and/or folders")
    parser.add_argument("--format", choices=("json", "csv"), default="json")
    parser.add_argument("--top-k", type=int, default=3, help="classes listed per head")
    parser.add_argument("--tta", choices=inference.TTA_MODES, default="none")
    parser.add_argument("--weights", default=None, help="ensemble weights or a JSON file")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--bbox-margin", type=float, default=DEFAULT_BBOX_MARGIN)
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    if args.top_k < 1:
        raise SystemExit(f"error: --top-k = {args.top_k}: must be >= 1")
    try:
        ensemble = inference.load_ensemble([args.model], args.weights)
    except (ValueError, OSError) as e:
        raise SystemExit(f"error: {e}") from None
    if args.fashionai_question:
        output = args.output or "submission.csv"
        try:
            n = write_submission(
                ensemble,
                args.fashionai_question,
                output,
                images_root=args.images_root,
                tta=args.tta,
                batch_size=args.batch_size,
                bbox_margin=args.bbox_margin,
            )
        except (QuestionFileError, OSError) as e:
            raise SystemExit(f"error: {e}") from None
        print(f"wrote {n} rows to {output}", file=sys.stderr)
        return 0
    if not args.images:
        raise SystemExit("error: give image files or folders (or --fashionai-question)")
    files, skipped = find_images(args.images)
    readable = []
    for f in files:
        reason = check_image(f)
        if reason:
            skipped.append({"image": f, "reason": reason})
        else:
            readable.append(f)
    heads = ensemble.heads
    probs = (
        ensemble.predict_examples(
            file_examples(readable),
            tta=args.tta,
            batch_size=args.batch_size,
            bbox_margin=args.bbox_margin,
        )
        if readable
        else {}
    )
    records = predictions(readable, probs, heads, args.top_k)
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
    return 0 if records or not skipped else 1


if __name__ == "__main__":
    sys.exit(main())
