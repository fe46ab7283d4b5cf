"""Keypoint heads in the head taxonomy: presets, flipping, spec files and their errors."""

import json

import pytest
import yaml

from fashion_keras import heads as H

# formats.md section 3, CSV column order
FASHIONAI_24 = [
    "neckline_left", "neckline_right", "center_front", "shoulder_left", "shoulder_right",
    "armpit_left", "armpit_right", "waistline_left", "waistline_right", "cuff_left_in",
    "cuff_left_out", "cuff_right_in", "cuff_right_out", "top_hem_left", "top_hem_right",
    "waistband_left", "waistband_right", "hemline_left", "hemline_right", "crotch",
    "bottom_left_in", "bottom_left_out", "bottom_right_in", "bottom_right_out",
]  # fmt: skip

# the official challenge definition of each category's keypoints
FASHIONAI_CATEGORIES = {
    "blouse": {
        "neckline_left", "neckline_right", "center_front", "shoulder_left", "shoulder_right",
        "armpit_left", "armpit_right", "cuff_left_in", "cuff_left_out", "cuff_right_in",
        "cuff_right_out", "top_hem_left", "top_hem_right",
    },
    "outwear": {
        "neckline_left", "neckline_right", "shoulder_left", "shoulder_right", "armpit_left",
        "armpit_right", "waistline_left", "waistline_right", "cuff_left_in", "cuff_left_out",
        "cuff_right_in", "cuff_right_out", "top_hem_left", "top_hem_right",
    },
    "trousers": {
        "waistband_left", "waistband_right", "crotch", "bottom_left_in", "bottom_left_out",
        "bottom_right_in", "bottom_right_out",
    },
    "skirt": {"waistband_left", "waistband_right", "hemline_left", "hemline_right"},
    "dress": {
        "neckline_left", "neckline_right", "center_front", "shoulder_left", "shoulder_right",
        "armpit_left", "armpit_right", "waistline_left", "waistline_right", "cuff_left_in",
        "cuff_left_out", "cuff_right_in", "cuff_right_out", "hemline_left", "hemline_right",
    },
}  # fmt: skip


def _mirror_name(name: str) -> str:
    """'cuff_left_in' -> 'cuff_right_in' and back; names without a side stay."""
    return name.replace("left", "@").replace("right", "left").replace("@", "right")


def test_fashionai_keypoints_preset_matches_the_challenge():
    (head,) = H.get_heads("fashionai_keypoints")
    assert isinstance(head, H.KeypointHead) and head.kind == "keypoints"
    assert list(head.keypoints) == FASHIONAI_24
    assert head.category_names == ("blouse", "outwear", "trousers", "skirt", "dress")
    assert {c.name: len(c.keypoints) for c in head.categories} == {
        "blouse": 13,
        "outwear": 14,
        "trousers": 7,
        "skirt": 4,
        "dress": 15,
    }
    for name, expected in FASHIONAI_CATEGORIES.items():
        assert set(head.category(name).keypoints) == expected, name
        mask = head.defined_mask(name)
        assert [k for k, m in zip(FASHIONAI_24, mask, strict=True) if m] == [
            k for k in FASHIONAI_24 if k in expected
        ]
    armpits, waistband = ("armpit_left", "armpit_right"), ("waistband_left", "waistband_right")
    assert {c.name: c.normaliser for c in head.categories} == {
        "blouse": armpits,
        "outwear": armpits,
        "dress": armpits,
        "trousers": waistband,
        "skirt": waistband,
    }
    assert head.normaliser_indices("blouse") == (5, 6)
    assert head.normaliser_indices("skirt") == (15, 16)
    assert head.index("crotch") == 19


@pytest.mark.parametrize("preset", ["fashionai_keypoints", "deepfashion_landmarks"])
def test_flip_permutation_swaps_every_left_right_and_is_an_involution(preset):
    (head,) = H.get_heads(preset)
    perm = head.flip_permutation()
    assert sorted(perm) == list(range(head.num_keypoints))
    assert [perm[p] for p in perm] == list(range(head.num_keypoints))
    mirrored = [head.keypoints[p] for p in perm]
    assert mirrored == [_mirror_name(k) for k in head.keypoints]
    sided = [k for k in head.keypoints if "left" in k or "right" in k]
    assert len(head.flip_pairs) * 2 == len(sided)


def test_fashionai_flip_keeps_centre_points_and_categories_are_flip_closed():
    head = H.FASHIONAI_KEYPOINTS
    perm = head.flip_permutation()
    fixed = [head.keypoints[i] for i, p in enumerate(perm) if i == p]
    assert fixed == ["center_front", "crotch"]
    for c in head.categories:
        mask = head.defined_mask(c.name)
        assert [mask[p] for p in perm] == list(mask), c.name


def test_deepfashion_landmarks_preset_uses_file_order_per_clothes_type():
    (head,) = H.get_heads("deepfashion_landmarks")
    assert head.num_keypoints == 8
    assert H.DEEPFASHION_CLOTHES_TYPES == ("upper_body", "lower_body", "full_body")
    assert head.category_names == H.DEEPFASHION_CLOTHES_TYPES
    assert head.category("upper_body").keypoints == (
        "collar_left", "collar_right", "sleeve_left", "sleeve_right", "hem_left", "hem_right",
    )  # fmt: skip
    assert head.category("lower_body").keypoints == (
        "waistline_left",
        "waistline_right",
        "hem_left",
        "hem_right",
    )
    assert head.category("full_body").keypoints == head.keypoints
    assert all(c.normaliser is None for c in head.categories)
    assert head.normaliser_indices("upper_body") is None


def test_presets_mix_and_softmax_code_can_separate_them():
    spec = H.get_heads("deepfashion6,deepfashion_landmarks")
    assert [h.name for h in spec][-2:] == ["fit", "deepfashion_landmarks"]
    assert H.softmax_heads(spec) == H.DEEPFASHION6
    assert H.keypoint_heads(spec) == (H.DEEPFASHION_LANDMARKS,)
    assert H.require_softmax(H.DEEPFASHION6, "export") == H.DEEPFASHION6
    with pytest.raises(
        H.HeadSpecError, match=r"not supported by export yet.*deepfashion_landmarks"
    ):
        H.require_softmax(spec, "export")
    # the softmax presets are untouched: consumers of PRESETS see softmax heads only
    assert set(H.PRESETS) == {"deepfashion6", "fashionai8", "deepfashion_category"}
    assert all(isinstance(h, H.Head) for spec in H.PRESETS.values() for h in spec)
    assert H.get_heads([H.FASHIONAI_KEYPOINTS, *H.FASHIONAI8])[0] is H.FASHIONAI_KEYPOINTS
    with pytest.raises(H.HeadSpecError, match="duplicate head names"):
        H.get_heads("fashionai_keypoints,fashionai_keypoints")
    with pytest.raises(H.HeadSpecError, match="fashionai_keypoints, deepfashion_landmarks"):
        H.get_heads("fashionai_keypoint")


def test_softmax_only_attributes_fail_with_a_clear_message():
    head = H.FASHIONAI_KEYPOINTS
    with pytest.raises(AttributeError, match="keypoint head.*not supported by this code path"):
        _ = head.num_classes
    with pytest.raises(AttributeError, match="no 'classes'"):
        _ = head.classes
    assert not hasattr(head, "class_weights")
    hash(head)  # frozen and hashable, like Head


def test_lookup_errors_list_the_valid_names():
    with pytest.raises(KeyError, match="no keypoint 'elbow'.*neckline_left"):
        H.FASHIONAI_KEYPOINTS.index("elbow")
    with pytest.raises(KeyError, match="no category 'shirt'.*blouse"):
        H.FASHIONAI_KEYPOINTS.defined_mask("shirt")


USER_YAML = """\
heads:
  - name: sleeve
    classes: [long, short]
  - name: shoe_keypoints
    type: keypoints
    keypoints: [toe, heel_left, heel_right, lace]
    flip_pairs: [[heel_left, heel_right]]
    categories:
      sneaker: {keypoints: [toe, heel_left, heel_right, lace], normaliser: [heel_left, heel_right]}
      sandal:
        keypoints: [heel_left, heel_right]
    loss_weight: 0.5
"""


def test_user_keypoint_head_loads_from_yaml_and_round_trips(tmp_path):
    path = tmp_path / "shoes.yaml"
    path.write_text(USER_YAML)
    sleeve, shoes = H.get_heads(str(path))
    assert isinstance(sleeve, H.Head) and isinstance(shoes, H.KeypointHead)
    assert shoes.keypoints == ("toe", "heel_left", "heel_right", "lace")
    assert shoes.flip_permutation() == (0, 2, 1, 3)
    assert shoes.category("sneaker").normaliser == ("heel_left", "heel_right")
    assert shoes.category("sandal") == H.KeypointCategory("sandal", ("heel_left", "heel_right"))
    assert shoes.defined_mask("sandal") == (False, True, True, False)
    assert shoes.loss_weight == 0.5
    json_path = tmp_path / "shoes.json"
    json_path.write_text(json.dumps(H.heads_to_dict((sleeve, shoes))))
    assert H.get_heads(str(json_path)) == (sleeve, shoes)
    yaml_path = tmp_path / "back.yaml"
    yaml_path.write_text(yaml.safe_dump(H.heads_to_dict((sleeve, shoes)), sort_keys=False))
    assert H.get_heads(str(yaml_path)) == (sleeve, shoes)


def test_presets_round_trip_and_softmax_dicts_keep_the_old_form():
    spec = (*H.FASHIONAI8, H.FASHIONAI_KEYPOINTS, H.DEEPFASHION_LANDMARKS)
    as_dict = json.loads(json.dumps(H.heads_to_dict(spec)))
    assert H.heads_from_dict(as_dict) == spec
    assert all("type" not in d for d in as_dict["heads"][:8])  # saved models' configs unchanged
    assert as_dict["heads"][8]["type"] == "keypoints"
    old = {"heads": [{"name": "a", "classes": ["x", "y"], "loss_weight": 1.0}]}
    explicit = {"heads": [{"name": "a", "type": "softmax", "classes": ["x", "y"]}]}
    assert H.heads_from_dict(old) == H.heads_from_dict(explicit) == (H.Head("a", ("x", "y")),)


_KP = "heads:\n  - name: kp\n    type: keypoints\n"
_OK_CATS = (
    "    categories:\n      c: {keypoints: [a, b_left, b_right], normaliser: [b_left, b_right]}\n"
)
_OK_KPS = "    keypoints: [a, b_left, b_right]\n"


@pytest.mark.parametrize(
    "body, message",
    [
        (
            "heads:\n  - name: kp\n    type: points\n",
            r"heads\[0\]: type = 'points' is unknown; expected one of \['softmax', 'keypoints'\]",
        ),
        (_KP + _OK_CATS, r"heads\[0\]: missing field 'keypoints' \(keypoint head\)"),
        (_KP + _OK_KPS, r"missing field 'categories'"),
        (_KP + _OK_KPS + _OK_CATS + "    classes: [x, y]\n", r"unknown field\(s\) \['classes'\]"),
        (_KP + "    keypoints: []\n" + _OK_CATS, r"'keypoints' is empty"),
        (_KP + "    keypoints: [a, a]\n" + _OK_CATS, r"'keypoints': duplicate names \['a'\]"),
        (_KP + "    keypoints: [1a]\n" + _OK_CATS, r"keypoints\[0\] = '1a' is invalid"),
        (
            _KP + _OK_KPS + "    flip_pairs: [[b_left, b_middle]]\n" + _OK_CATS,
            r"flip_pairs\[0\] = \['b_left', 'b_middle'\]: \['b_middle'\] not among the keypoints",
        ),
        (
            _KP + _OK_KPS + "    flip_pairs: [[a, a]]\n" + _OK_CATS,
            r"flip_pairs\[0\] = \['a', 'a'\] names the same keypoint twice",
        ),
        (
            _KP + _OK_KPS + "    flip_pairs: [[b_left, b_right], [a, b_right]]\n" + _OK_CATS,
            r"flip_pairs\[1\].*'b_right' is already in flip_pairs\[0\]",
        ),
        (
            _KP + _OK_KPS + "    flip_pairs: [[a, b_left, b_right]]\n" + _OK_CATS,
            r"flip_pairs\[0\] = .* must be a pair of keypoint names",
        ),
        (_KP + _OK_KPS + "    categories: [c]\n", r"'categories' = \['c'\] must be a mapping"),
        (_KP + _OK_KPS + "    categories: {}\n", r"'categories' = \{\} must be a non-empty"),
        (
            _KP + _OK_KPS + "    categories:\n      c: [a]\n",
            r"categories\['c'\] = \['a'\] must be a mapping",
        ),
        (
            _KP + _OK_KPS + "    categories:\n      c: {keypoints: [a, z]}\n",
            r"category 'c': unknown keypoint\(s\) \['z'\]",
        ),
        (
            _KP + _OK_KPS + "    categories:\n      c: {keypoints: [a], normaliser: [a, b_left]}\n",
            r"category 'c': 'normaliser' = \['a', 'b_left'\]: \['b_left'\] not among",
        ),
        (
            _KP + _OK_KPS + "    categories:\n      c: {keypoints: [a, b_left], normaliser: [a]}\n",
            r"category 'c': 'normaliser' = \['a'\] must be a pair",
        ),
        (
            _KP + _OK_KPS + "    flip_pairs: [[b_left, b_right]]\n"
            "    categories:\n      c: {keypoints: [a, b_left]}\n",
            r"category 'c': defines \['b_left'\] but not their flip partners \['b_right'\]",
        ),
        (
            _KP + _OK_KPS + "    categories:\n      c: {keypoints: [a], norm: [a, b]}\n",
            r"category 'c' .*expected fields 'keypoints' \(required\) and 'normaliser'",
        ),
        (_KP + _OK_KPS + _OK_CATS + "    loss_weight: -2\n", r"loss_weight = -2 must be >= 0"),
    ],
)
def test_malformed_keypoint_specs_name_the_file_field_and_fix(tmp_path, body, message):
    path = tmp_path / "kp.yaml"
    path.write_text(body)
    with pytest.raises(H.HeadSpecError, match=message) as err:
        H.get_heads(str(path))
    assert "kp.yaml" in str(err.value)


def test_valid_minimal_keypoint_spec_parses(tmp_path):
    # the base of the malformed cases above is itself valid: each case breaks one thing
    path = tmp_path / "kp.yaml"
    path.write_text(_KP + _OK_KPS + "    flip_pairs: [[b_left, b_right]]\n" + _OK_CATS)
    (head,) = H.get_heads(str(path))
    assert head.flip_permutation() == (0, 2, 1)
    assert head.normaliser_indices("c") == (1, 2)


# --- skeleton ----------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["fashionai_keypoints", "deepfashion_landmarks"])
def test_preset_skeletons_are_valid_and_symmetric_under_flip(preset):
    (head,) = H.get_heads(preset)
    assert head.skeleton, "the preset draws a garment outline"
    edges = {frozenset(e) for e in head.skeleton}
    assert len(edges) == len(head.skeleton)  # no duplicate in either direction
    for a, b in head.skeleton:
        assert a != b and a in head.keypoints and b in head.keypoints
    perm = head.flip_permutation()
    for i, j in head.skeleton_indices():
        mirrored = frozenset((head.keypoints[perm[i]], head.keypoints[perm[j]]))
        assert mirrored in edges, (head.keypoints[i], head.keypoints[j])
    # every category's points are joined: no defined keypoint is left without an edge
    for c in head.categories:
        defined = set(c.keypoints)
        inner = [e for e in head.skeleton if set(e) <= defined]
        assert {k for e in inner for k in e} == defined, c.name


def test_fashionai_skeleton_outlines_each_garment():
    edges = {frozenset(e) for e in H.FASHIONAI_KEYPOINTS.skeleton}
    for a, b in [
        ("neckline_left", "neckline_right"),
        ("center_front", "neckline_right"),
        ("shoulder_left", "cuff_left_out"),
        ("cuff_right_in", "cuff_right_out"),
        ("armpit_left", "waistline_left"),
        ("top_hem_left", "top_hem_right"),
        ("waistband_right", "hemline_right"),
        ("hemline_left", "hemline_right"),
        ("bottom_left_in", "crotch"),
        ("waistband_left", "bottom_left_out"),
    ]:
        assert frozenset((a, b)) in edges, (a, b)
    head = H.FASHIONAI_KEYPOINTS
    assert head.skeleton_indices()[0] == (0, 1)


def test_skeleton_round_trips_through_dict_json_and_yaml(tmp_path):
    head = H.KeypointHead(
        "shoe",
        ("toe", "heel_left", "heel_right"),
        (("heel_left", "heel_right"),),
        {"sneaker": (("toe", "heel_left", "heel_right"), None)},
        skeleton=[["toe", "heel_left"], ("heel_right", "toe")],
    )
    assert head.skeleton == (("toe", "heel_left"), ("heel_right", "toe"))  # tuples, given order
    assert head.skeleton_indices() == ((0, 1), (2, 0))
    d = H.heads_to_dict((head,))
    assert d["heads"][0]["skeleton"] == [["toe", "heel_left"], ["heel_right", "toe"]]
    assert H.heads_from_dict(json.loads(json.dumps(d))) == (head,)
    path = tmp_path / "shoe.yaml"
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    assert H.get_heads(str(path)) == (head,)
    # presets keep their skeleton through the dict form
    spec = (H.FASHIONAI_KEYPOINTS, H.DEEPFASHION_LANDMARKS)
    back = H.heads_from_dict(json.loads(json.dumps(H.heads_to_dict(spec))))
    assert [h.skeleton for h in back] == [h.skeleton for h in spec]


def test_specs_without_skeleton_still_load_and_keep_their_dict_form(tmp_path):
    path = tmp_path / "kp.yaml"
    path.write_text(_KP + _OK_KPS + "    flip_pairs: [[b_left, b_right]]\n" + _OK_CATS)
    (head,) = H.get_heads(str(path))
    assert head.skeleton == ()
    assert "skeleton" not in head.to_dict()
    path.write_text(_KP + _OK_KPS + "    skeleton: null\n" + _OK_CATS)
    assert H.get_heads(str(path))[0].skeleton == ()


@pytest.mark.parametrize(
    "skeleton, message",
    [
        (
            "[[a, z]]",
            r"kp\.yaml: heads\[0\]: keypoint head 'kp': skeleton\[0\] = \['a', 'z'\]: \['z'\] "
            r"not among the keypoints \['a', 'b_left', 'b_right'\]",
        ),
        ("[[a, b_left], [b_left, b_left]]", r"skeleton\[1\] = \['b_left', 'b_left'\] names the "),
        (
            "[[a, b_left], [b_left, b_right], [b_left, a]]",
            r"skeleton\[2\] = \['b_left', 'a'\] is the same edge as skeleton\[0\]",
        ),
        ("[[a, b_left], [a, b_left]]", r"skeleton\[1\] .* same edge as skeleton\[0\]"),
        ("[[a, b_left, b_right]]", r"skeleton\[0\] = .* must be a pair of keypoint names"),
        ("a", r"skeleton = 'a' is not a list of \[a, b\] name pairs"),
        ("{a: b_left}", r"skeleton = \{'a': 'b_left'\} is not a list"),
    ],
)
def test_malformed_skeleton_names_the_edge(tmp_path, skeleton, message):
    path = tmp_path / "kp.yaml"
    path.write_text(_KP + _OK_KPS + f"    skeleton: {skeleton}\n" + _OK_CATS)
    with pytest.raises(H.HeadSpecError, match=message):
        H.get_heads(str(path))
