"""Keypoint report tables and metrics dict: every number is the score's."""

import json
import math
import re

import numpy as np
import pytest

from fashion_keras.evaluation import keypoint_scoring as KS
from fashion_keras.evaluation.keypoint_report import keypoint_metrics_json, keypoint_tables
from fashion_keras.heads import FASHIONAI_KEYPOINTS

HEAD = FASHIONAI_KEYPOINTS
K = HEAD.num_keypoints


def _scores():
    """A model's score and the mean-position baseline's on the same images: 7 scored images
    of 3 categories, 2 skipped (one normaliser absent, one zero)."""
    rng = np.random.default_rng(7)
    cats = [
        "blouse",
        "skirt",
        "trousers",
        "blouse",
        "skirt",
        "trousers",
        "blouse",
        "skirt",
        "skirt",
    ]
    n = len(cats)
    true = np.full((n, K, 2), -1.0)
    vis = np.full((n, K), -1)
    for i, c in enumerate(cats):
        d = np.asarray(HEAD.defined_mask(c))
        true[i, d] = rng.uniform(0, 400, (d.sum(), 2))
        vis[i, d] = rng.choice([1, 1, 1, 0], d.sum())
    a, b = HEAD.normaliser_indices("blouse")
    vis[6, a] = -1  # normaliser absent
    true[6, a] = -1
    a, b = HEAD.normaliser_indices("skirt")
    true[7, a] = true[7, b]  # normaliser zero
    ids = [f"img{i}" for i in range(n)]
    pred = true + rng.normal(0, 6, true.shape)
    score = KS.normalized_error(pred, true, vis, cats, HEAD, ids)
    baseline_pred = KS.mean_position_baseline(true, vis >= 0, cats, HEAD).predict(cats)
    baseline = KS.normalized_error(baseline_pred, true, vis, cats, HEAD, ids)
    return score, baseline


def _rows(markdown, section):
    """{first cell: other cells} of the table under the heading ``section``."""
    part = markdown.split(section, 1)[1]
    table = []
    for line in part.splitlines()[1:]:
        if line.startswith("|"):
            table.append([c.strip() for c in line.strip("|").split("|")])
        elif table:
            break
    header, _align, *body = table
    return header, {r[0]: r[1:] for r in body}


def _pct(x):
    return "n/a" if math.isnan(x) else f"{x:.2f}"


def test_table_numbers_equal_the_score():
    score, _ = _scores()
    md = keypoint_tables(score)
    header, overall = _rows(md, "## Keypoint normalised error")
    assert header == ["", "NE %", "points", "images", "skipped images"]
    assert overall["overall"] == [
        f"{score.percent:.2f}",
        str(score.points),
        str(score.images),
        str(score.num_skipped),
    ]
    header, per_cat = _rows(md, "### Per category")
    assert header == ["category", "NE %", "points", "images", "skipped images"]
    assert list(per_cat) == ["blouse", "trousers", "skirt"]  # head order, categories present
    for name, part in score.per_category.items():
        assert per_cat[name] == [
            _pct(part.percent),
            str(part.points),
            str(part.images),
            str(part.skipped_images),
        ]
    header, per_kp = _rows(md, "### Per keypoint")
    assert header == ["keypoint", "NE %", "points"]
    assert list(per_kp) == list(HEAD.keypoints)
    for name, part in score.per_keypoint.items():
        assert per_kp[name] == [_pct(part.percent), str(part.points)]
    assert per_kp["crotch"][0] != "n/a" and per_kp["waistline_left"] == ["n/a", "0"]
    assert "baseline" not in md


def test_baseline_column_holds_the_baseline_numbers():
    score, baseline = _scores()
    assert score.percent < baseline.percent  # the model beats the mean position
    md = keypoint_tables(score, baseline)
    header, overall = _rows(md, "## Keypoint normalised error")
    assert header[:3] == ["", "NE %", "baseline NE %"]
    assert overall["overall"][:2] == [f"{score.percent:.2f}", f"{baseline.percent:.2f}"]
    _, per_cat = _rows(md, "### Per category")
    for name, part in score.per_category.items():
        assert per_cat[name][:2] == [_pct(part.percent), _pct(baseline.per_category[name].percent)]
    header, per_kp = _rows(md, "### Per keypoint")
    assert header == ["keypoint", "NE %", "baseline NE %", "points"]
    for name in HEAD.keypoints:
        assert per_kp[name][1] == _pct(baseline.per_keypoint[name].percent)


def test_skipped_images_are_counted_with_their_reasons():
    score, _ = _scores()
    md = keypoint_tables(score)
    assert score.num_skipped == 2
    assert "Skipped images: 2 (left out of every NE above)" in md
    assert f"- {KS.SKIP_NORMALISER_ABSENT}: 1 (a normalising keypoint is not annotated)" in md
    assert f"- {KS.SKIP_NORMALISER_ZERO}: 1 (both normalising keypoints at the same" in md
    assert re.search(r"- images: img6 \(blouse, normaliser_absent\), img7 \(skirt, ", md)


def test_many_skipped_images_are_listed_up_to_a_limit():
    skipped = tuple(KS.SkippedImage(f"i{j}", "skirt", KS.SKIP_NORMALISER_ZERO) for j in range(25))
    part = KS.NormalizedErrorPart(math.nan, 0)
    score = KS.KeypointScore(
        math.nan, 0, 0, {"skirt": KS.NormalizedErrorPart(math.nan, 0, 0, 25)}, {"a": part}, skipped
    )
    md = keypoint_tables(score)
    assert "Skipped images: 25" in md and "- normaliser_zero: 25" in md
    assert "i19 (skirt" in md and "i20 (" not in md and "... 5 more" in md
    _, overall = _rows(md, "## Keypoint normalised error")
    assert overall["overall"] == ["n/a", "0", "0", "25"]
    _, per_cat = _rows(md, "### Per category")
    assert per_cat["skirt"] == ["n/a", "0", "0", "25"]


def test_metrics_json_carries_the_same_numbers():
    score, baseline = _scores()
    d = keypoint_metrics_json(score, baseline)
    d = json.loads(json.dumps(d, allow_nan=False))  # JSON-ready: no NaN
    assert d["ne_percent"] == pytest.approx(score.percent)
    assert (d["points"], d["images"], d["skipped_images"]) == (score.points, score.images, 2)
    assert d["skipped_by_reason"] == {"normaliser_absent": 1, "normaliser_zero": 1}
    assert [s["image_id"] for s in d["skipped"]] == ["img6", "img7"]
    assert d["baseline"]["ne_percent"] == pytest.approx(baseline.percent)
    for name, part in score.per_category.items():
        entry = d["per_category"][name]
        assert entry["percent"] == pytest.approx(part.percent)
        assert (entry["points"], entry["images"], entry["skipped_images"]) == (
            part.points,
            part.images,
            part.skipped_images,
        )
        assert entry["baseline_percent"] == pytest.approx(baseline.per_category[name].percent)
    assert d["per_keypoint"]["waistline_left"] == {
        "percent": None,
        "points": 0,
        "baseline_percent": None,
    }
    assert d["per_keypoint"]["crotch"]["percent"] == pytest.approx(
        score.per_keypoint["crotch"].percent
    )
    plain = keypoint_metrics_json(score)
    assert plain["baseline"] is None and "baseline_percent" not in plain["per_category"]["skirt"]
