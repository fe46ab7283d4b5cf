"""Prediction on image files (the command is ``python -m fashion_keras.predict``).

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

import csv
import dataclasses
import io
import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from fashion_keras.evaluation.ensembles import Ensemble
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
    ensemble: Ensemble,
    question_path: str,
    output_path: str,
    *,
    images_root: str | None = None,
    tta: str = "none",
    batch_size: int = 32,
    bbox_margin: float | None = None,
) -> int:
    """Writes the FashionAI submission CSV for ``question.csv``; returns the row count.

    ``images_root``: the folder the question's image paths are relative to (default: the
    release folder, i.e. the parent of ``Tests/``). ``bbox_margin`` overrides the models' own. Every row must have a decodable image:
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
