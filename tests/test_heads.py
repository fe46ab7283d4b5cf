import json

import pytest

from fashion_keras import heads as H


def test_deepfashion6_preset_matches_anno_fine_and_challenge_weights():
    spec = H.get_heads("deepfashion6")
    assert [h.name for h in spec] == ["texture", "sleeve", "length", "neckline", "fabric", "fit"]
    assert [h.num_classes for h in spec] == [7, 3, 3, 4, 6, 3]
    assert sum(h.num_classes for h in spec) == 26
    assert [h.loss_weight for h in spec] == [0.95, 0.85, 0.85, 0.9, 1.0, 0.9]
    assert spec[0].classes[-1] == "lattice"
    assert spec[3].index("no_neckline") == 3


def test_fashionai8_preset():
    spec = H.get_heads("fashionai8")
    assert len(spec) == 8
    assert sum(h.num_classes for h in spec) == 54
    assert all(h.classes[0] == "Invisible" for h in spec)
    by_name = {h.name: h for h in spec}
    assert by_name["sleeve_length_labels"].classes[-1] == "Extra Long Sleeves"
    assert by_name["coat_length_labels"].classes[7] == "Ankle&Floor Length"
    assert by_name["neckline_design_labels"].num_classes == 10


def test_deepfashion_category_preset_uses_file_order():
    (head,) = H.get_heads("deepfashion_category")
    assert head.num_classes == 50
    # 1-based ids in list_category_cloth.txt: id 1 = index 0
    assert head.classes[0] == "Anorak"
    assert head.classes[41 - 1] == "Dress"
    assert head.classes[50 - 1] == "Sundress"
    assert H.DEEPFASHION_CATEGORY_TYPES.count(1) == 20
    assert H.DEEPFASHION_CATEGORY_TYPES.count(3) == 14


def test_combined_presets_and_unknown_name():
    spec = H.get_heads("fashionai8,deepfashion6")
    assert len(spec) == 14
    with pytest.raises(H.HeadSpecError, match="unknown heads 'deepfashion7'"):
        H.get_heads("deepfashion7")
    with pytest.raises(H.HeadSpecError, match="duplicate head names"):
        H.get_heads("deepfashion6,deepfashion6")


def test_yaml_and_json_files_round_trip(tmp_path):
    yaml_path = tmp_path / "shop.yaml"
    yaml_path.write_text(
        "heads:\n"
        "  - name: collar\n"
        "    classes: [none, shirt, mandarin]\n"
        "    loss_weight: 0.5\n"
        "  - name: colour\n"
        "    classes: [red, blue]\n"
    )
    spec = H.get_heads(str(yaml_path))
    assert spec == (
        H.Head("collar", ("none", "shirt", "mandarin"), 0.5),
        H.Head("colour", ("red", "blue"), 1.0),
    )
    json_path = tmp_path / "shop.json"
    json_path.write_text(json.dumps(H.heads_to_dict(spec)))
    assert H.get_heads(str(json_path)) == spec


@pytest.mark.parametrize(
    "body, message",
    [
        ("heads:\n  - name: a\n", r"heads\[0\]: missing field 'classes'"),
        ("heads:\n  - classes: [x, y]\n", r"heads\[0\]: missing field 'name'"),
        ("heads:\n  - name: a\n    classes: x\n", r"field 'classes' = 'x' is not a list"),
        ("heads:\n  - name: a\n    classes: [x]\n", r"'classes' has 1 entries"),
        ("heads:\n  - name: a\n    classes: [x, x]\n", r"duplicate class names \['x'\]"),
        (
            "heads:\n  - name: a\n    classes: [x, y]\n    loss_weight: heavy\n",
            r"loss_weight = 'heavy' is not a number",
        ),
        (
            "heads:\n  - name: a\n    classes: [x, y]\n    loss_weight: -1\n",
            r"loss_weight = -1 must be >= 0",
        ),
        ("heads:\n  - name: 2a\n    classes: [x, y]\n", r"head name '2a' is invalid"),
        (
            "heads:\n  - name: a\n    classes: [x, y]\n    weight: 1\n",
            r"unknown field\(s\) \['weight'\]",
        ),
        ("head: []\n", r"unknown top-level field\(s\) \['head'\]"),
        ("heads: []\n", r"'heads' must be a non-empty list"),
        ("heads:\n  - name: a\n   classes: [x, y]\n", r"shop.yaml:3: invalid YAML"),
    ],
)
def test_malformed_spec_errors_name_the_file_and_field(tmp_path, body, message):
    path = tmp_path / "shop.yaml"
    path.write_text(body)
    with pytest.raises(H.HeadSpecError, match=message) as err:
        H.get_heads(str(path))
    assert "shop.yaml" in str(err.value)


def test_invalid_json_reports_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"heads": [\n  {"name": "a",, }\n]}')
    with pytest.raises(H.HeadSpecError, match=r"bad.json:2: invalid JSON"):
        H.get_heads(str(path))


def test_missing_file():
    with pytest.raises(H.HeadSpecError, match="cannot read heads file 'nope.yaml'"):
        H.get_heads("nope.yaml")


def test_class_index_error_lists_valid_names():
    with pytest.raises(KeyError, match="no class 'elbow'.*long_sleeve"):
        H.DEEPFASHION6[1].index("elbow")
