"""Regions: validation, presets, box rules (pixel edges), batch boxes, heads naming regions;
and the command ``python -m fashion_keras.regions`` that writes a keypoint model's region boxes
(its library, :mod:`fashion_keras.evaluation.region_detection`, is tested in
``tests/evaluation/test_region_detection.py``)."""

import hashlib
import json
import math

import numpy as np
import pytest

from fashion_keras import heads as H
from fashion_keras import regions as regions_command
from fashion_keras.heads import Region, region_box, region_boxes

# A small keypoint head for hand-made points: a, b, c bound the test regions, d never does.
PTS = H.KeypointHead("pts", ("a", "b", "c", "d"), (), {"all": (("a", "b", "c", "d"), None)})


def _points(**xyv: tuple[float, float, float]) -> np.ndarray:
    """``[4, 3]`` points of PTS: the named ones set, the others absent (v = -1)."""
    out = np.full((4, 3), -1.0)
    for name, value in xyv.items():
        out[PTS.index(name)] = value
    return out


def _box(region: Region, points: np.ndarray, size=(100, 100)):
    """region_box and the one-row region_boxes, checked to agree."""
    box = region_box(region, points, PTS, size)
    boxes, found = region_boxes(region, points[None], PTS, np.asarray([size]))
    assert bool(found[0]) == (box is not None)
    if box is None:
        assert np.isnan(boxes[0]).all()
    else:
        np.testing.assert_allclose(boxes[0], box, rtol=0, atol=1e-9)
    return box


def _region(**rules) -> Region:
    return Region("test", ("a", "b", "c"), **{"margin": 0.0, **rules})


# --- validation ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "2x"}, r"region name '2x' is invalid"),
        ({"keypoints": ("a",)}, r"region 'r': 'keypoints' = \['a'\] has 1 entries.*at least 2"),
        ({"keypoints": "ab"}, r"'keypoints' = 'ab' is not a list of names"),
        ({"keypoints": ("a", "a")}, r"duplicate names \['a'\]"),
        ({"keypoints": ("a", "")}, r"keypoints'\[1\] = '' is not a non-empty string"),
        ({"margin": -0.1}, r"region 'r': margin = -0.1 must be a number >= 0"),
        ({"margin": "wide"}, r"margin = 'wide' must be a number >= 0"),
        ({"margin": True}, r"margin = True must be a number >= 0"),
        ({"extend_up": float("nan")}, r"extend_up = nan must be a number >= 0"),
        ({"min_size": -1}, r"min_size = -1 must be a number >= 0"),
        ({"min_size": 1.5}, r"min_size = 1.5 must be <= 1"),
        ({"square": "yes"}, r"square = 'yes' must be true or false"),
    ],
)
def test_invalid_region_fields_name_field_value_and_expectation(kwargs, message):
    fields = {"name": "r", "keypoints": ("a", "b"), **kwargs}
    with pytest.raises(H.HeadSpecError, match=message):
        Region(**fields)


def test_numbers_are_stored_as_floats():
    r = Region("r", ["a", "b"], margin=1, extend_up=0, min_size=1)
    assert r.keypoints == ("a", "b")
    assert (r.margin, r.extend_up, r.min_size) == (1.0, 0.0, 1.0)
    assert all(type(v) is float for v in (r.margin, r.extend_up, r.min_size))


def test_dict_round_trip_and_errors():
    for region in H.REGIONS.values():
        as_json = json.loads(json.dumps(region.to_dict()))
        assert Region.from_dict(as_json) == region
    assert Region.from_dict({"name": "r", "keypoints": ["a", "b"]}) == Region("r", ("a", "b"))
    with pytest.raises(H.HeadSpecError, match=r"regions\[0\]: unknown field\(s\) \['pad'\]"):
        Region.from_dict({"name": "r", "keypoints": ["a", "b"], "pad": 1}, "regions[0]")
    with pytest.raises(H.HeadSpecError, match=r"regions\[0\]: missing field 'keypoints'"):
        Region.from_dict({"name": "r"}, "regions[0]")
    with pytest.raises(H.HeadSpecError, match=r"regions\[0\]: region 'r': margin = -1"):
        Region.from_dict({"name": "r", "keypoints": ["a", "b"], "margin": -1}, "regions[0]")
    with pytest.raises(H.HeadSpecError, match=r"region: expected a mapping"):
        Region.from_dict(["r"])


def test_get_region_lists_the_known_regions():
    assert H.get_region("collar") is H.REGIONS["collar"]
    own = Region("own", ("a", "b"))
    assert H.get_region(own) is own
    with pytest.raises(H.HeadSpecError, match=r"region = 'neck' is unknown; expected one of "):
        H.get_region("neck")


# --- presets -------------------------------------------------------------------------------
def test_presets_bound_existing_fashionai_keypoints():
    kp = H.FASHIONAI_KEYPOINTS
    assert list(H.REGIONS) == ["collar", "upper", "sleeves", "lower", "garment"]
    for name, region in H.REGIONS.items():
        assert region.name == name
        assert set(region.keypoints) <= set(kp.keypoints), name
        assert [kp.keypoints[i] for i in H.region_indices(region, kp)] == list(region.keypoints)
    assert H.REGIONS["garment"].keypoints == H.FASHIONAI_KEYPOINT_NAMES
    collar = H.REGIONS["collar"]
    assert set(collar.keypoints) == {
        "neckline_left", "neckline_right", "center_front", "shoulder_left", "shoulder_right",
    }  # fmt: skip
    assert collar.square and collar.extend_up > 0
    assert {"cuff_left_out", "cuff_right_in", "armpit_left"} <= set(H.REGIONS["sleeves"].keypoints)
    assert {"crotch", "waistband_left", "bottom_right_out", "hemline_left"} <= set(
        H.REGIONS["lower"].keypoints
    )
    assert {"top_hem_left", "waistline_right", "shoulder_left", "armpit_right"} <= set(
        H.REGIONS["upper"].keypoints
    )


def test_region_keypoints_missing_from_the_head_is_an_error():
    with pytest.raises(H.HeadSpecError, match=r"region 'collar': keypoint\(s\) \['neckline_left'"):
        H.region_indices(H.REGIONS["collar"], H.DEEPFASHION_LANDMARKS)
    with pytest.raises(H.HeadSpecError, match=r"not in keypoint head 'deepfashion_landmarks'"):
        region_box("collar", np.zeros((8, 3)), H.DEEPFASHION_LANDMARKS, (64, 64))


def test_collar_preset_on_a_neckline():
    kp = np.full((24, 3), -1.0)
    kp[H.FASHIONAI_KEYPOINTS.index("neckline_left")] = (100, 50, 1)
    kp[H.FASHIONAI_KEYPOINTS.index("neckline_right")] = (139, 50, 1)
    kp[H.FASHIONAI_KEYPOINTS.index("center_front")] = (119, 90, 0)
    kp[H.FASHIONAI_KEYPOINTS.index("waistband_left")] = (300, 400, 1)  # not a collar point
    # tight [100, 140) x [50, 91); up by 0.5 * 41 -> y1 29.5, height 61.5; margin 0.15 ->
    # x [94, 146), y [20.275, 100.225); square about x centre 120 -> width 79.95
    box = region_box("collar", kp, H.FASHIONAI_KEYPOINTS, (512, 512))
    assert box == pytest.approx((80.025, 20.275, 159.975, 100.225))
    assert box[2] - box[0] == pytest.approx(box[3] - box[1])


# --- box rules -----------------------------------------------------------------------------
def test_tight_box_uses_pixel_edges():
    # points on columns 10 and 19 cover the pixel edges [10, 20)
    assert _box(_region(), _points(a=(10, 20, 1), b=(19, 29, 1))) == (10, 20, 20, 30)


def test_margin_adds_a_fraction_of_each_side_on_both_ends():
    # 10 x 20 box; 0.25 of the width left and right, of the height above and below
    box = _box(_region(margin=0.25), _points(a=(10, 20, 1), b=(19, 39, 1)))
    assert box == (7.5, 15, 22.5, 45)


def test_extend_up_adds_above_only_then_margin_applies_to_the_taller_box():
    points = _points(a=(10, 20, 1), b=(19, 29, 1))
    assert _box(_region(extend_up=0.5), points) == (10, 15, 20, 30)
    # extended height 15, so the margin is 3.75 above and below; width 10, margin 2.5
    assert _box(_region(extend_up=0.5, margin=0.25), points) == (7.5, 11.25, 22.5, 33.75)


def test_square_grows_the_shorter_side_about_its_centre():
    wide = _points(a=(10, 20, 1), b=(29, 23, 1))  # [10, 30) x [20, 24)
    assert _box(_region(square=True), wide) == (10, 12, 30, 32)
    tall = _points(a=(10, 20, 1), b=(13, 39, 1))  # [10, 14) x [20, 40)
    assert _box(_region(square=True), tall) == (2, 20, 22, 40)
    assert _box(_region(), wide) == (10, 20, 30, 24)


def test_min_size_is_a_fraction_of_the_shorter_image_side():
    close = _points(a=(40, 20, 1), b=(41, 21, 1))  # [40, 42) x [20, 22)
    # image 100 x 50: at least 0.2 * 50 = 10 on each side, about the centre (41, 21)
    assert _box(_region(min_size=0.2), close, (100, 50)) == (36, 16, 46, 26)
    # a side already longer stays as it is
    long = _points(a=(20, 20, 1), b=(59, 21, 1))  # [20, 60) x [20, 22)
    assert _box(_region(min_size=0.2), long, (100, 50)) == (20, 16, 60, 26)


def test_box_is_clamped_to_the_image():
    corner = _points(a=(0, 0, 1), b=(9, 9, 1))  # [0, 10) x [0, 10), margin 5 each side
    assert _box(_region(margin=0.5), corner) == (0, 0, 15, 15)
    assert _box(_region(margin=0.5), corner, (12, 100)) == (0, 0, 12, 15)
    # the last column and row of a 64 x 48 image end at the edges 64 and 48
    far = _points(a=(50, 30, 1), b=(63, 47, 1))
    assert _box(_region(), far, (64, 48)) == (50, 30, 64, 48)


def test_points_wholly_outside_the_image_give_no_box():
    assert _box(_region(), _points(a=(200, 200, 1), b=(210, 210, 1))) is None


def test_only_present_points_of_the_region_count():
    # b absent (v = -1), c occluded (v = 0: counts), d is not a region point
    points = _points(a=(10, 20, 1), b=(90, 90, -1), c=(19, 29, 0), d=(0, 0, 1))
    assert _box(_region(), points) == (10, 20, 20, 30)
    nan_point = _points(a=(10, 20, 1), b=(math.nan, 90, 1), c=(19, 29, 1))
    assert _box(_region(), nan_point) == (10, 20, 20, 30)


@pytest.mark.parametrize(
    "points",
    [
        _points(),
        _points(a=(10, 20, 1)),
        _points(a=(10, 20, 1), b=(30, 30, -1), d=(50, 50, 1)),
        _points(a=(10, 20, 1), b=(math.nan, math.nan, 1)),
    ],
)
def test_fewer_than_two_present_points_give_no_box(points):
    assert _box(_region(margin=0.1, min_size=0.5), points) is None


def test_input_shapes_are_checked():
    with pytest.raises(ValueError, match=r"shape \(3, 3\), expected \(4, 3\)"):
        region_box(_region(), np.zeros((3, 3)), PTS, (10, 10))
    with pytest.raises(ValueError, match=r"image_size = \(0, 10\) must be \(width, height\)"):
        region_box(_region(), _points(), PTS, (0, 10))
    with pytest.raises(ValueError, match=r"shape \(4, 3\), expected \(N, 4, 3\)"):
        region_boxes(_region(), _points(), PTS, (10, 10))
    with pytest.raises(ValueError, match=r"image_sizes has shape \(3, 2\), expected \(2, 2\)"):
        region_boxes(_region(), np.stack([_points()] * 2), PTS, np.ones((3, 2)))


# --- batch ---------------------------------------------------------------------------------
@pytest.mark.parametrize("region", [*H.REGIONS, "custom"])
def test_region_boxes_equals_region_box_per_row(region):
    if region == "custom":
        region = Region("custom", ("neckline_left", "crotch"), margin=0.3, square=True,
                        extend_up=1.0, min_size=0.4)  # fmt: skip
    rng = np.random.default_rng(7)
    n, head = 300, H.FASHIONAI_KEYPOINTS
    sizes = rng.integers(16, 600, size=(n, 2)).astype(float)
    xy = rng.uniform(-0.1, 1.1, size=(n, head.num_keypoints, 2)) * sizes[:, None, :]
    # many rows with few present points, so both outcomes occur
    v = rng.choice([-1.0, 0.0, 1.0], p=[0.85, 0.05, 0.1], size=(n, head.num_keypoints, 1))
    points = np.concatenate([xy, v], axis=2)
    boxes, found = region_boxes(region, points, head, sizes)
    assert boxes.shape == (n, 4) and found.shape == (n,) and found.dtype == bool
    assert 0 < found.sum() < n
    for i in range(n):
        box = region_box(region, points[i], head, sizes[i])
        assert found[i] == (box is not None), i
        if box is None:
            assert np.isnan(boxes[i]).all()
        else:
            np.testing.assert_allclose(boxes[i], box, rtol=0, atol=1e-9)
            x1, y1, x2, y2 = box
            assert 0 <= x1 < x2 <= sizes[i, 0] and 0 <= y1 < y2 <= sizes[i, 1]


def test_region_boxes_broadcasts_one_image_size():
    points = np.stack([_points(a=(1, 2, 1), b=(5, 6, 1)), _points(a=(1, 2, 1))])
    boxes, found = region_boxes(_region(), points, PTS, (100, 80))
    assert found.tolist() == [True, False]
    assert boxes[0].tolist() == [1, 2, 6, 7] and np.isnan(boxes[1]).all()


# --- heads naming regions ------------------------------------------------------------------
def test_fashionai8_heads_carry_their_regions():
    assert {h.name: h.region for h in H.FASHIONAI8} == {
        "coat_length_labels": "garment",
        "collar_design_labels": "collar",
        "lapel_design_labels": "collar",
        "neck_design_labels": "collar",
        "neckline_design_labels": "collar",
        "pant_length_labels": "lower",
        "skirt_length_labels": "lower",
        "sleeve_length_labels": "sleeves",
    }
    # deepfashion6: the neckline, a small design detail, looks at the collar
    assert {h.name: h.region for h in H.DEEPFASHION6 if h.region} == {"neckline": "collar"}
    assert all(h.region is None for h in H.DEEPFASHION_CATEGORY)
    spec = H.get_heads("fashionai8")
    assert H.heads_from_dict(json.loads(json.dumps(H.heads_to_dict(spec)))) == spec


def test_head_spec_with_a_region(tmp_path):
    path = tmp_path / "shop.yaml"
    path.write_text("heads:\n  - name: collar\n    classes: [none, shirt]\n    region: collar\n")
    (head,) = H.get_heads(str(path))
    assert head == H.Head("collar", ("none", "shirt"), region="collar")
    assert head != H.Head("collar", ("none", "shirt"))
    assert head.to_dict() == {
        "name": "collar", "classes": ["none", "shirt"], "loss_weight": 1.0, "region": "collar",
    }  # fmt: skip
    as_json = tmp_path / "shop.json"
    as_json.write_text(json.dumps(H.heads_to_dict((head,))))
    assert H.get_heads(str(as_json)) == (head,)


def test_unknown_region_names_head_value_and_known_regions(tmp_path):
    path = tmp_path / "shop.yaml"
    path.write_text("heads:\n  - name: collar\n    classes: [none, shirt]\n    region: nope\n")
    with pytest.raises(H.HeadSpecError) as err:
        H.get_heads(str(path))
    assert str(err.value) == (
        f"{path}: heads[0]: head 'collar': region = 'nope' is unknown; expected one of "
        "['collar', 'upper', 'sleeves', 'lower', 'garment']"
    )
    with pytest.raises(H.HeadSpecError, match=r"head 'a': region = 3 is unknown"):
        H.Head("a", ("x", "y"), region=3)
    kp_dict = {**H.FASHIONAI_KEYPOINTS.to_dict(), "region": "collar"}
    with pytest.raises(H.HeadSpecError, match=r"unknown field\(s\) \['region'\]"):
        H.head_from_dict(kp_dict)


# sha256 of json.dumps(heads_to_dict(preset), sort_keys=True), taken before heads had regions.
_BEFORE_REGIONS = {
    "deepfashion6": "919052d39c4c6ed1e8df24db35162c44f79d1892aa3cfd0d4844e17ae1c133cd",
    "fashionai8": "00ef36e432e843836efc591a7723229c2cd9cc79a68d8a128f53ba8e6af644b2",
    "deepfashion_category": "5bad83d0889a401e4011dc56c72b93d4478cb9e7593a48cd8fe832796cb987ab",
    "fashionai_keypoints": "8bbc55ba3e9eb5682d6cd3fcb1651f8bf129ded833e40b4fd7d3bfe5c52a38a0",
    "deepfashion_landmarks": "f9122bcaf36c88b3790652b73f3e4c11c44153c5de67dd937707a34159fd1c48",
}


@pytest.mark.parametrize("preset", sorted(_BEFORE_REGIONS))
def test_preset_dicts_are_unchanged_but_for_the_region_entries(preset):
    as_dict = H.heads_to_dict(H.get_heads(preset))
    with_region = [h.pop("region") for h in as_dict["heads"] if "region" in h]
    assert bool(with_region) == (preset in ("fashionai8", "deepfashion6"))
    text = json.dumps(as_dict, sort_keys=True)
    assert hashlib.sha256(text.encode()).hexdigest() == _BEFORE_REGIONS[preset]


# --- the command: python -m fashion_keras.regions ----------------------------------------------


@pytest.fixture(scope="module")
def command_setup(tmp_path_factory):
    """A 5-image keypoints demo split and a 64 px keypoint model in a .keras file."""
    from fashion_keras.data import sources
    from fashion_keras.models import build_model
    from fashion_keras_datasets.synthetic.keypoints_demo import generate_keypoints_demo

    root = tmp_path_factory.mktemp("regions_command")
    generate_keypoints_demo(str(root / "manual"), num_train=6, num_test=0, seed=4, max_side=80)
    builder = sources.get_builder("fashionai_keypoints", str(root / "manual"), str(root / "tfds"))
    model = build_model("seresnet_tiny", "fashionai_keypoints", image_size=64, keypoint_filters=16)
    model.save(str(root / "kp.keras"))
    data = [
        "--dataset",
        "fashionai_keypoints",
        "--data-dir",
        str(root / "manual"),
        "--tfds-data-dir",
        str(root / "tfds"),
        "--split",
        "train",
    ]
    return {"root": root, "model": str(root / "kp.keras"), "builder": builder, "data": data}


def test_command_writes_the_library_rows_and_resumes(command_setup, tmp_path, capsys):
    from fashion_keras.data import sources
    from fashion_keras.data.region_files import read_region_file
    from fashion_keras.evaluation.model_loading import load_predictor
    from fashion_keras.evaluation.region_detection import detect_regions

    out = tmp_path / "regions.csv"
    argv = [command_setup["model"], *command_setup["data"], "--output", str(out)]
    argv += ["--batch-size", "2", "--min-score", "0", "--regions", "collar,lower"]
    assert regions_command.main(argv) == 0
    printed = capsys.readouterr().out
    images = command_setup["builder"].info.splits["train"].num_examples
    # min-score 0: every keypoint present, so every image has both boxes
    assert f"{out}: {images} images\n" in printed
    assert f"collar  {images} rows, 0 images without a box" in printed
    assert f"lower   {images} rows, 0 images without a box" in printed
    written = out.read_text()
    boxes = read_region_file(out, list(H.REGIONS)).boxes
    assert len(boxes) == 2 * images and {r for _, r in boxes} == {"collar", "lower"}

    # the same rows as the library call with the same settings
    library = tmp_path / "library.csv"
    detect_regions(
        load_predictor(command_setup["model"]),
        sources.load_split(command_setup["builder"], "train"),
        library,
        regions=["collar", "lower"],
        min_score=0.0,
        batch_size=2,
        progress=False,
    )
    assert library.read_text() == written

    # a rerun resumes: everything is already written, nothing is added
    assert regions_command.main(argv) == 0
    assert f"({images} already written by an earlier run, skipped)" in capsys.readouterr().out
    assert out.read_text() == written


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--regions", "hood"], r"error: config field 'regions' = 'hood': unknown or no region"),
        (["--tta", "ten_crop"], r"error: tta = 'ten_crop': keypoint heads take one of"),
        (["--min-score", "2"], r"error: config field 'min_score' must be in \[0, 1\], got 2.0"),
    ],
)
def test_command_input_errors_are_one_line(command_setup, tmp_path, flags, message):
    argv = [command_setup["model"], *command_setup["data"], "--output", str(tmp_path / "r.csv")]
    with pytest.raises(SystemExit, match=message):
        regions_command.main([*argv, *flags])
    assert not (tmp_path / "r.csv").exists()


def test_command_needs_an_output(command_setup):
    with pytest.raises(SystemExit, match=r"error: config field 'output' is required"):
        regions_command.main([command_setup["model"], *command_setup["data"]])


def test_command_rejects_a_region_the_model_lacks(tmp_path):
    from fashion_keras.models import build_model

    neck = H.KeypointHead(
        "neck",
        ("neckline_left", "neckline_right", "center_front", "shoulder_left", "shoulder_right"),
        (),
        {"all": (("neckline_left", "neckline_right"), None)},
    )
    path = str(tmp_path / "neck.keras")
    build_model("seresnet_tiny", (neck,), image_size=32, keypoint_filters=8).save(path)
    argv = [path, "--data-dir", str(tmp_path / "unused"), "--output", str(tmp_path / "r.csv")]
    with pytest.raises(
        SystemExit,
        match=r"error: region 'lower' needs keypoint\(s\) \['waistband_left', .*\] that "
        r"keypoint head 'neck' lacks; drop it from --regions",
    ):
        regions_command.main([*argv, "--regions", "collar,lower"])


# --- views: which picture each head reads (fashion_keras.heads.views) --------------------------


def test_views_name_inputs_and_pick_each_heads_view():
    from fashion_keras.heads.views import crop_input, head_view, model_views, named_regions

    assert crop_input(None) == "image" and crop_input("collar") == "collar_crop"
    neck = H.Head("neck", ("v", "round"), region="collar")
    hem = H.Head("hem", ("short", "long"), region="lower")
    plain = H.Head("colour", ("dark", "light"))
    assert head_view(neck, ("collar",)) == "collar"
    assert head_view(neck, ("lower",)) is None and head_view(plain, ("collar",)) is None
    heads = (neck, plain, hem, H.Head("cut", ("a", "b"), region="collar"))
    assert named_regions(heads) == ("collar", "lower")
    assert named_regions((plain,)) == ()
    assert named_regions((*heads, H.FASHIONAI_KEYPOINTS)) == ("collar", "lower")
    # the garment view first when a head needs it, then the regions in the order given
    assert model_views(heads, ()) == (None,)
    assert model_views(heads, ("lower", "collar")) == (None, "lower", "collar")
    assert model_views((neck, hem), ("lower", "collar")) == ("lower", "collar")
    assert model_views((neck, hem), ("collar",)) == (None, "collar")
    # a keypoint head reads the garment view
    assert model_views((neck, H.FASHIONAI_KEYPOINTS), ("collar",)) == (None, "collar")
    deepfashion6 = H.get_heads("deepfashion6")
    assert named_regions(deepfashion6) == ("collar",)
    assert model_views(deepfashion6, ("collar",)) == (None, "collar")
