"""Evaluation: scores one model or a weighted ensemble on a split of a prepared dataset.

Optionally with test-time augmentation, and writes to the output folder:

- ``metrics.json``: per head the labelled rows, accuracy (masked), the majority-class
  baseline (always predicting the training split's most frequent class) and whether the head
  beats it, balanced accuracy, recall and precision per class, top-3/top-5 for heads with more
  than 10 classes, AP / BasicPrecision by the FashionAI ranking rule (``m`` hits not counted),
  the most confused class pairs; their means, the ensemble weights and TTA mode. The ranking
  metric is the official FashionAI score (key ``official``) only on FashionAI data; elsewhere
  it is the plain mean AP (key ``ranking``), see :func:`ranking_metric`;
- ``report.md``: the same as tables, with the heads that do not beat their baseline named
  in words, and links to the images;
- ``confusion/<head>.png``: a confusion matrix per head;
- ``top_losses.png``: the examples with the largest loss, with true and predicted labels;
- ``ensemble_weights.json`` when ``--search-weights`` searched them on ``--search-split``.

Keypoint heads (alone or beside softmax heads) add, per head, the NE tables (overall, per
category, per keypoint) beside the mean-position baseline of the training split (the
``keypoints`` section of ``metrics.json``, :meth:`KeypointEvaluation.to_json`, and
``report.md``), ``keypoints_<head>_worst.png`` (the worst images, skeletons drawn over the
original photo) and, with ``EvalConfig.submission`` or on a split without keypoint labels, the
FashionAI submission CSV (:mod:`fashion_keras.evaluation.keypoint_evaluation`). Keypoint heads
take TTA ``none`` or ``flip`` only (:func:`~fashion_keras.evaluation.views.keypoint_tta`).

Each model crops with the preprocessing it was trained with (``metrics.json`` and the report
say which, and where it came from); ``--bbox-margin`` overrides it. The command is
``python -m fashion_keras.evaluate``.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fashion_keras.data.preprocess import preprocess_for_eval
from fashion_keras.evaluation import reports, scoring
from fashion_keras.evaluation.config import EvalConfig, InferenceConfig
from fashion_keras.evaluation.ensembles import Ensemble, search_weights
from fashion_keras.evaluation.eval_data import EvalData, load_eval_data  # noqa: F401 (re-export)
from fashion_keras.evaluation.keypoint_evaluation import evaluate_keypoint_heads, keypoint_report
from fashion_keras.evaluation.keypoint_predictions import KeypointEvaluation
from fashion_keras.evaluation.summaries import _report_header, write_report
from fashion_keras.evaluation.views import NUM_VIEWS, InputSpec, override_margin
from fashion_keras.heads import Head, KeypointHead, keypoint_heads, softmax_heads

log = logging.getLogger("fashion_keras")

OBJECTIVES = ("mean_accuracy", "map")
#: The only dataset whose ranking metric is the official FashionAI score.
FASHIONAI_DATASET = "fashionai_attributes"


def ranking_metric(dataset: str) -> tuple[str, str]:
    """``(metrics.json key, name)`` of the AP ranking metric on ``dataset``: the official
    FashionAI score only on FashionAI data (``fashionai_attributes``, any config), elsewhere the
    same rule under its plain name."""
    if dataset.partition("/")[0] == FASHIONAI_DATASET:
        return "official", "Official FashionAI mAP / BasicPrecision"
    return "ranking", "mean AP"


def labelled_heads(data: EvalData, heads: Sequence[Head]) -> list[Head]:
    """The heads with at least one labelled row in ``data``."""
    return [h for h in heads if np.any(data.labels[h.name] >= 0)]


def official_score(
    probs: Mapping[str, np.ndarray], data: EvalData, heads: Sequence[Head]
) -> scoring.FashionAIScore:
    """The official FashionAI score over the labelled heads (rows unlabelled for a head are
    left out of that head's AP)."""
    heads = labelled_heads(data, heads)
    if not heads:
        raise ValueError("no head has a labelled row in the evaluation data")
    return scoring.fashionai_score(
        {h.name: probs[h.name] for h in heads},
        {h.name: (data.labels[h.name], data.m_masks[h.name]) for h in heads},
    )


def mean_accuracy(probs: Mapping[str, np.ndarray], data: EvalData, heads: Sequence[Head]) -> float:
    """Plain mean over labelled heads of the masked top-1 accuracy."""
    accs = [scoring.masked_accuracy(probs[h.name], data.labels[h.name]) for h in heads]
    accs = [a for a in accs if a is not None]
    if not accs:
        raise ValueError("no head has a labelled row in the evaluation data")
    return float(np.mean(accs))


def objective_fn(objective: str, data: EvalData, heads: Sequence[Head]):
    """The ensemble-search objective (higher is better) as a function of probabilities."""
    if objective == "mean_accuracy":
        return lambda probs: mean_accuracy(probs, data, heads)
    if objective == "map":
        return lambda probs: official_score(probs, data, heads).map or 0.0
    raise ValueError(f"objective = {objective!r}: expected one of {', '.join(OBJECTIVES)}")


def _baseline_counts(head: Head, train_counts: Mapping[str, Any] | None) -> np.ndarray | None:
    """The training split's class counts of ``head``, or None to fall back to the evaluated
    labels' own (none given, or the training split labels no row of the head)."""
    counts = None if train_counts is None else train_counts.get(head.name)
    if counts is None or not np.sum(counts):
        return None
    return np.asarray(counts, np.int64)


def head_metrics(
    probs: Mapping[str, np.ndarray],
    data: EvalData,
    heads: Sequence[Head],
    official: scoring.FashionAIScore,
    top_pairs: int = 10,
    train_counts: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per head: :func:`~fashion_keras.evaluation.scoring.head_summary` (accuracy, the
    majority-class baseline from ``train_counts`` (labelled rows per class of the training
    split; the evaluated labels' own counts where a head has none), balanced accuracy, recall
    and precision per class), top-k, AP/BasicPrecision, confusion matrix and pairs."""
    out = {}
    for h in heads:
        p, y = probs[h.name], data.labels[h.name]
        counts = _baseline_counts(h, train_counts)
        summary = scoring.head_summary(p, y, h.classes, counts)
        used = scoring.class_counts(y, h.num_classes) if counts is None else counts
        per_class = summary.pop("per_class")
        entry: dict[str, Any] = {
            "num_classes": h.num_classes,
            **summary,
            "baseline_counts": dict(zip(h.classes, used.tolist(), strict=True)),
        }
        if h.num_classes > 10:
            entry["top3"] = scoring.topk_accuracy(p, y, 3)
            entry["top5"] = scoring.topk_accuracy(p, y, 5)
        task = official.per_task.get(h.name)
        entry["ap"] = task.ap if task else None
        entry["basic_precision"] = task.basic_precision if task else None
        entry["per_class"] = per_class
        cm = scoring.confusion_matrix(y, np.argmax(p, axis=1), h.num_classes)
        entry["confusion_matrix"] = cm.tolist()
        entry["most_confused"] = [
            pair._asdict() for pair in scoring.most_confused_pairs(cm, h.classes, top_pairs)
        ]
        out[h.name] = entry
    return out


def baseline_overview(
    per_head: Mapping[str, Mapping[str, Any]], train_counts: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The ``metrics.json`` entries over heads: the mean majority baseline (over the heads with
    one, as ``mean_accuracy``), the heads that do not beat theirs, and a note (None when every
    baseline comes from the training split) naming the heads whose baseline fell back to the
    evaluated labels."""
    baselines = [m["majority_baseline"] for m in per_head.values()]
    baselines = [b for b in baselines if b is not None]
    fallback = [h for h, m in per_head.items() if m["baseline_from"] != "the training split"]
    note = None
    if fallback:
        why = (
            "no class counts of the training split were available"
            if train_counts is None
            else "the training split labels no row of them"
        )
        note = (
            f"{why}, so the majority baseline of {', '.join(fallback)} is the most frequent "
            "class of the evaluated labels themselves (the best any constant answer does there)"
        )
    return {
        "mean_majority_baseline": float(np.mean(baselines)) if baselines else None,
        "heads_not_beating_baseline": [
            h for h, m in per_head.items() if m["beats_baseline"] is False
        ],
        "baseline_note": note,
    }


def top_loss_rows(
    probs: Mapping[str, np.ndarray], data: EvalData, heads: Sequence[Head], k: int
) -> list[dict[str, Any]]:
    """The ``k`` (row, head) pairs with the largest cross-entropy, largest first."""
    cands = []
    for h in heads:
        rows, losses = scoring.top_losses(probs[h.name], data.labels[h.name], k)
        for row, loss in zip(rows.tolist(), losses.tolist(), strict=True):
            pred = int(np.argmax(probs[h.name][row]))
            cands.append(
                {
                    "row": row,
                    "file": data.filenames[row],
                    "head": h.name,
                    "true": h.classes[int(data.labels[h.name][row])],
                    "predicted": h.classes[pred],
                    "probability": float(probs[h.name][row, pred]),
                    "loss": float(loss),
                }
            )
    cands.sort(key=lambda c: (-c["loss"], c["row"], c["head"]))
    return cands[:k]


def _eval_images(data: EvalData, rows: Sequence[int], view: InputSpec) -> list[np.ndarray]:
    wanted = set(rows)
    found: dict[int, np.ndarray] = {}
    for i, ex in enumerate(data.examples):
        if i in wanted:
            image = preprocess_for_eval(ex["image"], view.image_size, ex["bbox"], view.bbox_margin)
            found[i] = image.numpy().astype(np.uint8)
            if len(found) == len(wanted):
                break
    return [found[r] for r in rows]


def score_probs(
    probs: Mapping[str, np.ndarray],
    data: EvalData,
    heads: Sequence[Head],
    train_counts: Mapping[str, Any] | None = None,
    top_losses: int = 16,
) -> dict[str, Any]:
    """The scores of ``metrics.json`` from the probabilities of ``data``'s rows: the example
    count, :func:`head_metrics`, the mean accuracy, :func:`baseline_overview`, the ranking
    metric under its :func:`ranking_metric` key and name, and the largest losses."""
    official = official_score(probs, data, heads)
    rank_key, rank_name = ranking_metric(data.dataset)
    per_head = head_metrics(probs, data, heads, official, train_counts=train_counts)
    return {
        "num_examples": data.num_examples,
        "heads": per_head,
        "mean_accuracy": mean_accuracy(probs, data, heads),
        **baseline_overview(per_head, train_counts),
        rank_key: {"name": rank_name, **official.to_dict()},
        "top_losses": top_loss_rows(probs, data, heads, top_losses),
    }


def _search(
    ensemble: Ensemble,
    search_data: EvalData,
    heads: Sequence[Head],
    config: EvalConfig,
    options: Mapping[str, Any],
) -> dict[str, Any]:
    """Searches the ensemble weights on ``search_data``, sets and saves them."""
    found = search_weights(
        ensemble.member_probs(search_data.examples, **options),
        objective_fn(config.search_weights, search_data, heads),
        config.search_weights,
    )
    ensemble.weights = found.weights
    entry = {**found.to_dict(), "split": config.search_split}
    names = [p.name for p in ensemble.predictors]
    with open(os.path.join(config.output_dir, "ensemble_weights.json"), "w") as f:
        json.dump({"models": names, "tta": options["tta"], **entry}, f, indent=2)
    log.info("searched ensemble weights %s (%s)", found.weights, config.search_weights)
    return entry


def display_path(filename: str, width: int = 32) -> str:
    """An image's name for a figure title: its path relative to the data folder, as the
    builders store it (``./`` and doubled ``/`` dropped), broken after a ``/`` into lines of at
    most ``width`` characters where it can be. An absolute path (``EvalData`` built by hand)
    keeps its last three parts after ``.../``."""
    if not filename:
        return "(no file name)"
    name = posixpath.normpath(filename.replace("\\", "/"))
    if posixpath.isabs(name):
        name = ".../" + "/".join([p for p in name.split("/") if p][-3:])
    lines = [""]
    for part in re.split(r"(?<=/)", name):
        if lines[-1] and len(lines[-1]) + len(part) > width:
            lines.append("")
        lines[-1] += part
    return "\n".join(lines)


def _plot(
    metrics: dict[str, Any], data: EvalData, heads: Sequence[Head], view: InputSpec, out: str
) -> None:
    """The confusion matrices and the largest-loss grid."""
    conf_dir = os.path.join(out, "confusion")
    os.makedirs(conf_dir, exist_ok=True)
    for h in heads:
        entry = metrics["heads"][h.name]
        reports.plot_confusion_matrix(
            np.asarray(entry["confusion_matrix"]),
            h.classes,
            os.path.join(conf_dir, f"{h.name}.png"),
            title=f"{h.name} ({entry['num_labelled']} labelled)",
        )
    worst = metrics["top_losses"]
    if worst:
        images = _eval_images(data, [w["row"] for w in worst], view)
        titles = [
            f"{display_path(w['file'])}\n{w['head']}: {w['true']}\n"
            f"-> {w['predicted']} ({w['probability']:.2f})"
            for w in worst
        ]
        reports.plot_top_losses(np.stack(images), titles, os.path.join(out, "top_losses.png"))


def _evaluated_heads(ensemble: Ensemble, data: EvalData) -> tuple[list[Head], list[KeypointHead]]:
    """The softmax and keypoint heads of ``ensemble`` that ``data`` has (no softmax head when
    keypoint heads are evaluated on data that labels none of the softmax heads)."""
    heads = [h for h in softmax_heads(ensemble.heads) if h.name in data.labels]
    points = [h for h in keypoint_heads(ensemble.heads) if h.name in data.keypoint_heads]
    if points and not labelled_heads(data, heads):
        heads = []  # softmax heads beside keypoint heads, on data that labels none of them
    if not heads and not points:
        raise ValueError(
            f"the models' heads {[h.name for h in ensemble.heads]} are not in the evaluation "
            f"data (it has {sorted([*data.labels, *data.keypoint_heads])})"
        )
    return heads, points


def _run_entry(
    ensemble: Ensemble,
    data: EvalData,
    views: Sequence[Sequence[InputSpec]],
    tta: str,
    split: str,
) -> dict[str, Any]:
    """The ``metrics.json`` keys that say what was evaluated: the data, the models, their
    weights and views (each model's crop), the TTA mode and the split."""
    return {
        "dataset": data.dataset,
        "models": [p.name for p in ensemble.predictors],
        "weights": list(ensemble.weights),
        "preprocessing": [[v.to_dict() for v in member] for member in views],
        "tta": tta,
        "views": NUM_VIEWS[tta],
        "split": split,
    }


def _region_entry(ensemble: Ensemble) -> dict[str, Any]:
    """``metrics.json``'s ``region_boxes``: per model with region crops, the examples and how
    many fell back to the garment box per region (nothing without such a model)."""
    entry = {
        p.name: {
            "examples": p.region_fallbacks.examples,
            "fell_back_to_garment_box": dict(p.region_fallbacks.fallbacks),
        }
        for p in ensemble.predictors
        if p.region_fallbacks is not None
    }
    return {"region_boxes": entry} if entry else {}


def _write_outputs(
    metrics: dict[str, Any],
    heads: Sequence[Head],
    keypoints: Mapping[str, KeypointEvaluation] | None,
    out: str,
) -> None:
    """``metrics.json`` and ``report.md`` (the softmax heads' report, or only its header, then
    the keypoint sections when keypoint heads were evaluated: ``keypoints`` not None)."""
    with open(os.path.join(out, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=2)
    report = os.path.join(out, "report.md")
    if heads:
        write_report(report, metrics, heads)
    else:
        with open(report, "w", encoding="utf-8") as f:
            f.write("\n".join(_report_header(metrics)) + "\n")
    if keypoints is not None:
        with open(report, "a", encoding="utf-8") as f:
            f.write(keypoint_report(metrics, keypoints))


def evaluate(
    ensemble: Ensemble,
    data: EvalData,
    config: EvalConfig | None = None,
    inference: InferenceConfig | None = None,
    *,
    bbox_margin: float | None = None,
    search_data: EvalData | None = None,
    train_counts: Mapping[str, Any] | None = None,
    train_keypoints: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluates one model or an ensemble on ``data`` and writes the report files.

    Args:
      ensemble: the model(s) and weights (``ensembles.load_ensemble``).
      config: the split name, weight search, report options, ``submission`` and ``output_dir``.
      inference: test-time augmentation and batch size.
      bbox_margin: overrides every model's own garment-box margin.
      search_data: a split to search the ensemble weights on (``config.search_weights``); the
        weights found replace ``ensemble.weights`` and are saved.
      train_counts: per head, labelled rows per class of the training split
        (``fashion_keras.data.sources.label_counts``): each head's majority-class baseline is
        its most frequent class there. None (or a head they do not label): the evaluated
        labels' own most frequent class, and ``baseline_note`` says so.
      train_keypoints: per keypoint head, the training split's truth and categories
        (``eval_data.keypoint_truth``) for the mean-position baseline; None: no baseline.

    Returns:
      The ``metrics.json`` content.
    """
    config, inference = config or EvalConfig(), inference or InferenceConfig()
    heads, points = _evaluated_heads(ensemble, data)
    options = {
        "tta": inference.tta,
        "batch_size": inference.batch_size,
        "bbox_margin": bbox_margin,
        "resize_ratio": inference.tta_resize,
    }
    os.makedirs(config.output_dir, exist_ok=True)
    metrics: dict[str, Any] = {}
    if search_data is not None and len(ensemble.predictors) > 1 and config.search_weights:
        if not heads:
            raise ValueError(
                f"search_weights = {config.search_weights!r} scores softmax heads, and the "
                "models have keypoint heads only; give --weights instead"
            )
        metrics["ensemble_search"] = _search(ensemble, search_data, heads, config, options)
    views = [override_margin(p.inputs, bbox_margin) for p in ensemble.predictors]
    metrics.update(_run_entry(ensemble, data, views, inference.tta, config.split))
    if heads:
        probs = ensemble.predict_examples(data.examples, **options)
        if any(len(p) != data.num_examples for p in probs.values()):
            raise RuntimeError("the models returned a different number of rows than the data has")
        metrics.update(_region_entry(ensemble))
        metrics.update(score_probs(probs, data, heads, train_counts, config.top_losses))
        _plot(metrics, data, heads, views[0][0], config.output_dir)
    else:
        metrics["num_examples"] = data.num_examples
    results: dict[str, KeypointEvaluation] = {}
    if points:
        entries, results, submission = evaluate_keypoint_heads(
            ensemble,
            data,
            points,
            config,
            inference,
            bbox_margin=bbox_margin,
            train_keypoints=train_keypoints,
        )
        metrics["keypoints"] = entries
        if submission is not None:
            metrics["submission"] = submission
    _write_outputs(metrics, heads, results if points else None, config.output_dir)
    return metrics
