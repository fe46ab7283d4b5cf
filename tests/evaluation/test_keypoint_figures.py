"""Worst-case keypoint figures and the per-image NE that ranks them."""

import math

import numpy as np
import pytest
from PIL import Image

from fashion_keras.evaluation import keypoint_figures as KF
from fashion_keras.evaluation import keypoint_scoring as KS
from fashion_keras.heads import DEEPFASHION_LANDMARKS, FASHIONAI_KEYPOINTS

HEAD = FASHIONAI_KEYPOINTS
K = HEAD.num_keypoints
CATS = ["blouse", "skirt", "trousers", "dress", "outwear", "skirt"]


def _data(n=6, seed=0):
    """Photos of varying sizes, ground truth (x, y, v) and noisy predictions."""
    rng = np.random.default_rng(seed)
    cats = [CATS[i % len(CATS)] for i in range(n)]
    images = [
        rng.integers(0, 256, size=(120 + 10 * i, 90 + 7 * i, 3), dtype=np.uint8) for i in range(n)
    ]
    truth = np.full((n, K, 3), -1.0)
    for i, c in enumerate(cats):
        h, w = images[i].shape[:2]
        defined = np.asarray(HEAD.defined_mask(c))
        truth[i, defined, 0] = rng.uniform(5, w - 5, defined.sum())
        truth[i, defined, 1] = rng.uniform(5, h - 5, defined.sum())
        truth[i, defined, 2] = 1
    pred = truth[..., :2] + rng.normal(0, 4, size=(n, K, 2))
    return images, truth, pred, cats


def _png_size(path):
    with Image.open(path) as im:
        im.load()
        return im.format, im.size


def _expected_size(drawn):
    cols = min(max(drawn, 1), KF.WORST_CASES_COLUMNS)
    rows = math.ceil(max(drawn, 1) / cols)
    w, h = KF.WORST_CASES_PANEL_PX
    return (cols * w, rows * h + KF.WORST_CASES_TOP_PX)


@pytest.mark.parametrize("k, drawn, grid", [(1, 1, (1, 1)), (3, 3, (3, 1)), (6, 6, (4, 2))])
def test_png_has_the_grid_size_of_k(tmp_path, k, drawn, grid):
    images, truth, pred, cats = _data(8)
    errors = np.arange(8, dtype=float)
    path = tmp_path / "fig" / "worst.png"
    order = KF.plot_worst_cases(path, images, truth, pred, errors, cats, HEAD, k=k)
    assert order == list(range(7, 7 - drawn, -1))  # highest error first
    fmt, size = _png_size(path)
    assert fmt == "PNG"
    w, h = KF.WORST_CASES_PANEL_PX
    assert size == _expected_size(drawn) == (grid[0] * w, grid[1] * h + KF.WORST_CASES_TOP_PX)
    assert [p.name for p in path.parent.iterdir()] == ["worst.png"]  # no temporary file left


def test_nan_errors_are_never_drawn_and_k_beyond_n_draws_the_scored(tmp_path):
    images, truth, pred, cats = _data(6)
    errors = np.array([5.0, np.nan, 50.0, np.nan, 1.0, 7.0])  # the NaN ones would rank first
    path = tmp_path / "worst.png"
    order = KF.plot_worst_cases(path, images, truth, pred, errors, cats, HEAD, k=20)
    assert order == [2, 5, 0, 4]
    assert _png_size(path)[1] == _expected_size(4)
    order = KF.plot_worst_cases(path, images, truth, pred, errors, cats, HEAD, k=2)
    assert order == [2, 5]


def test_only_drawn_images_are_read(tmp_path):
    images, truth, pred, cats = _data(4)

    class Lazy(list):
        def __getitem__(self, i):
            if i != 1:
                raise AssertionError(f"image {i} read")
            return super().__getitem__(i)

    errors = np.array([1.0, 9.0, 2.0, np.nan])
    order = KF.plot_worst_cases(
        tmp_path / "w.png", Lazy(images), truth, pred, errors, cats, HEAD, k=1
    )
    assert order == [1]


def test_no_scored_image_still_writes_a_png(tmp_path):
    images, truth, pred, cats = _data(3)
    path = tmp_path / "w.png"
    errors = np.full(3, np.nan)
    assert KF.plot_worst_cases(path, images, truth, pred, errors, cats, HEAD) == []
    assert _png_size(path) == ("PNG", _expected_size(0))
    empty = KF.plot_worst_cases(path, [], np.zeros((0, K, 3)), np.zeros((0, K, 2)), [], [], HEAD)
    assert empty == []


def test_points_outside_the_photo_and_nan_predictions_of_undefined_points(tmp_path):
    images, truth, pred, cats = _data(2)
    undefined = ~np.asarray(HEAD.defined_mask(cats[1]))
    pred[1, undefined] = np.nan  # predictions of undefined keypoints are ignored
    pred[0, 0] = (-500.0, 9000.0)  # far outside: the panel keeps the photo's frame
    truth[0, 3, 2] = 0  # occluded
    order = KF.plot_worst_cases(tmp_path / "w.png", images, truth, pred, [3.0, 4.0], cats, HEAD)
    assert order == [1, 0]
    assert _png_size(tmp_path / "w.png") == ("PNG", _expected_size(2))


def test_other_heads_draw_their_own_skeleton(tmp_path):
    head = DEEPFASHION_LANDMARKS
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, size=(64, 48, 3), dtype=np.uint8)] * 2
    truth = np.concatenate([rng.uniform(0, 40, (2, 8, 2)), np.ones((2, 8, 1))], axis=-1)
    truth[0, 4:6] = -1  # upper body: no waistline
    cats = ["upper_body", "full_body"]
    order = KF.plot_worst_cases(
        tmp_path / "w.png", images, truth, truth[..., :2] + 1, [1.0, 2.0], cats, head, k=2
    )
    assert order == [1, 0]


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(truth=np.zeros((6, K, 2))), r"truth must have shape \(6, 24, 3\)"),
        (dict(predicted=np.zeros((5, K, 2))), r"predicted must have shape \(6, 24, 2\)"),
        (dict(errors=np.zeros(5)), r"errors must have shape \(6,\)"),
        (dict(categories=CATS[:5]), r"categories has 5 entries; expected 6"),
        (dict(categories=["shirt", *CATS[1:]]), r"unknown value\(s\) \['shirt'\]"),
        (dict(k=0), r"k = 0: expected a positive number"),
    ],
)
def test_bad_arguments_are_named(tmp_path, change, message):
    images, truth, pred, cats = _data()
    args = dict(
        images=images, truth=truth, predicted=pred, errors=np.ones(6), categories=cats, head=HEAD
    )
    with pytest.raises(ValueError, match=message):
        KF.plot_worst_cases(tmp_path / "w.png", **(args | change))
    assert not (tmp_path / "w.png").exists()


def test_bad_image_is_named(tmp_path):
    images, truth, pred, cats = _data(2)
    images[1] = images[1].astype(np.float32)
    with pytest.raises(ValueError, match=r"images\[1\] must be a uint8 H x W x 3 photo"):
        KF.plot_worst_cases(tmp_path / "w.png", images, truth, pred, [1.0, 2.0], cats, HEAD)


def test_per_image_errors_match_the_official_ne_image_by_image():
    images, truth, pred, cats = _data(12, seed=3)
    vis = truth[..., 2].astype(int)
    vis[0, HEAD.index("neckline_left")] = 0  # occluded: not counted
    truth[1, HEAD.index("waistband_left"), :2] = truth[1, HEAD.index("waistband_right"), :2]
    blouse = HEAD.defined_mask("blouse")
    vis[6, [j for j, d in enumerate(blouse) if d and HEAD.keypoints[j] != "armpit_left"]] = -1
    vis[6, HEAD.index("armpit_left")] = -1  # normaliser absent
    errors = KF.per_image_errors(pred, truth[..., :2], vis, cats, HEAD)
    assert errors.shape == (12,)
    assert np.isnan(errors[1]) and np.isnan(errors[6])  # normaliser zero / absent
    for i in range(12):
        if i in (1, 6):
            continue
        one = KS.normalized_error(
            pred[i : i + 1], truth[i : i + 1, :, :2], vis[i : i + 1], [cats[i]], HEAD
        )
        assert errors[i] == pytest.approx(one.percent)
    # by hand: a skirt with s = 100 and one visible point 5 px off -> 5 %
    t = np.full((1, K, 2), -1.0)
    v = np.full((1, K), -1)
    for name, xy in [("waistband_left", (0, 0)), ("waistband_right", (100, 0)),
                     ("hemline_left", (0, 200)), ("hemline_right", (100, 200))]:  # fmt: skip
        t[0, HEAD.index(name)] = xy
        v[0, HEAD.index(name)] = 0
    v[0, HEAD.index("hemline_left")] = 1
    p = t.copy()
    p[0, HEAD.index("hemline_left")] += (3, 4)
    p[0, HEAD.index("hemline_right")] = np.nan  # occluded: never read
    assert KF.per_image_errors(p, t, v, ["skirt"], HEAD).tolist() == [5.0]
    v[0, HEAD.index("hemline_left")] = 0  # no visible point left: cannot be scored
    assert np.isnan(KF.per_image_errors(p, t, v, ["skirt"], HEAD)[0])
