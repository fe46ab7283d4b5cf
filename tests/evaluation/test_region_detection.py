"""Region detection: a tiny keypoint model's region boxes over the keypoints demo, checked
against ``region_boxes`` of the same predictions; resuming an interrupted run; the summary; the
region and output-file errors."""

from __future__ import annotations

import os

import numpy as np
import pytest

from fashion_keras import heads as H
from fashion_keras.data import sources
from fashion_keras.data.region_files import read_region_file
from fashion_keras.evaluation.keypoint_predictions import KeypointPredictions
from fashion_keras.evaluation.model_loading import load_predictor
from fashion_keras.evaluation.region_detection import (
    RegionConfig,
    detect_regions,
    parse_regions,
    region_heads,
    region_rows,
)
from fashion_keras.heads import FASHIONAI_KEYPOINTS, REGIONS, region_boxes
from fashion_keras.models import build_model
from fashion_keras_datasets.common.rows import normalize_image_path
from fashion_keras_datasets.synthetic.keypoints_demo import generate_keypoints_demo

HEAD = FASHIONAI_KEYPOINTS
BATCH = 3
SPLIT = "train"


def _random_head(model, seed: int):
    """Random kernels in the keypoint head (an untrained one puts every point at the centre,
    with every visibility at 0.5)."""
    rng = np.random.default_rng(seed)
    for w in model.get_layer(HEAD.name).weights:
        if "kernel" in w.path:
            w.assign(rng.normal(0.0, 0.3, w.shape).astype(np.float32))
    return model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A 9-image keypoints demo split, a 64 px keypoint model, its predictions over the split
    and a ``min_score`` that leaves some regions without a box."""
    root = tmp_path_factory.mktemp("region_detection")
    generate_keypoints_demo(str(root / "manual"), num_train=10, num_test=0, seed=2, max_side=96)
    builder = sources.get_builder("fashionai_keypoints", str(root / "manual"), str(root / "tfds"))
    model = _random_head(
        build_model("seresnet_tiny", (HEAD,), image_size=64, keypoint_filters=16), seed=3
    )
    model.save(str(root / "kp.keras"))
    predictor = load_predictor(str(root / "kp.keras"))
    examples = sources.load_split(builder, SPLIT)
    images = [
        normalize_image_path(ex["image/filename"].decode()) for ex in examples.as_numpy_iterator()
    ]
    pred = predictor.predict_keypoints(examples, batch_size=BATCH, labelled_only=False)[HEAD.name]
    # halfway between two neighbouring scores, so no score sits on the threshold
    ranked = np.unique(pred.scores)
    i = int(len(ranked) * 0.85)
    min_score = float((ranked[i] + ranked[i + 1]) / 2)
    return {
        "root": root,
        "builder": builder,
        "predictor": predictor,
        "examples": examples,
        "images": images,
        "pred": pred,
        "min_score": min_score,
    }


def _expected(setup) -> dict[tuple[str, str], tuple[float, ...]]:
    """``{(image, region): (x1, y1, x2, y2, score)}`` from region_boxes of the predictions."""
    pred, t = setup["pred"], setup["min_score"]
    present = pred.scores >= t
    points = np.concatenate([pred.predicted, np.where(present, 0.0, -1.0)[..., None]], axis=-1)
    out = {}
    for name, region in REGIONS.items():
        boxes, found = region_boxes(region, points, HEAD, pred.image_sizes)
        idx = [HEAD.index(k) for k in region.keypoints]
        for row in np.flatnonzero(found):
            score = pred.scores[row, idx][present[row, idx]].mean()
            out[(setup["images"][row], name)] = (*boxes[row], float(score))
    return out


def _assert_rows(path: str, expected) -> None:
    boxes = read_region_file(path, list(REGIONS)).boxes
    assert set(boxes) == set(expected)
    for key, box in boxes.items():
        np.testing.assert_allclose(tuple(box), expected[key], rtol=1e-5, atol=1e-4)


@pytest.fixture(scope="module")
def uninterrupted(setup):
    path = str(setup["root"] / "full.csv")
    summary = detect_regions(
        setup["predictor"],
        setup["examples"],
        path,
        min_score=setup["min_score"],
        batch_size=BATCH,
        progress=False,
    )
    return path, summary


def test_rows_are_the_region_boxes_of_the_predicted_points(setup, uninterrupted):
    path, summary = uninterrupted
    expected = _expected(setup)
    _assert_rows(path, expected)
    with open(path) as f:
        assert f.readline() == "image,region,x1,y1,x2,y2,score\n"
    # some regions have boxes, some images have none for some region (the test's premise)
    assert 0 < len(expected) < len(setup["images"]) * len(REGIONS)
    # the summary counts the whole file
    n = len(setup["images"])
    rows = {r: sum(1 for _, name in expected if name == r) for r in REGIONS}
    assert (summary.path, summary.images, summary.resumed) == (path, n, 0)
    assert summary.rows == rows
    assert summary.without_box == {r: n - rows[r] for r in REGIONS}
    text = summary.format()
    assert f"{path}: {n} images" in text
    for r in REGIONS:
        assert f"{rows[r]} rows, {n - rows[r]} images without a box" in text


class Interrupted(RuntimeError):
    pass


class StopsAfter:
    """The predictor, interrupted (an exception) at its ``calls + 1``-th batch."""

    def __init__(self, predictor, calls: int) -> None:
        self.predictor, self.calls = predictor, calls
        self.heads = predictor.heads

    def predict_keypoints(self, examples, **kwargs):
        if self.calls == 0:
            raise Interrupted("killed")
        self.calls -= 1
        return self.predictor.predict_keypoints(examples, **kwargs)


def test_an_interrupted_run_resumes_to_the_uninterrupted_rows(setup, uninterrupted, tmp_path):
    path = str(tmp_path / "regions.csv")
    kwargs = {"min_score": setup["min_score"], "batch_size": BATCH, "progress": False}
    with pytest.raises(Interrupted):
        detect_regions(StopsAfter(setup["predictor"], 2), setup["examples"], path, **kwargs)
    # the file is valid: the first two batches' rows, once
    expected = _expected(setup)
    first = set(setup["images"][: 2 * BATCH])
    _assert_rows(path, {k: v for k, v in expected.items() if k[0] in first})
    last = list(read_region_file(path, list(REGIONS)).boxes)[-1][0]
    summary = detect_regions(setup["predictor"], setup["examples"], path, **kwargs)
    _assert_rows(path, expected)
    with open(path) as f, open(uninterrupted[0]) as g:
        assert f.readline() == g.readline()  # the header once
        assert len(f.readlines()) == len(g.readlines())
    assert summary.rows == uninterrupted[1].rows
    assert summary.images == len(setup["images"])
    assert summary.resumed == setup["images"].index(last) + 1  # up to the last written image
    # a finished file: a rerun adds nothing
    again = detect_regions(setup["predictor"], setup["examples"], path, **kwargs)
    assert again.rows == summary.rows
    _assert_rows(path, expected)


def test_a_torn_last_line_is_dropped_on_resume(setup, uninterrupted, tmp_path):
    path = tmp_path / "regions.csv"
    with pytest.raises(Interrupted):
        detect_regions(
            StopsAfter(setup["predictor"], 1),
            setup["examples"],
            str(path),
            min_score=setup["min_score"],
            batch_size=BATCH,
            progress=False,
        )
    with open(path, "a") as f:
        f.write("Images/half")  # a killed write
    detect_regions(
        setup["predictor"],
        setup["examples"],
        str(path),
        min_score=setup["min_score"],
        batch_size=BATCH,
        progress=False,
    )
    _assert_rows(str(path), _expected(setup))


def test_chosen_regions_only(setup, tmp_path):
    path = str(tmp_path / "r.csv")
    summary = detect_regions(
        setup["predictor"],
        setup["examples"].take(4),
        path,
        regions=["lower", "collar"],
        min_score=0.0,
        batch_size=BATCH,
        progress=False,
    )
    boxes = read_region_file(path, list(REGIONS)).boxes
    # min_score 0: every point present, every image has both boxes, scores are means of all
    assert set(boxes) == {(i, r) for i in setup["images"][:4] for r in ("lower", "collar")}
    assert list(summary.rows) == ["lower", "collar"]
    assert summary.without_box == {"lower": 0, "collar": 0}
    idx = [HEAD.index(k) for k in REGIONS["collar"].keypoints]
    np.testing.assert_allclose(
        [boxes[(i, "collar")].score for i in setup["images"][:4]],
        setup["pred"].scores[:4, idx].mean(axis=1),
        rtol=1e-6,
    )


def test_output_of_other_regions_or_data_is_an_error(setup, uninterrupted, tmp_path):
    with pytest.raises(ValueError, match=r"full.csv: has rows for region\(s\) .*--regions"):
        detect_regions(
            setup["predictor"],
            setup["examples"],
            uninterrupted[0],
            regions=["collar"],
            progress=False,
        )
    other = tmp_path / "other.csv"
    other.write_text("image,region,x1,y1,x2,y2,score\nelsewhere/a.jpg,collar,1,2,3,4,0.9\n")
    with pytest.raises(ValueError, match=r"last image 'elsewhere/a.jpg' is not in these examples"):
        detect_regions(setup["predictor"], setup["examples"], str(other), progress=False)
    assert other.read_text().count("\n") == 2  # nothing appended
    no_score = tmp_path / "no_score.csv"
    no_score.write_text("image,region,x1,y1,x2,y2\n")
    with pytest.raises(ValueError, match=r"no_score.csv: header .*expected .*score"):
        detect_regions(setup["predictor"], setup["examples"].take(1), str(no_score), min_score=0)


def test_examples_without_filename_and_bad_settings(setup, tmp_path):
    path = str(tmp_path / "r.csv")
    no_name = setup["examples"].map(lambda ex: {"image": ex["image"]})
    with pytest.raises(ValueError, match=r"no 'image/filename' feature"):
        detect_regions(setup["predictor"], no_name, path)
    with pytest.raises(ValueError, match=r"tta = 'ten_crop': keypoint heads take one of"):
        detect_regions(setup["predictor"], setup["examples"], path, tta="ten_crop")
    with pytest.raises(ValueError, match=r"min_score = 1.5: expected a number in \[0, 1\]"):
        detect_regions(setup["predictor"], setup["examples"], path, min_score=1.5)
    assert not os.path.exists(path)


# --- which head gives which region ---------------------------------------------------------

COLLAR_ONLY = H.KeypointHead(
    "neck",
    ("neckline_left", "neckline_right", "center_front", "shoulder_left", "shoulder_right"),
    (),
    {"all": (("neckline_left", "neckline_right"), None)},
)
LOWER_ONLY = H.KeypointHead(
    "legs",
    REGIONS["lower"].keypoints,
    (),
    {"all": (("waistband_left", "waistband_right"), None)},
)


def test_default_regions_are_those_the_heads_fit():
    assert list(region_heads((HEAD,))) == list(REGIONS)
    assert {n: h.name for n, (_, h) in region_heads((COLLAR_ONLY, LOWER_ONLY)).items()} == {
        "collar": "neck",
        "lower": "legs",
    }


def test_a_region_the_heads_do_not_fit_is_named_with_its_missing_keypoints():
    with pytest.raises(
        ValueError,
        match=r"region 'upper' needs keypoint\(s\) \['armpit_left', .*'top_hem_right'\] that "
        r"keypoint head 'neck' lacks; drop it from --regions \(the model's heads fit "
        r"\['collar'\]\) or use a model whose keypoint head has them",
    ):
        region_heads((COLLAR_ONLY,), ["collar", "upper"])


def test_a_model_without_fitting_keypoint_heads_is_an_error(setup, tmp_path):
    class Fake:
        heads = (COLLAR_ONLY,)

    with pytest.raises(ValueError, match=r"region 'lower' needs keypoint\(s\) \['waistband_left'"):
        detect_regions(Fake(), setup["examples"], str(tmp_path / "r.csv"), regions=["lower"])
    with pytest.raises(ValueError, match=r"the model has no keypoint head .*--heads"):
        region_heads(H.get_heads("deepfashion6"))
    small = H.KeypointHead("tiny", ("a", "b"), (), {"all": (("a", "b"), None)})
    with pytest.raises(ValueError, match=r"no region fits the keypoint head\(s\) \['tiny'\]"):
        region_heads((small,))


def test_region_rows_by_hand():
    """Presence by score, the score as the mean of the present points, no row below two."""
    k = COLLAR_ONLY.num_keypoints
    predicted = np.tile(
        np.array([[10.0, 20.0], [30.0, 22.0], [20.0, 40.0], [5, 25], [35, 25]]), (2, 1, 1)
    )
    scores = np.array([[0.9, 0.8, 0.2, 0.1, 0.6], [0.9, 0.3, 0.2, 0.1, 0.4]])
    pred = KeypointPredictions(
        COLLAR_ONLY,
        np.full((2, k, 3), -1.0),
        predicted,
        scores,
        [None, None],
        np.array([[100, 80], [100, 80]]),
        np.arange(2),
    )
    rows = region_rows({"neck": pred}, ["a.jpg", "b.jpg"], region_heads((COLLAR_ONLY,)), 0.5)
    assert len(rows) == 1  # b.jpg has one present point only
    image, region, *box, score = rows[0]
    assert (image, region) == ("a.jpg", "collar")
    np.testing.assert_allclose(score, (0.9 + 0.8 + 0.6) / 3)
    points = np.concatenate([predicted, np.where(scores >= 0.5, 1.0, -1.0)[..., None]], -1)
    want, found = region_boxes("collar", points, COLLAR_ONLY, [[100, 80], [100, 80]])
    assert found.tolist() == [True, False]
    np.testing.assert_allclose(box, want[0])


def test_config_section():
    assert parse_regions(" collar, lower ") == ["collar", "lower"]
    for text, message in [
        ("hood", r"'regions' = 'hood': unknown or no region\(s\) \['hood'\]"),
        ("", r"unknown or no region"),
        ("collar,collar", r"repeats a region"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_regions(text)
    with pytest.raises(ValueError, match=r"'output' is required"):
        RegionConfig().validate()
    with pytest.raises(ValueError, match=r"'min_score' must be in \[0, 1\], got -0.1"):
        RegionConfig(output="r.csv", min_score=-0.1).validate()
    assert RegionConfig(output="r.csv", regions="upper").region_names() == ["upper"]
