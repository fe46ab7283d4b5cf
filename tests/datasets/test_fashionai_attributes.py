"""fashionai_attributes: releases, soft targets and m masks, test split, every bad input, report.

The fixture is the builder's dummy_data/ (three releases with awkward images, see
``fashion_keras_datasets.synthetic.dummy_data``); tests that corrupt it work on a private copy.
"""

from __future__ import annotations

import os
import pathlib
import shutil

import numpy as np
import pytest
from dataset_helpers import examples, prepare

from fashion_keras.heads import FASHIONAI8
from fashion_keras_datasets.common.errors import AnnotationError, MissingFilesError
from fashion_keras_datasets.fashionai_attributes import fashionai_attributes_dataset_builder as fai
from fashion_keras_datasets.synthetic import dummy_data

DUMMY = pathlib.Path(fai.__file__).parent / "dummy_data"
ROWS = dummy_data.FASHIONAI_ROWS
HEADS = {h.name: h for h in FASHIONAI8}


def build(manual_dir, tmp_path, config="m_ignore") -> fai.Builder:
    return prepare(fai.Builder, manual_dir, tmp_path / "tfds", config=config)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Both configs built once from dummy_data/."""
    tmp = tmp_path_factory.mktemp("fai")
    return {c: build(DUMMY, tmp, c) for c in ("m_ignore", "m_half")}


@pytest.fixture
def manual(tmp_path):
    dst = tmp_path / "manual"
    shutil.copytree(DUMMY, dst)
    return dst


def csv_lines(path) -> list[str]:
    return path.read_text().splitlines()


def label_csv(manual, release="base"):
    return manual / release / "Annotations" / "label.csv"


def line_of(manual, row_index: int) -> tuple[str, str]:
    """(release-relative path, task) of FASHIONAI_ROWS[row_index] as written in its csv."""
    release, task = ROWS[row_index][0], ROWS[row_index][1]
    name = "Tests/question.csv" if ROWS[row_index][2] == "?" else "Annotations/label.csv"
    rows = [r for r in ROWS if r[0] == release and (r[2] == "?") == (name[0] == "T")]
    line = csv_lines(manual / release / name)[rows.index(ROWS[row_index])]
    return line.split(",")[0], task


# --- the dummy release, built ----------------------------------------------------------------


def test_report_counts_add_up_and_name_every_skip(built):
    builder = built["m_ignore"]
    report = builder.report
    assert {os.path.relpath(f, DUMMY): n for f, n in report["files"].items()} == {
        "base/Annotations/label.csv": 18,
        "web/Annotations/label.csv": 4,
        "rank/Tests/question.csv": 4,
    }
    written = {s: builder.info.splits[s].num_examples for s in builder.info.splits}
    assert written == dummy_data.FASHIONAI_SPLITS
    assert report["rows_in"] == 26 == report["rows_written"] + report["rows_reported"]
    assert report["rows_written"] == sum(written.values())
    splits = report["splits"]
    assert splits["train"]["skipped"] == {
        "empty_image": 1,
        "image_too_large": 1,
        "image_too_small": 1,
        "missing_image": 1,
        "unreadable_image": 1,
    }
    assert splits["train"]["adjusted"] == {"reencoded_to_jpeg": 7}
    assert splits["val"]["skipped"] == {"duplicate_across_splits": 1}
    assert splits["test"]["skipped"] == {"duplicate_across_splits": 1}
    base = os.path.join(DUMMY, "base", "Annotations", "label.csv")
    assert splits["train"]["examples"]["missing_image"][0].startswith(f"{base}:14: ")
    assert splits["train"]["examples"]["image_too_small"][0].startswith(f"{base}:12: 1x1")
    # per head: labelled rows and classes; every task has training rows
    heads = splits["train"]["heads"]
    assert set(heads) == set(HEADS)
    assert all(h["labelled"] >= 1 for h in heads.values())
    assert heads["coat_length_labels"]["classes"]["Micro Length"] == 1
    assert sum(h["labelled"] for h in heads.values()) == written["train"]
    # stored with the dataset
    reloaded = fai.Builder(data_dir=builder.data_dir.split("/fashionai_attributes")[0])
    assert reloaded.info.metadata["report"] == report


def test_every_example_labels_its_task_only(built):
    for split in ("train", "val"):
        for name, ex in examples(built["m_ignore"], split).items():
            task = fai.TASKS[ex["task"]]
            labelled = [t for t in fai.TASKS if ex["labelled"][t]]
            assert labelled == [task], name
            for t in fai.TASKS:
                if t == task:
                    assert ex["labels"][t] >= 0
                    assert ex["soft_labels"][t].sum() == pytest.approx(1.0)
                else:
                    assert ex["labels"][t] == -1 and not ex["soft_labels"][t].any()
                    assert not ex["m_mask"][t].any()


def test_soft_targets_follow_the_m_policy(built):
    path, task = line_of(DUMMY, 1)  # "nnnmynnn"
    name = f"base/{path}"
    ignore = examples(built["m_ignore"], "train")[name]
    half = examples(built["m_half"], "train")[name]
    assert ignore["labels"][task] == half["labels"][task] == 4
    np.testing.assert_array_equal(ignore["m_mask"][task], [0, 0, 0, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(half["m_mask"][task], ignore["m_mask"][task])
    np.testing.assert_allclose(ignore["soft_labels"][task], np.eye(8)[4])
    np.testing.assert_allclose(half["soft_labels"][task], [0, 0, 0, 1 / 3, 2 / 3, 0, 0, 0])
    assert fai.soft_target(5, 1, (0, 2, 3), 0.5).tolist() == pytest.approx([0.2, 0.4, 0.2, 0.2, 0])
    with pytest.raises(ValueError, match=r"m_weight = 1\.0: expected a number in \[0, 1\)"):
        fai.FashionAIConfig(name="x", m_weight=1.0)


def test_test_split_comes_from_question_csv_without_labels(built):
    exs = examples(built["m_half"], "test")
    assert len(exs) == dummy_data.FASHIONAI_SPLITS["test"]
    for ex in exs.values():
        assert ex["release"] == b"rank"
        assert all(ex["labels"][t] == -1 and not ex["labelled"][t] for t in fai.TASKS)
        assert all(not ex["soft_labels"][t].any() for t in fai.TASKS)
    assert {fai.TASKS[ex["task"]] for ex in exs.values()} == {
        "coat_length_labels",
        "collar_design_labels",
        "neckline_design_labels",
    }


def test_duplicate_images_are_kept_out_of_val_and_test(built):
    train = examples(built["m_ignore"], "train")
    val = examples(built["m_ignore"], "val")
    test = examples(built["m_ignore"], "test")
    dup_val = "web/" + line_of(DUMMY, 18)[0]
    dup_test = "rank/" + line_of(DUMMY, 24)[0]
    assert dup_val not in val and dup_test not in test
    assert os.path.exists(os.path.join(DUMMY, dup_val))
    originals = {train[n]["image"] for n in train}
    assert open(os.path.join(DUMMY, dup_val), "rb").read() in originals
    report = built["m_ignore"].report["splits"]
    (example,) = report["val"]["examples"]["duplicate_across_splits"]
    assert "web/Annotations/label.csv:1:" in example and "base/Annotations/label.csv:1" in example


def test_images_stored_as_jpeg_grayscale_kept_byte_for_byte(built):
    train, val = examples(built["m_ignore"], "train"), examples(built["m_ignore"], "val")
    gray = "base/" + line_of(DUMMY, 5)[0]
    assert val[gray]["image"] == open(os.path.join(DUMMY, gray), "rb").read()
    for ex in list(train.values()) + list(val.values()):
        assert ex["image"][:2] == b"\xff\xd8"
        np.testing.assert_allclose(ex["bbox"], [0, 0, 1, 1])


# --- bad input: stops the build, names file, line, field and value -----------------------------


BAD_ROWS = {
    # id: (row appended to base/Annotations/label.csv, field, value, reason)
    "wrong_column_count": (
        "Images/coat_length_labels/x.jpg,coat_length_labels",
        "number of columns",
        "2",
        "wrong_column_count",
    ),
    "four_columns": (
        "Images/coat_length_labels/x.jpg,coat_length_labels,nnynnnnn,extra",
        "number of columns",
        "4",
        "wrong_column_count",
    ),
    "unknown_task": (
        "Images/hat_labels/x.jpg,hat_labels,nyn",
        "task",
        "'hat_labels'",
        "unknown_task",
    ),
    "label_too_short": (
        "Images/coat_length_labels/x.jpg,coat_length_labels,nny",
        "label_string",
        "'nny'",
        "label_length",
    ),
    "zero_y": (
        "Images/collar_design_labels/x.jpg,collar_design_labels,nnmnn",
        "label_string",
        "'nnmnn'",
        "label_y_count",
    ),
    "two_y": (
        "Images/collar_design_labels/x.jpg,collar_design_labels,nynyn",
        "label_string",
        "'nynyn'",
        "label_y_count",
    ),
    "bad_characters": (
        "Images/collar_design_labels/x.jpg,collar_design_labels,nyn?n",
        "label_string",
        "'nyn?n'",
        "label_characters",
    ),
    "path_escapes_root": (
        "../../etc/passwd,collar_design_labels,nynnn",
        "image_path",
        "'../../etc/passwd'",
        "path_outside_root",
    ),
    "absolute_path": (
        "/etc/passwd,collar_design_labels,nynnn",
        "image_path",
        "'/etc/passwd'",
        "path_outside_root",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_bad_row_stops_the_build_naming_file_line_field_value(manual, tmp_path, case):
    text, field, value, _ = BAD_ROWS[case]
    path = label_csv(manual)
    lines = csv_lines(path)
    lines.insert(3, text)  # line 4
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(AnnotationError) as e:
        build(manual, tmp_path)
    assert str(e.value).startswith(f"{path}:4: {field} = {value}: expected"), str(e.value)
    assert not (tmp_path / "tfds" / "fashionai_attributes" / "m_ignore" / "1.0.0").exists()


def test_duplicate_row_and_question_with_a_label_are_errors(manual, tmp_path):
    path = label_csv(manual)
    path.write_text(path.read_text() + csv_lines(path)[2] + "\n")
    with pytest.raises(AnnotationError, match=r"label\.csv:19: .*also line 3"):
        build(manual, tmp_path)
    shutil.copy(os.path.join(DUMMY, "base/Annotations/label.csv"), path)
    question = manual / "rank" / "Tests" / "question.csv"
    lines = csv_lines(question)
    lines[1] = lines[1].rsplit(",", 1)[0] + ",nynnn"
    question.write_text("\n".join(lines) + "\n")
    with pytest.raises(AnnotationError, match=r"question\.csv:2: answer = 'nynnn'"):
        build(manual, tmp_path)


def test_skip_bad_rows_skips_every_bad_row_and_the_counts_add_up(manual, tmp_path):
    path = label_csv(manual)
    bad = [BAD_ROWS[c][0] for c in sorted(BAD_ROWS)] + [csv_lines(path)[0], ""]
    path.write_text(path.read_text() + "\n".join(bad) + "\n" + csv_lines(path)[1] + "\n")
    question = manual / "rank" / "Tests" / "question.csv"
    question.write_text(question.read_text() + "Images/x/y.jpg,coat_length_labels,nny\n")
    builder = build(manual, tmp_path, "m_ignore_skip_bad_rows")
    report = builder.report
    assert builder.builder_config.skip_bad_rows
    extra = len(bad) + 1 + 1  # + a last duplicate row, + the bad question
    assert report["rows_in"] == 26 + extra
    assert report["rows_in"] == report["rows_written"] + report["rows_reported"]
    assert report["rows_written"] == sum(dummy_data.FASHIONAI_SPLITS.values())
    skipped: dict[str, int] = {}
    for split in report["splits"].values():
        for reason, n in split["skipped"].items():
            if reason.startswith("bad_row:"):
                skipped[reason] = skipped.get(reason, 0) + n
    assert skipped == {
        "bad_row:wrong_column_count": 3,  # two bad rows and the blank line
        "bad_row:unknown_task": 1,
        "bad_row:label_length": 1,
        "bad_row:label_y_count": 2,
        "bad_row:label_characters": 1,
        "bad_row:path_outside_root": 2,
        "bad_row:duplicate_row": 2,
        "bad_row:not_a_question": 1,
    }
    assert report["splits"]["test"]["skipped"]["bad_row:not_a_question"] == 1


def test_missing_label_csv_lists_the_expected_layout(tmp_path):
    (tmp_path / "manual" / "rank" / "Tests").mkdir(parents=True)
    with pytest.raises(MissingFilesError) as e:
        build(tmp_path / "manual", tmp_path)
    assert "<release>/Annotations/label.csv" in str(e.value)
    assert "Tests/question.csv" in str(e.value) and "label_string" in str(e.value)


def test_a_single_release_may_sit_directly_in_the_manual_folder(tmp_path):
    shutil.copytree(os.path.join(DUMMY, "web"), tmp_path / "manual")
    builder = build(tmp_path / "manual", tmp_path, "m_half")
    assert fai.find_releases(tmp_path / "manual") == ["."]
    names = set(examples(builder, "train")) | set(examples(builder, "val"))
    assert all(n.startswith("Images/") for n in names) and len(names) == 4
    assert "test" not in builder.info.splits  # no question.csv


def test_val_percent_config(manual, tmp_path):
    config = fai.FashionAIConfig(name="all_train", val_percent=0)
    builder = prepare(fai.Builder, manual, tmp_path / "tfds", config=config)
    assert set(builder.info.splits) == {"train", "test"}
    # the 5 val rows join train, and so does the web copy of a base image (same split: kept)
    assert builder.info.splits["train"].num_examples == 11 + 5 + 1
    assert "web/" + line_of(manual, 18)[0] in examples(builder, "train")
