"""No silent omissions: empty splits are reported (an empty training split is an error naming
its file), and one image written two ways (``./a.jpg``, ``a//b.jpg``) is a duplicate row."""

from __future__ import annotations

import logging
import pathlib
import pickle
import shutil

import pytest
from dataset_helpers import prepare

from fashion_keras_datasets.common.errors import AnnotationError, EmptySplitError, InputError
from fashion_keras_datasets.common.report import format_build_report
from fashion_keras_datasets.custom_csv import custom_csv_dataset_builder as ccb
from fashion_keras_datasets.deepfashion_attributes import (
    deepfashion_attributes_dataset_builder as dfa,
)
from fashion_keras_datasets.deepfashion_category import deepfashion_category_dataset_builder as dfc
from fashion_keras_datasets.fashionai_attributes import fashionai_attributes_dataset_builder as fai
from fashion_keras_datasets.synthetic import demo, dummy_data

CSV_DUMMY = pathlib.Path(ccb.__file__).parent / "dummy_data"


def build(builder_cls, manual_dir, tmp_path, config=None):
    return prepare(builder_cls, manual_dir, tmp_path / "tfds", config=config)


def copy(src, tmp_path) -> pathlib.Path:
    dst = tmp_path / "manual"
    shutil.copytree(src, dst)
    return dst


def rewrite_csv(path, keep=lambda line: True, extra=()) -> None:
    lines = path.read_bytes().decode("utf-8-sig").splitlines()
    lines = [lines[0], *(line for line in lines[1:] if keep(line)), *extra]
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")


# --- empty splits ---------------------------------------------------------------------------


def test_a_header_only_csv_is_an_error_naming_the_file(tmp_path):
    manual = copy(CSV_DUMMY, tmp_path)
    rewrite_csv(manual / "labels.csv", keep=lambda line: False)
    with pytest.raises(FileNotFoundError) as e:
        build(ccb.Builder, manual, tmp_path, "example")
    message = str(e.value)
    assert message.startswith(f"{manual / 'labels.csv'}: train split = ")
    assert "expected at least one" in message and "\n" not in message


def test_a_training_split_of_bad_rows_only_is_an_error_naming_the_file(tmp_path):
    manual = copy(CSV_DUMMY, tmp_path)
    rewrite_csv(manual / "labels.csv", keep=lambda line: False, extra=["images/x.jpg,long,,,,,,train,"])  # fmt: skip
    with pytest.raises(FileNotFoundError) as e:
        build(ccb.Builder, manual, tmp_path, "example_skip_bad_rows")
    assert str(e.value).startswith(f"{manual / 'labels.csv'}: train split = '0 of 1 rows kept'")
    assert "bad_row:unknown_class" in str(e.value)


@pytest.mark.parametrize("config", ["example_skip_bad_rows", "example"])
def test_a_missing_image_in_a_one_row_split_empties_it_reported_not_fatal(tmp_path, caplog, config):
    manual = copy(CSV_DUMMY, tmp_path)
    # the test split keeps one row, whose image is gone
    rewrite_csv(manual / "labels.csv", keep=lambda line: not line.startswith("images/Sub Folder"))
    (manual / "images" / "jacket_002.jpg").unlink()
    with caplog.at_level(logging.INFO):
        builder = build(ccb.Builder, manual, tmp_path, config)
    assert set(builder.info.splits) == {"train", "val"}
    report = builder.report
    assert report["empty_splits"] == ["test"]
    assert report["splits"]["test"]["kept"] == 0
    assert report["splits"]["test"]["skipped"] == {"missing_image": 1}
    assert report["rows_in"] == report["rows_written"] + report["rows_reported"]
    line = next(
        r.getMessage() for r in caplog.records if "custom_csv/test: empty" in r.getMessage()
    )
    assert "missing_image" in line and "not written" in line
    assert "empty split: test" in format_build_report(report)


def test_an_empty_val_file_is_reported_not_an_assertion(tmp_path):
    manual = tmp_path / "demo"
    demo.generate_demo(manual, 3, 2, 0, seed=1, max_side=48)
    for name in ("val", "val_attr", "val_cate", "val_bbox"):
        (manual / "Anno_fine" / f"{name}.txt").write_text("")
    builder = build(dfa.Builder, manual, tmp_path)
    assert set(builder.info.splits) == {"train"}
    assert builder.report["empty_splits"] == ["val"]


# --- one image, two spellings ---------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["./images/shirt_001.jpg", "images//shirt_001.jpg", "images/./shirt_001.jpg"])  # fmt: skip
def test_custom_csv_same_image_spelled_twice_is_a_duplicate_row(tmp_path, spelling):
    manual = copy(CSV_DUMMY, tmp_path)
    rewrite_csv(manual / "labels.csv", extra=[f"{spelling},,,,,,,train,"])
    with pytest.raises(AnnotationError) as e:
        build(ccb.Builder, manual, tmp_path, "example")
    assert str(e.value).startswith(f"{manual / 'labels.csv'}:16: image = {spelling!r}: expected")
    assert e.value.reason == "duplicate_row" and "also line 2" in str(e.value)


def test_custom_csv_duplicate_spellings_are_counted_with_skip_bad_rows(tmp_path):
    manual = copy(CSV_DUMMY, tmp_path)
    # no split column value: both spellings must hash to the same split to meet
    extra = ["./images/tee_001.jpg,,,,,,,,", "images//tee_001.jpg,,,,,,,,"]
    rewrite_csv(manual / "labels.csv", extra=extra)
    builder = build(ccb.Builder, manual, tmp_path, "example_skip_bad_rows")
    report = builder.report
    skipped = {r: n for s in report["splits"].values() for r, n in s["skipped"].items()}
    assert skipped.get("bad_row:duplicate_row") == 2
    written = {s: builder.info.splits[s].num_examples for s in builder.info.splits}
    assert written == dummy_data.CUSTOM_CSV_SPLITS
    assert report["rows_in"] == report["rows_written"] + report["rows_reported"]


def test_fashionai_same_image_spelled_twice_is_a_duplicate_row(tmp_path):
    manual = copy(pathlib.Path(fai.__file__).parent / "dummy_data", tmp_path)
    path = manual / "base" / "Annotations" / "label.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, "./" + lines[2]]) + "\n")
    with pytest.raises(AnnotationError, match=rf"label\.csv:{len(lines) + 1}: .*also line 3"):
        build(fai.Builder, manual, tmp_path, "m_ignore")


def test_deepfashion_category_same_image_spelled_twice_is_a_duplicate_row(tmp_path):
    manual = copy(pathlib.Path(dfc.__file__).parent / "dummy_data", tmp_path)
    path = manual / "Eval" / "list_eval_partition.txt"
    lines = path.read_text().splitlines()
    first = lines[2].split()[0]
    lines[3] = f"{first.replace('/', '//', 1)} train"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(AnnotationError, match=r"list_eval_partition\.txt:4: image_name = .*also line 3"):  # fmt: skip
        build(dfc.Builder, manual, tmp_path, "category")


def test_deepfashion_attributes_same_image_spelled_twice_is_a_duplicate_row(tmp_path):
    manual = tmp_path / "demo"
    demo.generate_demo(manual, 3, 2, 0, seed=1, max_side=48)
    path = manual / "Anno_fine" / "train.txt"
    lines = path.read_text().splitlines()
    lines[1] = "./" + lines[0]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(AnnotationError, match=r"train\.txt:2: image path = .*also line 1"):
        build(dfa.Builder, manual, tmp_path)


def test_empty_split_error_pickles_with_its_fields():
    error = EmptySplitError(["a/train.txt"], "train", 3, {"missing_image": 3}, "check img/")
    again = pickle.loads(pickle.dumps(error))
    assert str(again) == str(error) and isinstance(again, (InputError, FileNotFoundError))
    assert str(error) == (
        "a/train.txt: train split = '0 of 3 rows kept': expected at least one usable row "
        "(all 3 rows were skipped: missing_image: 3; check img/)"
    )
