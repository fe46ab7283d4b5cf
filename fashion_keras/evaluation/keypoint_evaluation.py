"""Keypoint heads in an evaluation: their scores, worst-case figures, submission and report.

:func:`evaluate_keypoint_heads` predicts every keypoint head of an ensemble over the evaluation
data (TTA ``none`` or ``flip``, :func:`~fashion_keras.evaluation.views.keypoint_tta`), scores
the labelled rows (NE beside the training split's mean-position baseline,
:func:`~fashion_keras.evaluation.keypoint_predictions.evaluate_keypoints`), draws the worst images
over their original photos (``keypoints_<head>_worst.png``) and, with ``EvalConfig.submission``
or on a split without keypoint labels, writes the FashionAI submission CSV.
:func:`keypoint_report` and :func:`keypoint_summary` are its ``report.md`` sections and console
lines. :func:`fashion_keras.evaluation.evaluate.evaluate` calls it for models with keypoint heads.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from fashion_keras.data import geometry
from fashion_keras.evaluation import keypoint_submission
from fashion_keras.evaluation.config import EvalConfig, InferenceConfig
from fashion_keras.evaluation.ensembles import Ensemble, predict_keypoints
from fashion_keras.evaluation.eval_data import EvalData
from fashion_keras.evaluation.keypoint_figures import per_image_errors, plot_worst_cases
from fashion_keras.evaluation.keypoint_predictions import (
    KeypointEvaluation,
    KeypointPredictions,
    evaluate_keypoints,
    uses_normalised_error,
)
from fashion_keras.evaluation.landmark_scoring import landmark_error
from fashion_keras.evaluation.summaries import fmt
from fashion_keras.evaluation.views import keypoint_tta
from fashion_keras.heads import KeypointHead

#: File name of a keypoint head's worst-case figure, beside ``report.md``.
WORST_CASES_FILE = "keypoints_{head}_worst.png"
#: The submission's default file name (on a split without keypoint labels).
SUBMISSION_FILE = "submission.csv"


def labelled_rows(predictions: KeypointPredictions) -> KeypointPredictions:
    """``predictions`` restricted to the rows with some of the head's keypoints (those
    ``predict_keypoints(..., labelled_only=True)`` keeps)."""
    keep = (predictions.truth[..., 2] > geometry.ABSENT).any(axis=1)
    return dataclasses.replace(
        predictions,
        truth=predictions.truth[keep],
        predicted=predictions.predicted[keep],
        scores=predictions.scores[keep],
        categories=[c for c, k in zip(predictions.categories, keep, strict=True) if k],
        image_sizes=predictions.image_sizes[keep],
        rows=predictions.rows[keep],
    )


def keypoint_image_errors(predictions: KeypointPredictions) -> np.ndarray:
    """Each row's error in percent (NaN where it cannot be scored, e.g. no category): the
    FashionAI NE of its visible points (:func:`per_image_errors`), or for heads without a
    normalising pair the DeepFashion landmark error (distance over the image size)."""
    p, head = predictions, predictions.head
    errors = np.full(len(p.rows), np.nan)
    known = np.flatnonzero(p.known())
    if not len(known):
        return errors
    truth = p.truth[known]
    vis = truth[..., 2].round().astype(int)
    if uses_normalised_error(head):
        cats = [p.categories[i] for i in known]
        errors[known] = per_image_errors(p.predicted[known], truth[..., :2], vis, cats, head)
        return errors
    for i, row in enumerate(known):
        errors[row] = 100.0 * landmark_error(
            p.predicted[row : row + 1], truth[i : i + 1, :, :2], vis[i : i + 1] == 1,
            p.image_sizes[row : row + 1],
        )  # fmt: skip
    return errors


def worst_rows(errors: np.ndarray, k: int) -> list[int]:
    """The ``k`` scored rows with the highest error, worst first (the order
    :func:`plot_worst_cases` draws)."""
    scored = np.flatnonzero(~np.isnan(errors))
    return scored[np.argsort(-errors[scored], kind="stable")][:k].tolist()


class _Photos(Sequence):
    """``n`` photos of which only the decoded ones can be read (the worst cases drawn)."""

    def __init__(self, n: int, decoded: Mapping[int, np.ndarray]) -> None:
        self._n, self._decoded = n, decoded

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> np.ndarray:  # type: ignore[override]
        return self._decoded[i]


def original_photos(data: EvalData, rows: Sequence[int]) -> dict[int, np.ndarray]:
    """The original photos (uint8 RGB, whole, as the keypoints' pixels) of ``data``'s
    ``rows``, decoded in one pass over the examples."""
    wanted, found = set(rows), {}
    if not wanted:
        return found
    images = data.examples.map(lambda ex: ex["image"])
    for i, encoded in enumerate(images):
        if i in wanted:
            image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
            found[i] = image.numpy().astype(np.uint8)
            if len(found) == len(wanted):
                break
    return found


def plot_keypoint_worst(
    predictions: KeypointPredictions, data: EvalData, path: str, k: int
) -> list[int]:
    """``plot_worst_cases`` of the ``k`` worst labelled rows, over their original photos;
    returns their indices in ``predictions``."""
    p = predictions
    errors = keypoint_image_errors(p)
    order = worst_rows(errors, k)
    photos = original_photos(data, [int(p.rows[i]) for i in order])
    images = _Photos(len(p.rows), {i: photos[int(p.rows[i])] for i in order})
    cats = [c if c is not None else p.head.category_names[0] for c in p.categories]
    return plot_worst_cases(path, images, p.truth, p.predicted, errors, cats, p.head, k=k)


def write_keypoint_submission(
    predictions: KeypointPredictions, data: EvalData, path: str
) -> dict[str, Any]:
    """The FashionAI submission CSV (:func:`keypoint_submission.write_submission`) of every row
    of ``data`` (``predictions`` of all rows, not only the labelled ones), in the order of the
    dataset's files where it records one (``order``), else the split's; returns its
    ``metrics.json`` entry."""
    p, head = predictions, predictions.head
    unknown = [i for i, c in enumerate(p.categories) if c is None]
    if unknown:
        rows = ", ".join(f"row {i} ({data.image_ids[i]!r})" for i in unknown[:5])
        raise ValueError(
            f"submission: {len(unknown)} rows have no {head.name} category ({rows}); every "
            "test-list row needs its image_category (keypoint_categories/<head>)"
        )
    ids = [data.image_ids[int(i)] for i in p.rows]
    order = np.arange(len(p.rows))
    if len(data.orders) == len(data.image_ids) and min(data.orders, default=0) >= 0:
        # the test list's order (TFDS stores the records shuffled)
        order = np.argsort([data.orders[int(i)] for i in p.rows], kind="stable")
    keypoint_submission.write_submission(
        path,
        [ids[i] for i in order],
        [p.categories[i] for i in order],
        p.predicted[order],
        head,
    )
    return {"path": path, "head": head.name, "rows": len(p.rows)}


def _keypoint_entry(
    result: KeypointEvaluation | None, num_labelled: int, tta: str, figure: str | None
) -> dict[str, Any]:
    out = result.to_json() if result is not None else {}
    return {**out, "num_labelled": num_labelled, "tta": tta, "worst_cases": figure}


def evaluate_keypoint_heads(
    ensemble: Ensemble,
    data: EvalData,
    heads: Sequence[KeypointHead],
    config: EvalConfig,
    inference: InferenceConfig,
    *,
    bbox_margin: float | None = None,
    train_keypoints: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, KeypointEvaluation], dict[str, Any] | None]:
    """Scores the keypoint heads on ``data``: per head the ``metrics.json`` entry
    (:meth:`KeypointEvaluation.to_json` plus ``num_labelled``, ``tta`` and ``worst_cases``),
    the evaluations (for the report) and the submission entry (None when none is written)."""
    tta = keypoint_tta(inference.tta)
    predictions = predict_keypoints(
        ensemble.predictors,
        ensemble.weights,
        data.examples,
        tta=tta,
        batch_size=inference.batch_size,
        bbox_margin=bbox_margin,
        labelled_only=False,
    )
    entries: dict[str, Any] = {}
    results: dict[str, KeypointEvaluation] = {}
    for h in heads:
        p = labelled_rows(predictions[h.name])
        if not len(p.rows):
            entries[h.name] = _keypoint_entry(None, 0, tta, None)
            continue
        truth = None if train_keypoints is None else train_keypoints.get(h.name)
        results[h.name] = evaluate_keypoints(p, truth)
        figure = None
        if config.top_losses:
            figure = WORST_CASES_FILE.format(head=h.name)
            plot_keypoint_worst(p, data, os.path.join(config.output_dir, figure), config.top_losses)
        entries[h.name] = _keypoint_entry(results[h.name], len(p.rows), tta, figure)
    unlabelled = [h for h in heads if not entries[h.name]["num_labelled"]]
    path = config.submission
    if path is None and unlabelled and len(heads) == 1:
        path = os.path.join(config.output_dir, SUBMISSION_FILE)
    if path is None:
        return entries, results, None
    if len(heads) != 1:
        raise ValueError(
            f"submission = {path!r}: a submission is of one keypoint head, the models have "
            f"{[h.name for h in heads]}; evaluate a model with one keypoint head"
        )
    return entries, results, write_keypoint_submission(predictions[heads[0].name], data, path)


def keypoint_report(metrics: Mapping[str, Any], results: Mapping[str, KeypointEvaluation]) -> str:
    """The keypoint sections of ``report.md``: per head the rows scored, the TTA, the NE
    tables beside the mean-position baseline, and the worst-case figure."""
    lines = []
    for name, entry in metrics["keypoints"].items():
        lines += ["", f"# Keypoints: `{name}`", ""]
        if name not in results:
            lines.append(
                f"No row of split `{metrics['split']}` has `{name}` keypoints: not scored."
            )
            continue
        result = results[name]
        baseline = (
            "the mean-position baseline (each keypoint's mean training position in its "
            "category) from the training split"
            if result.baseline is not None or (result.landmarks or {}).get("baseline_ne")
            else "no mean-position baseline (no training keypoints were given)"
        )
        lines += [
            f"{entry['num_labelled']} labelled rows, test-time augmentation `{entry['tta']}`, "
            f"{baseline}. NE in percent of the normalising distance; lower is better.",
            "",
            result.table().rstrip(),
        ]
        if entry["worst_cases"]:
            lines += ["", f"![worst cases of {name}]({entry['worst_cases']})"]
    if metrics.get("submission"):
        s = metrics["submission"]
        lines += ["", f"Submission: `{s['path']}` ({s['rows']} rows of `{s['head']}`)."]
    return "\n".join(lines) + "\n"


def keypoint_summary(metrics: Mapping[str, Any]) -> str:
    """Console lines: per keypoint head its NE (or landmark error) and the baseline's."""
    lines = []
    for name, m in metrics.get("keypoints", {}).items():
        if not m["num_labelled"]:
            lines.append(f"keypoints {name}: no labelled row in split {metrics['split']}")
        elif "landmarks" in m:
            lm = m["landmarks"]
            lines.append(
                f"keypoints {name}: landmark NE {fmt(lm.get('ne'))} (mean-position baseline "
                f"{fmt(lm.get('baseline_ne'))}) over {m['num_labelled']} rows, tta {m['tta']}"
            )
        else:
            base = (m.get("baseline") or {}).get("ne_percent")
            lines.append(
                f"keypoints {name}: NE {fmt(m['ne_percent'], 2)}% (mean-position baseline "
                f"{fmt(base, 2)}%) over {m['points']} points of {m['images']} images, "
                f"tta {m['tta']}"
            )
    if metrics.get("submission"):
        s = metrics["submission"]
        lines.append(f"wrote the {s['head']} submission ({s['rows']} rows) to {s['path']}")
    return "\n".join(lines)
