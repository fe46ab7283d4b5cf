"""Keypoint scores: the FashionAI NE against hand arithmetic and a brute-force loop, the
DeepFashion landmark NE and % detected, and the mean-position baseline."""

import json
import math

import numpy as np
import pytest

from fashion_keras.evaluation import keypoint_scoring as KS
from fashion_keras.evaluation import landmark_scoring as LS
from fashion_keras.heads import DEEPFASHION_LANDMARKS, FASHIONAI_KEYPOINTS

HEAD = FASHIONAI_KEYPOINTS
K = HEAD.num_keypoints
NORMALISER = {  # formats.md section 3, written out independently of the head
    "blouse": ("armpit_left", "armpit_right"),
    "outwear": ("armpit_left", "armpit_right"),
    "dress": ("armpit_left", "armpit_right"),
    "trousers": ("waistband_left", "waistband_right"),
    "skirt": ("waistband_left", "waistband_right"),
}


class Images:
    """Builds FashionAI ground truth / predictions image by image, by keypoint name; all
    keypoints start absent (-1_-1_-1) with NaN predictions."""

    def __init__(self) -> None:
        self.true, self.pred, self.vis, self.cats, self.ids = [], [], [], [], []

    def add(self, image_id: str, category: str, points: dict) -> None:
        t, p, v = np.full((K, 2), -1.0), np.full((K, 2), np.nan), np.full(K, -1)
        for name, (true_xy, vis, pred_xy) in points.items():
            j = HEAD.index(name)
            t[j], v[j], p[j] = true_xy, vis, pred_xy
        self.true.append(t), self.pred.append(p), self.vis.append(v)
        self.cats.append(category), self.ids.append(image_id)

    def score(self) -> KS.KeypointScore:
        return KS.normalized_error(
            np.stack(self.pred), np.stack(self.true), np.stack(self.vis), self.cats, HEAD, self.ids
        )


def _hand_images() -> Images:
    im = Images()
    # skirt: s = |(100,100)-(200,100)| = 100; d: 5 (3-4-5), 0, 10; hemline_right occluded (v=0)
    im.add(
        "skirt1",
        "skirt",
        {
            "waistband_left": ((100, 100), 1, (103, 104)),
            "waistband_right": ((200, 100), 1, (200, 100)),
            "hemline_left": ((90, 300), 1, (90, 290)),
            "hemline_right": ((210, 300), 0, (0, 0)),
        },
    )
    # blouse: s = |(50,50)-(250,50)| = 200; neckline_left d = 20 -> 0.1; armpits exact -> 0, 0;
    # its other 10 keypoints absent
    im.add(
        "blouse1",
        "blouse",
        {
            "armpit_left": ((50, 50), 1, (50, 50)),
            "armpit_right": ((250, 50), 1, (250, 50)),
            "neckline_left": ((100, 0), 1, (100, 20)),
        },
    )
    # outwear: an occluded armpit still normalises: s = |(0,0)-(30,40)| = 50;
    # armpit_right exact -> 0; shoulder_left d = 5 -> 0.1; armpit_left (v=0) not counted
    im.add(
        "outwear1",
        "outwear",
        {
            "armpit_left": ((0, 0), 0, (9, 9)),
            "armpit_right": ((30, 40), 1, (30, 40)),
            "shoulder_left": ((10, 10), 1, (13, 14)),
        },
    )
    # trousers: waistband_right absent -> skipped, its bad crotch prediction never counted
    im.add(
        "trousers1",
        "trousers",
        {
            "waistband_left": ((10, 10), 1, (10, 10)),
            "crotch": ((50, 90), 1, (500, 500)),
        },
    )
    # dress: both armpits at (80, 80) -> s = 0 -> skipped
    im.add(
        "dress1",
        "dress",
        {
            "armpit_left": ((80, 80), 1, (0, 0)),
            "armpit_right": ((80, 80), 1, (0, 0)),
            "hemline_left": ((60, 400), 1, (0, 0)),
        },
    )
    return im


def test_normalized_error_hand_computed():
    score = _hand_images().score()
    # counted d/s: skirt 0.05, 0, 0.1; blouse 0, 0, 0.1; outwear 0, 0.1 -> 0.35 over 8 points
    assert score.percent == pytest.approx(0.35 / 8 * 100)  # 4.375
    assert score.points == 8 and score.images == 3
    assert score.per_category["skirt"] == KS.NormalizedErrorPart(pytest.approx(5.0), 3, 1, 0)
    assert score.per_category["blouse"].percent == pytest.approx(0.1 / 3 * 100)
    assert score.per_category["outwear"] == KS.NormalizedErrorPart(pytest.approx(5.0), 2, 1, 0)
    trousers, dress = score.per_category["trousers"], score.per_category["dress"]
    assert (trousers.points, trousers.images, trousers.skipped_images) == (0, 0, 1)
    assert math.isnan(trousers.percent) and dress.skipped_images == 1
    assert list(score.per_category) == ["blouse", "outwear", "trousers", "skirt", "dress"]
    assert score.skipped == (
        KS.SkippedImage("trousers1", "trousers", KS.SKIP_NORMALISER_ABSENT),
        KS.SkippedImage("dress1", "dress", KS.SKIP_NORMALISER_ZERO),
    )
    kp = score.per_keypoint
    assert list(kp) == list(HEAD.keypoints)
    assert kp["waistband_left"] == KS.NormalizedErrorPart(pytest.approx(5.0), 1)
    assert kp["neckline_left"].percent == pytest.approx(10.0)
    assert kp["shoulder_left"].percent == pytest.approx(10.0)
    assert kp["armpit_right"] == KS.NormalizedErrorPart(0.0, 2)  # blouse + outwear, both exact
    assert kp["armpit_left"].points == 1  # the occluded outwear armpit does not count
    assert kp["hemline_right"].points == 0 and math.isnan(kp["hemline_right"].percent)
    assert kp["crotch"].points == 0  # only in the skipped trousers image
    assert sum(p.points for p in kp.values()) == score.points


def test_report_forms_show_skipped_images_and_baseline():
    score = _hand_images().score()
    as_json = json.dumps(score.to_dict(), allow_nan=False)
    back = json.loads(as_json)
    assert back["skipped_images"] == 2 and back["per_category"]["trousers"]["percent"] is None
    assert back["skipped"][0] == {
        "image_id": "trousers1",
        "category": "trousers",
        "reason": "normaliser_absent",
    }
    text = score.format(baseline=score)
    assert "skipped (normaliser missing or zero): 2" in text
    assert "trousers1 (trousers: normaliser_absent)" in text
    assert "baseline" in text and "4.38" in text


def _brute_force(pred, true, vis, cats, ids):
    """The NE by plain loops over images and keypoints."""
    total = {"all": [0.0, 0]}
    skipped = []
    for i, c in enumerate(cats):
        a, b = (HEAD.keypoints.index(n) for n in NORMALISER[c])
        if vis[i][a] == -1 or vis[i][b] == -1:
            skipped.append((ids[i], c, "normaliser_absent"))
            continue
        s = math.hypot(true[i][a][0] - true[i][b][0], true[i][a][1] - true[i][b][1])
        if s == 0:
            skipped.append((ids[i], c, "normaliser_zero"))
            continue
        for j in range(K):
            if vis[i][j] != 1:
                continue
            d = math.hypot(pred[i][j][0] - true[i][j][0], pred[i][j][1] - true[i][j][1])
            for key in ("all", c, HEAD.keypoints[j]):
                total.setdefault(key, [0.0, 0])
                total[key][0] += d / s
                total[key][1] += 1
    return total, skipped


def _random_case(rng):
    n = int(rng.integers(1, 12))
    cats = [str(c) for c in rng.choice(list(NORMALISER), size=n)]
    true = np.full((n, K, 2), -1.0)
    pred = rng.uniform(0, 512, size=(n, K, 2))
    vis = np.full((n, K), -1)
    for i, c in enumerate(cats):
        defined = np.asarray(HEAD.defined_mask(c))
        vis[i, defined] = rng.choice([-1, 0, 1], size=defined.sum(), p=[0.15, 0.25, 0.6])
        true[i, defined] = rng.integers(0, 512, size=(defined.sum(), 2))
        true[i, vis[i] == -1] = -1
        pred[i] = np.where(rng.random((K, 1)) < 0.7, true[i] + rng.normal(0, 8, (K, 2)), pred[i])
        pred[i, ~defined] = np.nan if rng.random() < 0.5 else 1e6  # ignored either way
        a, b = (HEAD.index(x) for x in NORMALISER[c])
        u = rng.random()
        if u < 0.1:  # zero-distance normaliser
            vis[i, [a, b]] = rng.choice([0, 1], size=2)
            true[i, b] = true[i, a]
        elif u < 0.2:  # a normalising point absent
            vis[i, b], true[i, b] = -1, -1
    ids = [f"img{i:03d}" for i in range(n)]
    return pred, true, vis, cats, ids


@pytest.mark.parametrize("seed", range(200))
def test_normalized_error_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    pred, true, vis, cats, ids = _random_case(rng)
    score = KS.normalized_error(pred, true, vis, cats, HEAD, ids)
    total, skipped = _brute_force(pred, true, vis, cats, ids)

    def expect(key):
        value, count = total.get(key, [0.0, 0])
        return (value / count * 100 if count else math.nan), count

    def same(part, key):
        value, count = expect(key)
        assert part.points == count, key
        assert part.percent == pytest.approx(value, nan_ok=True, rel=1e-9, abs=1e-12), key

    same(KS.NormalizedErrorPart(score.percent, score.points), "all")
    for c in set(cats):
        same(score.per_category[c], c)
        assert score.per_category[c].skipped_images == sum(s[1] == c for s in skipped)
    assert set(score.per_category) == set(cats)
    for name in HEAD.keypoints:
        same(score.per_keypoint[name], name)
    assert [(s.image_id, s.category, s.reason) for s in score.skipped] == skipped
    assert score.images == len(cats) - len(skipped)


def test_normalized_error_rejects_bad_inputs():
    im = _hand_images()
    pred, true, vis = np.stack(im.pred), np.stack(im.true), np.stack(im.vis)
    with pytest.raises(ValueError, match=r"true must have shape \(N, 24, 2\)"):
        KS.normalized_error(pred[:, :5], true[:, :5], vis[:, :5], im.cats, HEAD)
    with pytest.raises(ValueError, match=r"visibility must hold 1 .* bad values \[2\]"):
        KS.normalized_error(pred, true, np.where(vis == 0, 2, vis), im.cats, HEAD)
    with pytest.raises(ValueError, match=r"unknown value\(s\) \['shirt'\].*'blouse'"):
        KS.normalized_error(pred, true, vis, ["shirt", *im.cats[1:]], HEAD)
    with pytest.raises(ValueError, match="categories must have 5 entries"):
        KS.normalized_error(pred, true, vis, im.cats[:4], HEAD)
    stray = vis.copy()
    stray[0, HEAD.index("crotch")] = 1  # image 0 is a skirt
    with pytest.raises(ValueError, match=r"image skirt1 \(skirt\): keypoint 'crotch'.*expected -1"):
        KS.normalized_error(pred, true, stray, im.cats, HEAD, im.ids)
    nan_pred = pred.copy()
    nan_pred[1, HEAD.index("neckline_left")] = np.nan  # counted: visible, blouse image
    with pytest.raises(ValueError, match=r"pred has a non-finite .* image 1, keypoint 'neckline_l"):
        KS.normalized_error(nan_pred, true, vis, im.cats, HEAD)
    nan_pred = pred.copy()
    nan_pred[3, HEAD.index("crotch")] = np.nan  # in the skipped trousers image: not counted
    assert KS.normalized_error(nan_pred, true, vis, im.cats, HEAD).points == 8
    with pytest.raises(ValueError, match="'upper_body' has no normaliser pair.*landmark_error"):
        KS.normalized_error(np.zeros((1, 8, 2)), np.zeros((1, 8, 2)), np.ones((1, 8)),
                            ["upper_body"], DEEPFASHION_LANDMARKS)  # fmt: skip


def test_no_counted_points_gives_nan_not_an_error():
    score = KS.normalized_error(
        np.zeros((0, K, 2)), np.zeros((0, K, 2)), np.zeros((0, K)), [], HEAD
    )
    assert math.isnan(score.percent) and score.points == 0 and score.skipped == ()


# --- DeepFashion landmarks ---------------------------------------------------------------------


def test_landmark_error_and_detected_hand_computed():
    true = np.array([[[100.0, 50.0], [40.0, 40.0], [0.0, 0.0]]])
    pred = np.array([[[120.0, 50.0], [40.0, 50.0], [90.0, 90.0]]])
    visible = np.array([[True, True, False]])
    # image 200 x 100: (20/200, 0) -> 0.1; (0, 10/100) -> 0.1; the third is not visible
    assert LS.landmark_error(pred, true, visible, (200, 100)) == pytest.approx(0.1)
    # mmfashion zeroes invisible slots and averages over all three: (0.1 + 0.1 + 0) / 3
    assert LS.landmark_error(
        pred, true, visible, [[200, 100]], mmfashion_masking=True
    ) == pytest.approx(0.2 / 3)
    # pixel distances 20 and 10: only the second is within 10 px (<=)
    assert LS.detected_within(pred, true, visible, 10) == pytest.approx(50.0)
    assert LS.detected_within(pred, true, visible, 20) == pytest.approx(100.0)
    # mmfashion: the invisible slot counts as detected: 2 of 3
    assert LS.detected_within(pred, true, visible, 10, mmfashion_masking=True) == pytest.approx(
        200 / 3
    )
    none = np.zeros((1, 3), dtype=bool)
    assert math.isnan(LS.landmark_error(pred, true, none, (200, 100)))
    assert math.isnan(LS.detected_within(pred, true, none))


@pytest.mark.parametrize("seed", range(20))
def test_landmark_scores_equal_brute_force(seed):
    rng = np.random.default_rng(1000 + seed)
    n, k = int(rng.integers(1, 8)), 8
    true = rng.uniform(0, 300, (n, k, 2))
    pred = true + rng.normal(0, 12, (n, k, 2))
    raw = rng.choice([-1, 0, 1, 2], size=(n, k))
    sizes = rng.integers(100, 301, size=(n, 2))
    visible = LS.deepfashion_visible(raw)
    errs, hits = [], []
    for i in range(n):
        for j in range(k):
            if raw[i, j] == 0:
                dx, dy = pred[i, j] - true[i, j]
                errs.append(math.sqrt((dx / sizes[i, 0]) ** 2 + (dy / sizes[i, 1]) ** 2))
                hits.append(math.hypot(dx, dy) <= 10)
    ne = LS.landmark_error(pred, true, visible, sizes)
    det = LS.detected_within(pred, true, visible, 10)
    if errs:
        assert ne == pytest.approx(sum(errs) / len(errs))
        assert det == pytest.approx(100 * sum(hits) / len(hits))
    else:
        assert math.isnan(ne) and math.isnan(det)
    assert LS.landmark_error(pred, true, visible, sizes, mmfashion_masking=True) == pytest.approx(
        sum(errs) / (n * k)
    )


def test_landmark_inputs_are_checked():
    pts = np.zeros((1, 2, 2))
    with pytest.raises(ValueError, match=r"boolean mask.*deepfashion_visible"):
        LS.landmark_error(pts, pts, np.array([[0, 1]]), (10, 10))
    with pytest.raises(ValueError, match=r"image_sizes must be .* all > 0"):
        LS.landmark_error(pts, pts, np.ones((1, 2), bool), (0, 10))
    with pytest.raises(ValueError, match=r"pixels = -1 must be a number >= 0"):
        LS.detected_within(pts, pts, np.ones((1, 2), bool), -1)
    with pytest.raises(ValueError, match=r"bad values \[3\]"):
        LS.deepfashion_visible([[0, 3]])
    np.testing.assert_array_equal(LS.deepfashion_visible([[0, 1, 2, -1]]), [[1, 0, 0, 0]])


# --- mean-position baseline --------------------------------------------------------------------


def test_mean_position_baseline_hand_computed_and_scored():
    im = Images()
    nl, ap = "neckline_left", "armpit_left"
    ar = "armpit_right"
    im.add(
        "b1",
        "blouse",
        {nl: ((10, 20), 1, (0, 0)), ap: ((0, 0), 1, (0, 0)), ar: ((100, 0), 0, (0, 0))},
    )
    im.add("b2", "blouse", {nl: ((30, 40), 0, (0, 0)), ap: ((4, 0), 1, (0, 0))})
    im.add("b3", "blouse", {nl: ((999, 999), -1, (0, 0))})  # absent: not averaged
    im.add("d1", "dress", {nl: ((100, 100), 1, (0, 0))})
    true, vis = np.stack(im.true), np.stack(im.vis)
    base = KS.mean_position_baseline(true, vis >= 0, im.cats, HEAD)
    blouse, dress = HEAD.category_names.index("blouse"), HEAD.category_names.index("dress")
    np.testing.assert_allclose(base.means[blouse, HEAD.index(nl)], [20, 30])  # (10+30)/2, (20+40)/2
    np.testing.assert_allclose(base.means[blouse, HEAD.index(ap)], [2, 0])
    np.testing.assert_allclose(base.means[dress, HEAD.index(nl)], [100, 100])
    # dress armpit_left never seen in a dress: the mean over all categories, (0+4)/2
    np.testing.assert_allclose(base.means[dress, HEAD.index(ap)], [2, 0])
    # keypoints a category does not define stay NaN (crotch for blouse), and so does a keypoint
    # never seen anywhere (dress hemline_left)
    assert np.isnan(base.means[blouse, HEAD.index("crotch")]).all()
    assert np.isnan(base.means[dress, HEAD.index("hemline_left")]).all()
    preds = base.predict(["dress", "blouse"])
    assert preds.shape == (2, K, 2)
    np.testing.assert_allclose(preds[1, HEAD.index(nl)], [20, 30])
    np.testing.assert_allclose(base.means[dress, HEAD.index(ar)], [100, 0])  # fallback too
    # the baseline's predictions score with normalized_error (undefined NaN points ignored)
    true2 = np.full((1, K, 2), -1.0)
    vis2 = np.full((1, K), -1)
    for name, xy in ((ap, (0, 0)), (ar, (100, 0)), (nl, (20, 40))):
        true2[0, HEAD.index(name)], vis2[0, HEAD.index(name)] = xy, 1
    score = KS.normalized_error(base.predict(["blouse"]), true2, vis2, ["blouse"], HEAD)
    # s = 100; armpit_left d = |(2,0)-(0,0)| = 2 -> 0.02; armpit_right exact -> 0;
    # neckline_left d = |(20,30)-(20,40)| = 10 -> 0.1; (0.02 + 0 + 0.1) / 3 = 4%
    assert score.percent == pytest.approx(4.0) and score.points == 3
    with pytest.raises(ValueError, match=r"present must be a boolean mask.*visibility >= 0"):
        KS.mean_position_baseline(true, vis, im.cats, HEAD)
