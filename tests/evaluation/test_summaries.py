"""What evaluate writes in words, on hand-made probabilities: the baselines, the per-class truth,
the ranking metric's name (official only on FashionAI data), report.md and the console."""

import json
import logging
from types import SimpleNamespace

import numpy as np
import pytest

from fashion_keras.evaluation import evaluate as E
from fashion_keras.evaluation import summaries
from fashion_keras.heads import Head

NECKLINE = Head("neckline", ("v_neck", "halter"))
SLEEVE = Head("sleeve", ("short", "long", "sleeveless"))
HEADS = [NECKLINE, SLEEVE]
TRAIN_COUNTS = {"neckline": np.array([268, 58]), "sleeve": np.array([100, 120, 30])}


def collapse_case(dataset="custom_csv"):
    """The issue's run: neckline answers v_neck for all 47 v_neck and all 21 halter rows;
    sleeve gets 50 of its 60 labelled rows right (8 rows carry no sleeve label)."""
    n = 68
    neck_labels = np.array([0] * 47 + [1] * 21)
    sleeve_labels = np.array([0] * 20 + [1] * 30 + [2] * 10 + [-1] * 8)
    sleeve_pred = sleeve_labels.copy()
    sleeve_pred[:10] = 1  # 10 short rows called long
    sleeve_pred[sleeve_pred < 0] = 0
    probs = {
        "neckline": np.tile([0.7, 0.3], (n, 1)),
        "sleeve": np.eye(3)[sleeve_pred] * 0.7 + 0.1,
    }
    data = E.EvalData(
        examples=None,
        labels={"neckline": neck_labels, "sleeve": sleeve_labels},
        m_masks={h.name: np.zeros((n, h.num_classes), bool) for h in HEADS},
        filenames=[f"dresses/{i:03d}.jpg" for i in range(n)],
        dataset=dataset,
    )
    return probs, data


def metrics_for(probs, data, train_counts=TRAIN_COUNTS):
    run = {
        "models": ["runs/shop/model.keras"],
        "weights": [1.0],
        "preprocessing": [[{"image_size": 224, "bbox_margin": 0.1, "source": "model"}]],
        "tta": "none",
        "views": 1,
        "split": "val",
        "dataset": data.dataset,
    }
    return {**run, **E.score_probs(probs, data, HEADS, train_counts, top_losses=4)}


def test_ranking_metric_is_official_only_on_fashionai_data():
    official = ("official", "Official FashionAI mAP / BasicPrecision")
    assert E.ranking_metric("fashionai_attributes") == official
    assert E.ranking_metric("fashionai_attributes/m_half") == official
    for other in ("custom_csv", "deepfashion_attributes", ""):
        assert E.ranking_metric(other) == ("ranking", "mean AP")


def test_display_path_is_relative_to_the_data_folder():
    assert E.display_path("img/Sheer_Pleated-Front_Blouse/img_00000001.jpg") == (
        "img/Sheer_Pleated-Front_Blouse/\nimg_00000001.jpg"  # broken after a '/'
    )
    assert E.display_path("./dresses//a.jpg") == "dresses/a.jpg"
    assert E.display_path("/home/me/data/shop/dresses/a.jpg") == ".../shop/dresses/a.jpg"
    assert E.display_path("") == "(no file name)"


def test_metrics_carry_baselines_and_per_class_truth():
    probs, data = collapse_case()
    metrics = metrics_for(probs, data)
    json.dumps(metrics)  # what metrics.json holds
    neck = metrics["heads"]["neckline"]
    assert neck["num_labelled"] == 68
    assert neck["accuracy"] == pytest.approx(47 / 68)
    assert neck["majority_baseline"] == pytest.approx(47 / 68)
    assert (neck["majority_class"], neck["beats_baseline"]) == ("v_neck", False)
    assert neck["balanced_accuracy"] == pytest.approx(0.5)
    assert neck["baseline_from"] == "the training split"
    assert neck["baseline_counts"] == {"v_neck": 268, "halter": 58}
    assert neck["per_class"][1] == {
        "name": "halter",
        "support": 21,
        "predicted": 0,
        "recall": 0.0,
        "precision": None,
    }
    sleeve = metrics["heads"]["sleeve"]
    # majority of the training split is long (120): 30 of the 60 labelled rows
    assert sleeve["majority_class"] == "long" and sleeve["majority_baseline"] == 0.5
    assert sleeve["accuracy"] == pytest.approx(50 / 60) and sleeve["beats_baseline"] is True
    assert sleeve["balanced_accuracy"] == pytest.approx((10 / 20 + 1 + 1) / 3)
    assert metrics["heads_not_beating_baseline"] == ["neckline"]
    assert metrics["mean_majority_baseline"] == pytest.approx((47 / 68 + 0.5) / 2)
    assert metrics["baseline_note"] is None
    # not FashionAI data: the same AP under its plain name and a neutral key
    assert "official" not in metrics and metrics["ranking"]["name"] == "mean AP"
    assert metrics["heads"]["neckline"]["ap"] == pytest.approx(47 / 68)  # one threshold


def test_report_and_console_name_the_head_that_does_not_beat_its_baseline(tmp_path):
    probs, data = collapse_case()
    metrics = metrics_for(probs, data)
    path = tmp_path / "report.md"
    summaries.write_report(str(path), metrics, HEADS)
    report = path.read_text()
    assert "- dataset: `custom_csv`, split: `val` (68 examples)" in report
    assert "> **Warning: 1 head does not beat the majority-class baseline**" in report
    assert (
        "> - **neckline**: accuracy 0.6912 does not beat its majority baseline 0.6912, the "
        "accuracy of always predicting `v_neck` (the most frequent class in the training "
        "split); balanced accuracy 0.5000; never right on `halter` (0 of 21)"
    ) in report
    assert "| neckline | 2 | 68 | 0.6912 | 0.6912 | `v_neck` | **NO** | 0.5000 | 0.6912 |" in (
        report
    )
    assert "| sleeve | 3 | 60 | 0.8333 | 0.5000 | `long` | yes | 0.8333 |" in report
    assert "| class | train rows | labelled | predicted | recall | precision |" in report
    assert "| halter | 58 | 21 | 0 | 0.0000 | n/a |" in report
    assert "**Mean AP over heads: " in report and "FashionAI mAP" not in report
    assert "BasicPrec" not in report  # it equals the accuracy without m labels
    console = summaries.format_summary(metrics)
    flat = " ".join(console.split())  # the warning is wrapped at 100 columns
    assert "WARNING neckline: accuracy 0.6912 does not beat its majority baseline 0.6912" in flat
    assert "always predicting 'v_neck'" in flat and "never right on 'halter' (0 of 21)" in flat
    assert max(len(line) for line in console.splitlines()) <= 100
    assert "recall/precision per class: v_neck 1.00/0.69, halter 0.00/n/a" in console
    assert "mean AP " in console and "official" not in console
    lines = console.splitlines()
    assert lines[0].split() == ["head", "labelled", "accuracy", "baseline", "balanced", "AP"]
    assert lines[1].split() == ["neckline", "68", "0.6912", "0.6912", "0.5000", "0.6912"]


def test_without_training_counts_the_baseline_comes_from_the_labels_and_says_so(tmp_path):
    probs, data = collapse_case()
    metrics = metrics_for(probs, data, train_counts=None)
    sleeve = metrics["heads"]["sleeve"]
    assert sleeve["baseline_from"] == "the labels evaluated"
    assert sleeve["baseline_counts"] == {"short": 20, "long": 30, "sleeveless": 10}
    assert metrics["baseline_note"].startswith("no class counts of the training split")
    summaries.write_report(str(tmp_path / "r.md"), metrics, HEADS)
    report = (tmp_path / "r.md").read_text()
    assert "**Note:** no class counts of the training split were available" in report
    assert "train rows" not in report  # the counts are the labelled column itself
    assert "note: no class counts" in summaries.format_summary(metrics)
    # a head the training split does not label falls back alone
    partial = metrics_for(probs, data, {**TRAIN_COUNTS, "sleeve": np.zeros(3, int)})
    assert partial["heads"]["neckline"]["baseline_from"] == "the training split"
    assert partial["heads"]["sleeve"]["baseline_from"] == "the labels evaluated"
    assert "the training split labels no row of them" in partial["baseline_note"]
    assert "baseline of sleeve" in partial["baseline_note"]


def test_fashionai_data_keeps_the_official_name_and_key(tmp_path):
    probs, data = collapse_case(dataset="fashionai_attributes")
    metrics = metrics_for(probs, data)
    assert "ranking" not in metrics
    assert metrics["official"]["name"] == "Official FashionAI mAP / BasicPrecision"
    summaries.write_report(str(tmp_path / "r.md"), metrics, HEADS)
    report = (tmp_path / "r.md").read_text()
    assert "**Official FashionAI mAP: " in report and "| AP | BasicPrec. |" in report
    assert "official FashionAI mAP " in summaries.format_summary(metrics)


def test_the_command_falls_back_when_the_dataset_stores_no_build_report(caplog):
    """A dataset prepared without a build report: the command warns and evaluate falls back."""
    from fashion_keras import evaluate as command

    old = SimpleNamespace(info=SimpleNamespace(metadata={}, full_name="custom_csv/old/1.0.0"))
    with caplog.at_level(logging.WARNING, logger="fashion_keras"):
        assert command._train_counts([old], "train", HEADS) is None
    assert "majority baselines from the evaluated labels instead" in caplog.text
    assert "stores no build report for split 'train'" in caplog.text
    report = {"splits": {"train": {"heads": {"neckline": {"classes": {"halter": 3}}}}}}
    new = SimpleNamespace(info=SimpleNamespace(metadata={"report": report}, full_name="x"))
    counts = command._train_counts([new], "train", HEADS)
    assert counts["neckline"].tolist() == [0, 3] and counts["sleeve"].tolist() == [0, 0, 0]
