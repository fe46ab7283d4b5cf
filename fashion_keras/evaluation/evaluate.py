"""Evaluation: scores one model or a weighted ensemble on a split of a prepared dataset.

Optionally with test-time augmentation, and writes to the output folder:

- ``metrics.json``: per head accuracy (masked), top-3/top-5 for heads with more than 10
  classes, the official FashionAI AP / BasicPrecision (``m`` hits not counted), their means,
  the most confused class pairs, the ensemble weights and TTA mode;
- ``report.md``: the same as tables, with links to the images;
- ``confusion/<head>.png``: a confusion matrix per head;
- ``top_losses.png``: the examples with the largest loss, with true and predicted labels;
- ``ensemble_weights.json`` when ``--search-weights`` searched them on ``--search-split``.

Each model crops with the preprocessing it was trained with (``metrics.json`` and the report
say which, and where it came from); ``--bbox-margin`` overrides it. The command is
``python -m fashion_keras.evaluate``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from fashion_keras.data import pipeline
from fashion_keras.data.preprocess import preprocess_for_eval
from fashion_keras.evaluation import reports, scoring
from fashion_keras.evaluation.config import EvalConfig, InferenceConfig
from fashion_keras.evaluation.ensembles import Ensemble, search_weights
from fashion_keras.evaluation.views import NUM_VIEWS, InputSpec, override_margin
from fashion_keras.heads import Head

log = logging.getLogger("fashion_keras")

OBJECTIVES = ("mean_accuracy", "map")


@dataclasses.dataclass
class EvalData:
    """A split's examples and their truth, in row order.

    ``examples`` yield ``image`` (encoded), ``bbox``; ``labels[head]`` is (N,) int with -1 for
    unlabelled rows; ``m_masks[head]`` (N, C) bool marks FashionAI ``m`` classes (all False for
    datasets without them); ``filenames`` name each row's image.
    """

    examples: tf.data.Dataset
    labels: dict[str, np.ndarray]
    m_masks: dict[str, np.ndarray]
    filenames: list[str]

    @property
    def num_examples(self) -> int:
        return len(self.filenames)


def load_eval_data(
    examples: tf.data.Dataset, heads: Sequence[Head], max_examples: int | None = None
) -> EvalData:
    """Reads the truth of TFDS-format examples (any of this package's builders) for ``heads``."""
    heads = tuple(heads)
    if max_examples:
        examples = examples.take(max_examples)

    def _slim(ex):
        norm = pipeline.normalize_example(ex, heads)
        m_in = ex.get("m_mask", {})
        return {
            "image": norm["image"],
            "bbox": norm["bbox"],
            "labels": norm["labels"],
            "m_mask": {
                h.name: (
                    tf.cast(m_in[h.name], tf.bool)
                    if h.name in m_in
                    else tf.zeros([h.num_classes], tf.bool)
                )
                for h in heads
            },
            "filename": ex["image/filename"] if "image/filename" in ex else tf.constant(""),
        }

    slim = examples.map(_slim, num_parallel_calls=tf.data.AUTOTUNE)
    labels: dict[str, list[int]] = {h.name: [] for h in heads}
    masks: dict[str, list[np.ndarray]] = {h.name: [] for h in heads}
    filenames = []
    truth = slim.map(lambda ex: {k: v for k, v in ex.items() if k != "image"}).batch(256)
    for batch in truth.as_numpy_iterator():
        for h in heads:
            labels[h.name].extend(batch["labels"][h.name].tolist())
            masks[h.name].append(batch["m_mask"][h.name])
        filenames.extend(f.decode("utf-8", "replace") for f in batch["filename"])
    return EvalData(
        examples=slim.map(lambda ex: {"image": ex["image"], "bbox": ex["bbox"]}),
        labels={h.name: np.asarray(labels[h.name], np.int64) for h in heads},
        m_masks={
            h.name: (
                np.concatenate(masks[h.name])
                if masks[h.name]
                else np.zeros((0, h.num_classes), bool)
            )
            for h in heads
        },
        filenames=filenames,
    )


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


def head_metrics(
    probs: Mapping[str, np.ndarray],
    data: EvalData,
    heads: Sequence[Head],
    official: scoring.FashionAIScore,
    top_pairs: int = 10,
) -> dict[str, dict[str, Any]]:
    """Per-head accuracy, top-k, official AP/BasicPrecision, confusion matrix and pairs."""
    out = {}
    for h in heads:
        p, y = probs[h.name], data.labels[h.name]
        entry: dict[str, Any] = {
            "num_classes": h.num_classes,
            "num_labelled": int(np.sum(y >= 0)),
            "accuracy": scoring.masked_accuracy(p, y),
        }
        if h.num_classes > 10:
            entry["top3"] = scoring.topk_accuracy(p, y, 3)
            entry["top5"] = scoring.topk_accuracy(p, y, 5)
        task = official.per_task.get(h.name)
        entry["ap"] = task.ap if task else None
        entry["basic_precision"] = task.basic_precision if task else None
        cm = scoring.confusion_matrix(y, np.argmax(p, axis=1), h.num_classes)
        entry["confusion_matrix"] = cm.tolist()
        entry["most_confused"] = [
            pair._asdict() for pair in scoring.most_confused_pairs(cm, h.classes, top_pairs)
        ]
        out[h.name] = entry
    return out


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


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def _report_header(metrics: Mapping[str, Any]) -> list[str]:
    """The split, the views, each model with its weight and input view, the weight search."""
    lines = [
        "# Evaluation report",
        "",
        f"- split: `{metrics['split']}` ({metrics['num_examples']} examples)",
        f"- test-time augmentation: `{metrics['tta']}` ({metrics['views']} views per image)",
    ]
    for model, weight, views in zip(
        metrics["models"], metrics["weights"], metrics["preprocessing"], strict=True
    ):
        seen = ", ".join(
            f"{v['image_size']} px, box margin {v['bbox_margin']:g} (from {v['source']})"
            for v in views
        )
        lines.append(f"- model `{model}` weight {weight:.3f}; input {seen}")
    if "ensemble_search" in metrics:
        s = metrics["ensemble_search"]
        lines.append(
            f"- weights searched on `{s['split']}` for {s['objective']}: {s['value']:.4f} "
            f"(equal weights {s['equal_weights_value']:.4f}, {s['candidates']} candidates)"
        )
    return lines


def write_report(path: str, metrics: Mapping[str, Any], heads: Sequence[Head]) -> None:
    """The Markdown evaluation report."""
    lines = [*_report_header(metrics), "", "## Per head", ""]
    rows = []
    for h in heads:
        m = metrics["heads"][h.name]
        rows.append(
            [
                h.name,
                str(m["num_classes"]),
                str(m["num_labelled"]),
                _fmt(m["accuracy"]),
                _fmt(m.get("top3")) if "top3" in m else "",
                _fmt(m.get("top5")) if "top5" in m else "",
                _fmt(m["ap"]),
                _fmt(m["basic_precision"]),
            ]
        )
    headers = ["head", "classes", "labelled", "accuracy", "top-3", "top-5", "AP", "BasicPrec."]
    lines.append(reports.markdown_table(rows, headers))
    off = metrics["official"]
    lines += [
        "",
        f"**Mean accuracy over heads: {_fmt(metrics['mean_accuracy'])}**  ",
        f"**Official FashionAI mAP: {_fmt(off['map'])}, BasicPrecision: "
        f"{_fmt(off['basic_precision'])}** (AP per head by the official rule: every distinct "
        "max-probability threshold, predictions on an `m` class not counted, plain mean over "
        "heads; without `m` labels it is the same rule with no `m` rows)",
    ]
    for note in off["notes"]:
        lines.append(f"- {note}")
    lines += ["", "## Most confused pairs", ""]
    for h in heads:
        pairs = metrics["heads"][h.name]["most_confused"][:5]
        if not pairs:
            continue
        lines += [f"### {h.name}", ""]
        lines.append(
            reports.markdown_table(
                [
                    [p["true"], p["predicted"], str(p["count"]), f"{p['fraction']:.3f}"]
                    for p in pairs
                ],
                ["true", "predicted", "count", "fraction of true class"],
            )
        )
        lines.append("")
    lines += ["## Confusion matrices", ""]
    for h in heads:
        lines.append(f"![{h.name}](confusion/{h.name}.png)")
    if metrics.get("top_losses"):
        lines += ["", "## Largest losses", "", "![top losses](top_losses.png)", ""]
        lines.append(
            reports.markdown_table(
                [
                    [r["file"], r["head"], r["true"], r["predicted"], f"{r['loss']:.3f}"]
                    for r in metrics["top_losses"]
                ],
                ["file", "head", "true", "predicted", "loss"],
            )
        )
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


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
            f"{os.path.basename(w['file'])}\n{w['head']}: {w['true']}\n"
            f"-> {w['predicted']} ({w['probability']:.2f})"
            for w in worst
        ]
        reports.plot_top_losses(np.stack(images), titles, os.path.join(out, "top_losses.png"))


def evaluate(
    ensemble: Ensemble,
    data: EvalData,
    config: EvalConfig | None = None,
    inference: InferenceConfig | None = None,
    *,
    bbox_margin: float | None = None,
    search_data: EvalData | None = None,
) -> dict[str, Any]:
    """Evaluates one model or an ensemble on ``data`` and writes the report files.

    Args:
      ensemble: the model(s) and weights (``ensembles.load_ensemble``).
      config: the split name, weight search, report options and ``output_dir``.
      inference: test-time augmentation and batch size.
      bbox_margin: overrides every model's own garment-box margin.
      search_data: a split to search the ensemble weights on (``config.search_weights``); the
        weights found replace ``ensemble.weights`` and are saved.

    Returns:
      The ``metrics.json`` content.
    """
    config, inference = config or EvalConfig(), inference or InferenceConfig()
    heads = [h for h in ensemble.heads if h.name in data.labels]
    if not heads:
        raise ValueError(
            f"the models' heads {[h.name for h in ensemble.heads]} are not in the evaluation "
            f"data (it has {sorted(data.labels)})"
        )
    options = {
        "tta": inference.tta,
        "batch_size": inference.batch_size,
        "bbox_margin": bbox_margin,
        "resize_ratio": inference.tta_resize,
    }
    os.makedirs(config.output_dir, exist_ok=True)
    metrics: dict[str, Any] = {}
    if search_data is not None and len(ensemble.predictors) > 1 and config.search_weights:
        metrics["ensemble_search"] = _search(ensemble, search_data, heads, config, options)
    probs = ensemble.predict_examples(data.examples, **options)
    if any(len(p) != data.num_examples for p in probs.values()):
        raise RuntimeError("the models returned a different number of rows than the data has")
    views = [override_margin(p.inputs, bbox_margin) for p in ensemble.predictors]
    official = official_score(probs, data, heads)
    metrics.update(
        {
            "models": [p.name for p in ensemble.predictors],
            "weights": list(ensemble.weights),
            "preprocessing": [[v.to_dict() for v in member] for member in views],
            "tta": inference.tta,
            "views": NUM_VIEWS[inference.tta],
            "split": config.split,
            "num_examples": data.num_examples,
            "heads": head_metrics(probs, data, heads, official),
            "mean_accuracy": mean_accuracy(probs, data, heads),
            "official": official.to_dict(),
            "top_losses": top_loss_rows(probs, data, heads, config.top_losses),
        }
    )
    _plot(metrics, data, heads, views[0][0], config.output_dir)
    with open(os.path.join(config.output_dir, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=2)
    write_report(os.path.join(config.output_dir, "report.md"), metrics, heads)
    return metrics


def format_summary(metrics: Mapping[str, Any]) -> str:
    """A short plain-text table for the console."""
    lines = [f"{'head':<28} {'labelled':>8} {'accuracy':>9} {'AP':>8}"]
    for name, m in metrics["heads"].items():
        lines.append(
            f"{name:<28} {m['num_labelled']:>8} {_fmt(m['accuracy']):>9} {_fmt(m['ap']):>8}"
        )
    off = metrics["official"]
    lines.append(f"mean accuracy {_fmt(metrics['mean_accuracy'])}")
    lines.append(f"official mAP {_fmt(off['map'])}  BasicPrecision {_fmt(off['basic_precision'])}")
    return "\n".join(lines)
