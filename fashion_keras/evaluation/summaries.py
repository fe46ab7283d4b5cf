"""What ``evaluate`` says in words: ``report.md`` and the console summary, both written from
the ``metrics.json`` content (:func:`fashion_keras.evaluation.evaluate.evaluate`).

- :func:`write_report`: the Markdown report (per head, the heads that do not beat their
  majority-class baseline, per class, most confused pairs, the figures).
- :func:`format_summary`: the same essentials as plain text for the console.
- :func:`baseline_warnings`: one sentence per head whose accuracy does not beat its baseline.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from fashion_keras.evaluation import reports
from fashion_keras.heads import Head

#: What the ranking metric is, in the report (the FashionAI wording only under ``official``).
_OFFICIAL_RULE = (
    "AP per head by the official rule: every distinct max-probability threshold, predictions "
    "on an `m` class not counted, plain mean over heads; without `m` labels it is the same "
    "rule with no `m` rows"
)
_PLAIN_RULE = (
    "per head, AP = the mean precision over every distinct max-probability threshold: the "
    "ranking rule of the FashionAI challenge, here on data that is not FashionAI's, so not its "
    "official score. It rewards confident right answers and stays high while a rare class is "
    "never predicted: read it with the baselines and the recall per class"
)
_BASELINE_RULE = (
    "Majority baseline: the accuracy of always predicting the head's most frequent class "
    "(counted on {source}); a head must beat it to have learnt anything from the images. "
    "Balanced accuracy: the mean recall over the classes with labelled rows (always predicting "
    "one class scores 1 / their number)."
)


def fmt(x: float | None, digits: int = 4) -> str:
    """``x`` with ``digits`` decimals; None as ``n/a``."""
    return "n/a" if x is None else f"{x:.{digits}f}"


def ranking_entry(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The ranking-metric entry of a ``metrics.json``: ``official`` (FashionAI data) or
    ``ranking`` (elsewhere); both carry a ``name``."""
    return metrics["official"] if "official" in metrics else metrics["ranking"]


def baseline_warnings(metrics: Mapping[str, Any], quote: str = "`") -> list[str]:
    """One sentence per head whose accuracy does not beat its majority baseline (empty when
    every labelled head does), naming the classes it never gets right."""
    lines = []
    for name, m in metrics["heads"].items():
        if m["beats_baseline"] is not False:
            continue
        never = [c for c in m["per_class"] if c["recall"] == 0.0]
        text = (
            f"{name}: accuracy {fmt(m['accuracy'])} does not beat its majority baseline "
            f"{fmt(m['majority_baseline'])}, the accuracy of always predicting "
            f"{quote}{m['majority_class']}{quote} (the most frequent class in "
            f"{m['baseline_from']}); balanced accuracy {fmt(m['balanced_accuracy'])}"
        )
        if never:
            named = ", ".join(f"{quote}{c['name']}{quote} (0 of {c['support']})" for c in never[:5])
            more = f" and {len(never) - 5} more" if len(never) > 5 else ""
            text += f"; never right on {named}{more}"
        lines.append(text)
    return lines


def _report_header(metrics: Mapping[str, Any]) -> list[str]:
    """The dataset and split, the views, each model with its weight and input view, the weight
    search."""
    dataset = f"`{metrics['dataset']}`" if metrics.get("dataset") else "not named"
    lines = [
        "# Evaluation report",
        "",
        f"- dataset: {dataset}, split: `{metrics['split']}` ({metrics['num_examples']} examples)",
        f"- test-time augmentation: `{metrics['tta']}` ({metrics['views']} "
        f"view{'s' if metrics['views'] > 1 else ''} per image)",
    ]
    for model, weight, views in zip(
        metrics["models"], metrics["weights"], metrics["preprocessing"], strict=True
    ):
        seen = ", ".join(
            f"{v['image_size']} px, box margin {v['bbox_margin']:g} (from {v['source']})"
            if "region" not in v
            else f"{v['region']} region crop"
            for v in views
        )
        lines.append(f"- model `{model}` weight {weight:.3f}; input {seen}")
        regions = metrics.get("region_boxes", {}).get(model)
        if regions:
            fallbacks = ", ".join(
                f"{r} {n}" for r, n in regions["fell_back_to_garment_box"].items()
            )
            lines.append(
                f"  - region boxes: of {regions['examples']} examples, fell back to the "
                f"garment box: {fallbacks}"
            )
    if "ensemble_search" in metrics:
        s = metrics["ensemble_search"]
        lines.append(
            f"- weights searched on `{s['split']}` for {s['objective']}: {s['value']:.4f} "
            f"(equal weights {s['equal_weights_value']:.4f}, {s['candidates']} candidates)"
        )
    return lines


def _head_table(metrics: Mapping[str, Any], heads: Sequence[Head]) -> str:
    official = "official" in metrics
    topk = any("top3" in metrics["heads"][h.name] for h in heads)
    headers = ["head", "classes", "labelled", "accuracy", "majority baseline"]
    headers += ["majority class", "beats baseline", "balanced accuracy"]
    headers += ["top-3", "top-5"] if topk else []
    headers += ["AP", "BasicPrec."] if official else ["AP"]
    rows = []
    for h in heads:
        m = metrics["heads"][h.name]
        beats = {True: "yes", False: "**NO**", None: "n/a"}[m["beats_baseline"]]
        row = [h.name, m["num_classes"], m["num_labelled"], m["accuracy"]]
        row += [m["majority_baseline"], f"`{m['majority_class']}`", beats]
        row += [m["balanced_accuracy"]]
        row += [m.get("top3", ""), m.get("top5", "")] if topk else []
        row += [m["ap"], m["basic_precision"]] if official else [m["ap"]]
        rows.append(row)
    return reports.markdown_table(rows, headers)


def _baseline_text(metrics: Mapping[str, Any]) -> list[str]:
    """The flagged heads in words, what the baseline is and where its counts came from."""
    lines = []
    warnings = baseline_warnings(metrics)
    if warnings:
        n = len(warnings)
        lines += [
            "",
            f"> **Warning: {n} head{'s do' if n > 1 else ' does'} not beat the majority-class "
            "baseline**: always predicting the most frequent class would score as well.",
            ">",
        ]
        lines += [f"> - **{w.split(':', 1)[0]}**:{w.split(':', 1)[1]}" for w in warnings]
    sources = sorted({m["baseline_from"] for m in metrics["heads"].values()})
    lines += ["", _BASELINE_RULE.format(source=" and ".join(sources) or "the training split")]
    if metrics.get("baseline_note"):
        lines.append(f"**Note:** {metrics['baseline_note']}")
    return lines


def _ranking_text(metrics: Mapping[str, Any]) -> list[str]:
    rank = ranking_entry(metrics)
    if "official" in metrics:
        lines = [
            f"**Official FashionAI mAP: {fmt(rank['map'])}, BasicPrecision: "
            f"{fmt(rank['basic_precision'])}** ({_OFFICIAL_RULE})"
        ]
    else:
        lines = [f"**Mean AP over heads: {fmt(rank['map'])}** ({_PLAIN_RULE})"]
    return lines + [f"- {note}" for note in rank["notes"]]


def _per_class_tables(metrics: Mapping[str, Any], heads: Sequence[Head]) -> list[str]:
    lines = ["## Per class", ""]
    for h in heads:
        m = metrics["heads"][h.name]
        train = m["baseline_from"] == "the training split"
        headers = ["class", *(["train rows"] if train else [])]
        headers += ["labelled", "predicted", "recall", "precision"]
        rows = [
            [c["name"], *([m["baseline_counts"][c["name"]]] if train else [])]
            + [c["support"], c["predicted"], c["recall"], c["precision"]]
            for c in m["per_class"]
        ]
        lines += [f"### {h.name}", "", reports.markdown_table(rows, headers), ""]
    return lines


def _error_analysis(metrics: Mapping[str, Any], heads: Sequence[Head]) -> list[str]:
    """Most confused pairs, the confusion-matrix images, the largest losses."""
    lines = ["## Most confused pairs", ""]
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
    return lines


def write_report(path: str, metrics: Mapping[str, Any], heads: Sequence[Head]) -> None:
    """The Markdown evaluation report."""
    lines = [*_report_header(metrics), "", "## Per head", "", _head_table(metrics, heads)]
    lines += _baseline_text(metrics)
    lines += [
        "",
        f"**Mean accuracy over heads: {fmt(metrics['mean_accuracy'])}** (mean majority "
        f"baseline {fmt(metrics['mean_majority_baseline'])})  ",
        *_ranking_text(metrics),
        "",
    ]
    lines += _per_class_tables(metrics, heads)
    lines += _error_analysis(metrics, heads)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def _class_line(m: Mapping[str, Any]) -> str:
    """``  recall/precision: a 1.00/0.71, b 0.00/n/a`` wrapped at 100 columns."""
    cells = [
        f"{c['name']} {fmt(c['recall'], 2)}/{fmt(c['precision'], 2)}"
        for c in m["per_class"]
        if c["support"] or c["predicted"]
    ]
    return textwrap.fill(
        ", ".join(cells),
        100,
        initial_indent="  recall/precision per class: ",
        subsequent_indent="    ",
        break_on_hyphens=False,
    )


def format_summary(metrics: Mapping[str, Any]) -> str:
    """A short plain-text summary for the console: per head the labelled rows, accuracy,
    majority baseline, balanced accuracy and AP, then recall/precision per class; the heads
    that do not beat their baseline, in words; the means."""
    header = ["head", "labelled", "accuracy", "baseline", "balanced", "AP"]
    lines = [f"{header[0]:<28} " + " ".join(f"{h:>9}" for h in header[1:])]
    for name, m in metrics["heads"].items():
        values = [m["accuracy"], m["majority_baseline"], m["balanced_accuracy"], m["ap"]]
        cells = [f"{m['num_labelled']:>9}", *(f"{fmt(v):>9}" for v in values)]
        lines.append(f"{name:<28} " + " ".join(cells))
        lines.append(_class_line(m))
    lines.append(
        f"mean accuracy {fmt(metrics['mean_accuracy'])} "
        f"(mean majority baseline {fmt(metrics['mean_majority_baseline'])})"
    )
    rank = ranking_entry(metrics)
    if "official" in metrics:
        lines.append(
            f"official FashionAI mAP {fmt(rank['map'])}  "
            f"BasicPrecision {fmt(rank['basic_precision'])}"
        )
    else:
        lines.append(f"mean AP {fmt(rank['map'])} (ranking metric; not FashionAI data)")
    for warning in baseline_warnings(metrics, quote="'"):
        lines.append(textwrap.fill(f"WARNING {warning}", 100, subsequent_indent="  "))
    if metrics.get("baseline_note"):
        lines.append(textwrap.fill(f"note: {metrics['baseline_note']}", 100))
    return "\n".join(lines)
