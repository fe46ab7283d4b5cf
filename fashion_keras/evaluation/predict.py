"""Prediction on image files (the command is ``python -m fashion_keras.predict``).

For each image (JPEG, PNG, WebP, BMP, GIF, or any format PIL reads, such as TIFF; folders are
searched recursively), per head the top classes with their probabilities and names. Every file
that is not predicted (not an image, unreadable, undecodable, over the 40 MP limit of the
dataset builders) is listed with the reason (``skipped`` in JSON, a stderr line each).
``MODEL`` may be several comma-separated models (an ensemble, ``--weights``) and ``--tta``
averages test-time-augmentation views, as in ``fashion_keras.evaluate``.

Keypoint heads: per head every keypoint's ``keypoint_index``, ``keypoint_name``, ``x``, ``y``
(pixels of the original image) and ``score`` (its visibility probability), the names
``serving.client`` uses (``keypoints`` in the JSON, extra CSV columns).

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
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from PIL import Image

from fashion_keras.evaluation.ensembles import Ensemble
from fashion_keras.evaluation.keypoint_predictions import KeypointPredictions
from fashion_keras.heads import Head, softmax_heads
from fashion_keras_datasets.common.images import DEFAULT_MAX_IMAGE_PIXELS as MAX_IMAGE_PIXELS

log = logging.getLogger("fashion_keras")

#: Formats TensorFlow decodes in the model's pipeline; PIL converts other formats it reads
#: (TIFF, ...) to PNG first.
TF_FORMATS = frozenset({"JPEG", "PNG", "GIF", "BMP", "WEBP"})


def find_images(paths: Sequence[str]) -> tuple[list[str], list[dict[str, str]]]:
    """Every file named or found (recursively, sorted) under folders, whatever its name:
    :func:`read_image` decides what is an image; missing paths are returned as skipped."""
    found: list[str] = []
    skipped: list[dict[str, str]] = []
    for path in paths:
        if os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs.sort()
                found.extend(os.path.join(root, f) for f in sorted(files))
        elif os.path.isfile(path):
            found.append(path)
        else:
            skipped.append({"image": path, "reason": "no such file or folder"})
    return found, skipped


def decoder_message(error: tf.errors.OpError) -> str:
    """TensorFlow's own decoder message, without the node name before it and the op after."""
    text = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", error.message.strip())
    return re.sub(r"\s*\[Op:\w+\].*$", "", text, flags=re.S).strip()


def _pil_format(data: bytes) -> tuple[str | None, tuple[int, int] | None]:
    """The format and size PIL reads from the header (nothing is decoded), if it knows it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                return image.format, image.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None, None


def encoded_image(path: str) -> tuple[bytes | None, str | None]:
    """``(bytes the model's pipeline decodes, None)`` for an image file, else ``(None, why
    not)``. Images over :data:`MAX_IMAGE_PIXELS` are refused from their header, before any
    decoding; formats TensorFlow does not decode but PIL reads (TIFF, ...) become PNG."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return None, f"cannot read: {e.strerror or e}"
    if not data:
        return None, "empty file"
    fmt, size = _pil_format(data)
    if size is not None and size[0] * size[1] > MAX_IMAGE_PIXELS:
        return None, (
            f"image of {size[0]} x {size[1]} pixels ({size[0] * size[1] / 1e6:.1f} MP) is over "
            f"the {MAX_IMAGE_PIXELS / 1e6:.0f} MP limit"
        )
    if fmt is not None and fmt not in TF_FORMATS:
        buf = io.BytesIO()
        with Image.open(io.BytesIO(data)) as image:
            image.convert("RGB").save(buf, "PNG")
        data = buf.getvalue()
    try:
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
        return None, decoder_message(e)
    if image.shape[0] < 1 or image.shape[1] < 1:
        return None, f"empty image of shape {tuple(image.shape)}"
    return data, None


def check_image(path: str) -> str | None:
    """``None`` when the file is an image the model can run on, else why not."""
    return encoded_image(path)[1]


def file_examples(files: Sequence[str]) -> tf.data.Dataset:
    """Examples (``{"image": bytes}``, whole image) read from image files, in order (files
    :func:`check_image` accepted)."""
    files = list(files)

    def read():
        for path in files:
            data, reason = encoded_image(path)
            if data is None:
                raise ValueError(f"{path}: {reason}")
            yield {"image": data}

    return tf.data.Dataset.from_generator(
        read, output_signature={"image": tf.TensorSpec([], tf.string)}
    )


def top_classes(probs: np.ndarray, head: Head, k: int) -> list[dict[str, Any]]:
    """The ``k`` most probable classes of one row, most probable first:
    ``{"class_index", "class_name", "probability"}`` each (the names ``serving.client`` uses)."""
    order = np.argsort(-probs, kind="stable")[:k]
    return [
        {"class_index": int(i), "class_name": head.classes[int(i)], "probability": float(probs[i])}
        for i in order
    ]


def keypoint_list(predictions: KeypointPredictions, row: int) -> list[dict[str, Any]]:
    """Every keypoint of one row, in head order: ``{"keypoint_index", "keypoint_name", "x",
    "y", "score"}`` (``x``, ``y`` in the original image's pixels; ``score``: the visibility
    probability), the names ``serving.client`` uses."""
    head = predictions.head
    xy, scores = predictions.predicted[row], predictions.scores[row]
    return [
        {
            "keypoint_index": j,
            "keypoint_name": name,
            "x": float(xy[j, 0]),
            "y": float(xy[j, 1]),
            "score": float(scores[j]),
        }
        for j, name in enumerate(head.keypoints)
    ]


def predictions(
    files: Sequence[str],
    probs: dict[str, np.ndarray],
    heads: Sequence[Head],
    k: int,
    keypoints: Mapping[str, KeypointPredictions] | None = None,
) -> list[dict[str, Any]]:
    """One ``{"image", "heads": {head: [top classes]}}`` record per file (softmax ``heads``),
    with ``"keypoints": {head: [keypoints]}`` (:func:`keypoint_list`) when ``keypoints``
    (every file's, ``labelled_only=False``) are given."""
    records = []
    for i, f in enumerate(files):
        record: dict[str, Any] = {
            "image": f,
            "heads": {h.name: top_classes(probs[h.name][i], h, k) for h in heads},
        }
        if keypoints:
            record["keypoints"] = {name: keypoint_list(p, i) for name, p in keypoints.items()}
        records.append(record)
    return records


#: The CSV's columns; with keypoint heads, :data:`KEYPOINT_CSV_COLUMNS` follow.
CSV_COLUMNS = ("image", "head", "rank", "class_index", "class_name", "probability")
KEYPOINT_CSV_COLUMNS = ("keypoint_index", "keypoint_name", "x", "y", "score")


def write_csv(records: Sequence[dict[str, Any]], out: io.TextIOBase) -> None:
    """Rows ``image,head,rank,class_index,class_name,probability``; with keypoint heads the
    columns ``keypoint_index,keypoint_name,x,y,score`` follow, one row per keypoint (its class
    cells empty, as the keypoint cells of class rows)."""
    with_points = any(r.get("keypoints") for r in records)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*CSV_COLUMNS, *(KEYPOINT_CSV_COLUMNS if with_points else ())])
    pad = [""] * len(KEYPOINT_CSV_COLUMNS) if with_points else []
    for r in records:
        for head, tops in r["heads"].items():
            for rank, t in enumerate(tops, 1):
                score = [t["class_index"], t["class_name"], f"{t['probability']:.6f}"]
                writer.writerow([r["image"], head, rank, *score, *pad])
        for head, points in r.get("keypoints", {}).items():
            for p in points:
                cells = [p["keypoint_index"], p["keypoint_name"], f"{p['x']:.2f}", f"{p['y']:.2f}"]
                writer.writerow([r["image"], head, "", "", "", "", *cells, f"{p['score']:.6f}"])


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
    heads = {h.name: h for h in softmax_heads(ensemble.heads)}
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
