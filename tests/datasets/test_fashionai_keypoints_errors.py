"""fashionai_keypoints: the dummy releases built, every bad input named or counted, the report.

The fixture is the builder's dummy_data/ (three releases, see
``fashion_keras_datasets.fashionai_keypoints.make_dummy_data``); tests that corrupt it work on a
private copy.
"""

from __future__ import annotations

import os
import pathlib
import shutil

import numpy as np
import pytest
from dataset_helpers import examples, prepare

from fashion_keras.heads import FASHIONAI_KEYPOINTS
from fashion_keras_datasets.common.errors import AnnotationError, MissingFilesError
from fashion_keras_datasets.fashionai_keypoints import fashionai_keypoints_dataset_builder as fkp
from fashion_keras_datasets.fashionai_keypoints import make_dummy_data as dummy

DUMMY = pathlib.Path(fkp.__file__).parent / "dummy_data"
TRAIN1 = "train1/Annotations/annotations.csv"


def build(manual_dir, tmp_path, config="default") -> fkp.Builder:
    return prepare(fkp.Builder, manual_dir, tmp_path / "tfds", config=config)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build(DUMMY, tmp_path_factory.mktemp("fkp"))


@pytest.fixture
def manual(tmp_path):
    dst = tmp_path / "manual"
    shutil.copytree(DUMMY, dst)
    return dst


def row_line(category: str = "blouse", image: str = "Images/blouse/bad.jpg", **cells: str) -> str:
    """A labelled csv row: every keypoint ``category`` defines at 5_5_1, the others absent,
    then the ``cells`` given by keypoint name."""
    known = category in fkp.CATEGORIES
    defined = FASHIONAI_KEYPOINTS.defined_mask(category) if known else (False,) * 24
    values = {k: "5_5_1" if d else "-1_-1_-1" for k, d in zip(fkp.KEYPOINTS, defined, strict=True)}
    values.update(cells)
    return ",".join([image, category, *values.values()])


def insert_line(path: pathlib.Path, text: str, line: int = 4) -> None:
    lines = path.read_text().splitlines()
    lines.insert(line - 1, text)
    path.write_text("\n".join(lines) + "\n")


# --- the dummy releases, built ---------------------------------------------------------------


def test_report_counts_add_up_and_name_every_skip(built):
    report = built.report
    assert {os.path.relpath(f, DUMMY): n for f, n in report["files"].items()} == {
        TRAIN1: 8,
        "train2/Annotations/train.csv": 3,
        "test/Tests/test.csv": 3,
    }
    written = {s: built.info.splits[s].num_examples for s in built.info.splits}
    assert written == dummy.SPLITS
    assert report["rows_in"] == 14 == report["rows_written"] + report["rows_reported"]
    splits = report["splits"]
    assert splits["train"]["skipped"] == {"keypoint_outside_image": 1, "missing_image": 1}
    assert splits["train"]["adjusted"] == {"reencoded_to_jpeg": 2}
    assert splits["val"]["skipped"] == {"duplicate_across_splits": 1}
    assert splits["test"]["skipped"] == {"duplicate_across_splits": 1}
    (outside,) = splits["train"]["examples"]["keypoint_outside_image"]
    first = fkp.KEYPOINTS[FASHIONAI_KEYPOINTS.defined_mask("skirt").index(True)]
    assert outside == f"{DUMMY / TRAIN1}:8: {first} at x=41, y=24 vs image 36x48"
    assert splits["train"]["heads"]["category"]["classes"] == {
        "blouse": 1,
        "outwear": 2,
        "trousers": 0,
        "skirt": 1,
        "dress": 2,
    }
    assert built.info.metadata["keypoint_heads"] == {
        "fashionai_keypoints": list(FASHIONAI_KEYPOINTS.keypoints)
    }


def test_keypoints_visibility_and_defined_masks_follow_the_csv_and_taxonomy(built):
    seen = set()
    for split in ("train", "val"):
        for name, ex in examples(built, split).items():
            i = next(i for i in range(len(dummy.ROWS)) if name.endswith(dummy.image_id(i)))
            category = dummy.ROWS[i][1]
            assert fkp.CATEGORIES[ex["labels"]["category"]] == category
            kp_category = ex["keypoint_categories"]["fashionai_keypoints"]
            assert FASHIONAI_KEYPOINTS.category_names[kp_category] == category
            defined = np.array(FASHIONAI_KEYPOINTS.defined_mask(category))
            np.testing.assert_array_equal(ex["defined"], defined)
            cells = [tuple(int(p) for p in c.split("_")) for c in dummy.cells(i)]
            points = ex["keypoints"]["fashionai_keypoints"]
            np.testing.assert_array_equal(points, cells)  # (x, y, v) rows
            absent = points[:, 2] == -1
            assert (points[absent] == -1).all() and absent[~defined].all()
            assert ex["labelled"] and points.dtype == np.float32
            assert (ex["image/width"], ex["image/height"]) == (36, 48)
            seen.add(category)
            seen.update({int(v) for v in points[:, 2]})
    assert seen == set(fkp.CATEGORIES) | {-1, 0, 1}


def test_test_split_has_categories_and_no_keypoints(built):
    exs = examples(built, "test")
    assert len(exs) == dummy.SPLITS["test"]
    for name, ex in exs.items():
        assert name.startswith("test/Images/") and ex["release"] == b"test"
        category = fkp.CATEGORIES[ex["labels"]["category"]]
        assert f"/{category}/" in name and not ex["labelled"]
        assert (ex["keypoints"]["fashionai_keypoints"] == -1).all()
        np.testing.assert_array_equal(ex["defined"], FASHIONAI_KEYPOINTS.defined_mask(category))


# --- bad input: stops the build with file:line: field = 'value': expected ... --------------------


BAD_ROWS = {
    # id: (row inserted as line 4 of train1's annotations.csv, field, value, reason)
    "cell_not_x_y_v": (
        row_line(shoulder_left="12-30-1"),
        "shoulder_left (column 6)",
        "'12-30-1'",
        "bad_keypoint_cell",
    ),
    "cell_two_parts": (
        row_line(neckline_left="12_30"),
        "neckline_left (column 3)",
        "'12_30'",
        "bad_keypoint_cell",
    ),
    "absent_with_coordinates": (
        row_line(armpit_left="12_30_-1"),
        "armpit_left (column 8)",
        "'12_30_-1'",
        "bad_keypoint_cell",
    ),
    "visibility_2": (
        row_line(armpit_right="12_30_2"),
        "armpit_right (column 9)",
        "'12_30_2'",
        "bad_visibility",
    ),
    "point_for_undefined_keypoint": (
        row_line("trousers", "Images/trousers/bad.jpg", neckline_left="10_10_1"),
        "neckline_left (column 3)",
        "'10_10_1'",
        "undefined_keypoint",
    ),
    "unknown_category": (
        row_line("hat", "Images/hat/bad.jpg"),
        "image_category",
        "'hat'",
        "unknown_category",
    ),
    "wrong_column_count": (
        "Images/blouse/bad.jpg,blouse,5_5_1",
        "number of columns",
        "3",
        "wrong_column_count",
    ),
    "path_escapes_root": (
        row_line(image="../../etc/passwd"),
        "image_id",
        "'../../etc/passwd'",
        "path_outside_root",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_bad_row_stops_the_build_naming_file_line_field_value(manual, tmp_path, case):
    text, field, value, _ = BAD_ROWS[case]
    path = manual / TRAIN1
    insert_line(path, text)
    with pytest.raises(AnnotationError) as e:
        build(manual, tmp_path)
    message = str(e.value)
    assert message.startswith(f"{path}:4: {field} = {value}: expected "), message
    assert "\n" not in message
    assert not (tmp_path / "tfds" / "fashionai_keypoints" / "default" / "1.0.0").exists()


def test_undefined_keypoint_message_names_the_category_and_what_it_defines(manual, tmp_path):
    insert_line(manual / TRAIN1, BAD_ROWS["point_for_undefined_keypoint"][0])
    with pytest.raises(AnnotationError, match="category 'trousers' does not define") as e:
        build(manual, tmp_path)
    assert str(list(FASHIONAI_KEYPOINTS.category("trousers").keypoints)) in str(e.value)


def test_duplicate_image_in_a_release_is_a_bad_row(manual, tmp_path):
    path = manual / "train2/Annotations/train.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, lines[1]]) + "\n")
    with pytest.raises(AnnotationError, match=r"train\.csv:5: image_id = .*also .*train\.csv:2"):
        build(manual, tmp_path)


@pytest.mark.parametrize("config", ["default", "default_skip_bad_rows"])
def test_header_out_of_taxonomy_order_always_stops_the_build(manual, tmp_path, config):
    path = manual / TRAIN1
    lines = path.read_text().splitlines()
    names = lines[0].split(",")
    names[5], names[6] = names[6], names[5]  # shoulder_left <-> shoulder_right
    path.write_text("\n".join([",".join(names), *lines[1:]]) + "\n")
    with pytest.raises(AnnotationError) as e:
        build(manual, tmp_path, config)
    assert str(e.value).startswith(
        f"{path}:1: header column 6 = 'shoulder_right': expected 'shoulder_left' "
    ), str(e.value)


def test_test_list_header_and_rows_are_checked(manual, tmp_path):
    path = manual / "test/Tests/test.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(["image_id,category", *lines[1:]]) + "\n")
    with pytest.raises(AnnotationError, match=r"test\.csv:1: header column 2 = 'category'"):
        build(manual, tmp_path)
    path.write_text("\n".join([*lines, lines[1] + ",5_5_1"]) + "\n")
    with pytest.raises(AnnotationError, match=r"test\.csv:5: number of columns = 3: expected 2 "):
        build(manual, tmp_path)


def test_skip_bad_rows_counts_every_bad_row_and_the_counts_add_up(manual, tmp_path):
    path = manual / TRAIN1
    for n, case in enumerate(sorted(BAD_ROWS)):
        text = BAD_ROWS[case][0].replace("bad.jpg", f"bad{n}.jpg")
        insert_line(path, text, line=2)
    test_list = manual / "test/Tests/test.csv"
    test_list.write_text(test_list.read_text() + "Images/hat/x.jpg,hat\n")
    builder = build(manual, tmp_path, "default_skip_bad_rows")
    report = builder.report
    assert builder.builder_config.skip_bad_rows
    assert report["rows_in"] == 14 + len(BAD_ROWS) + 1
    assert report["rows_in"] == report["rows_written"] + report["rows_reported"]
    assert {s: builder.info.splits[s].num_examples for s in builder.info.splits} == dummy.SPLITS
    skipped: dict[str, int] = {}
    for split in report["splits"].values():
        for reason, n in split["skipped"].items():
            if reason.startswith("bad_row:"):
                skipped[reason] = skipped.get(reason, 0) + n
    assert skipped == {
        "bad_row:bad_keypoint_cell": 3,
        "bad_row:bad_visibility": 1,
        "bad_row:undefined_keypoint": 1,
        "bad_row:unknown_category": 2,  # one in the test list
        "bad_row:wrong_column_count": 1,
        "bad_row:path_outside_root": 1,
    }
    assert report["splits"]["test"]["skipped"]["bad_row:unknown_category"] == 1


def test_missing_labelled_file_lists_the_expected_layout(tmp_path):
    (tmp_path / "manual" / "test" / "Tests").mkdir(parents=True)
    with pytest.raises(MissingFilesError) as e:
        build(tmp_path / "manual", tmp_path)
    message = str(e.value)
    assert "<release>/Annotations/annotations.csv or Annotations/train.csv" in message
    assert "Tests/test.csv" in message
    assert ", ".join(fkp.KEYPOINTS) in " ".join(message.split())  # the header to write


def test_a_single_release_may_sit_directly_in_the_manual_folder(tmp_path):
    shutil.copytree(DUMMY / "train2", tmp_path / "manual")
    builder = build(tmp_path / "manual", tmp_path)
    assert fkp.find_releases(tmp_path / "manual") == ["."]
    names = set(examples(builder, "train")) | set(examples(builder, "val"))
    assert len(names) == 3 and all(n.startswith("Images/") for n in names)
    assert "test" not in builder.info.splits


def test_val_percent_config(tmp_path):
    with pytest.raises(ValueError, match=r"val_percent = 100: expected an integer in \[0, 100\)"):
        fkp.KeypointsConfig(name="x", val_percent=100)
    config = fkp.KeypointsConfig(name="all_train", val_percent=0)
    builder = prepare(fkp.Builder, DUMMY, tmp_path / "tfds", config=config)
    assert set(builder.info.splits) == {"train", "test"}
    # the 2 val rows join train, and so does the train2 copy of a train1 image (same split)
    assert builder.info.splits["train"].num_examples == 6 + 2 + 1


def test_dummy_data_is_what_the_writer_writes(tmp_path):
    dummy.write(str(tmp_path / "fresh"))

    def files(root):
        return {
            str(p.relative_to(root)): p.read_bytes()
            for p in pathlib.Path(root).rglob("*")
            if p.is_file()
        }

    assert files(tmp_path / "fresh") == files(DUMMY)


def test_a_release_at_the_root_keeps_its_tests_folder(tmp_path):
    """Tests/test.csv of a release at the root is that release's test list, not a release
    of its own called Tests (whose image paths would not resolve)."""
    from etils import epath

    from fashion_keras_datasets.fashionai_keypoints.fashionai_keypoints_dataset_builder import (
        find_releases,
    )

    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "train.csv").write_text("x\n")
    (tmp_path / "Tests").mkdir()
    (tmp_path / "Tests" / "test.csv").write_text("x\n")
    assert find_releases(epath.Path(tmp_path)) == ["."]
    (tmp_path / "round2").mkdir()
    (tmp_path / "round2" / "test.csv").write_text("x\n")
    assert find_releases(epath.Path(tmp_path)) == [".", "round2"]
