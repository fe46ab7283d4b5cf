"""custom_csv: a user CSV for a user head spec; configs, empty cells, bad input, report."""

from __future__ import annotations

import json
import pathlib
import shutil

import numpy as np
import pytest
from dataset_helpers import examples, prepare

from fashion_keras.data import sources
from fashion_keras.heads import Head, load_heads_file
from fashion_keras_datasets.common.errors import AnnotationError
from fashion_keras_datasets.custom_csv import custom_csv_dataset_builder as ccb
from fashion_keras_datasets.synthetic import dummy_data

DUMMY = pathlib.Path(ccb.__file__).parent / "dummy_data"
ROWS = dummy_data.CUSTOM_CSV_ROWS


def build(manual_dir, tmp_path, config="example") -> ccb.Builder:
    return prepare(ccb.Builder, manual_dir, tmp_path / "tfds", config=config)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build(DUMMY, tmp_path_factory.mktemp("csv"))


@pytest.fixture
def manual(tmp_path):
    dst = tmp_path / "manual"
    shutil.copytree(DUMMY, dst)
    return dst


def csv_path(manual):
    return manual / "labels.csv"


def append(manual, *lines: str) -> None:
    path = csv_path(manual)
    path.write_bytes(path.read_bytes() + "".join(line + "\r\n" for line in lines).encode())


def test_report_counts_add_up(built):
    report = built.report
    assert report["files"] == {str(DUMMY / "labels.csv"): len(ROWS)}
    assert report["rows_in"] == 14 == report["rows_written"] + report["rows_reported"]
    written = {s: built.info.splits[s].num_examples for s in built.info.splits}
    assert written == dummy_data.CUSTOM_CSV_SPLITS
    assert report["splits"]["train"]["skipped"] == {"missing_image": 1}
    assert report["splits"]["train"]["adjusted"] == {"bbox_clamped": 1, "reencoded_to_jpeg": 4}
    assert report["splits"]["val"]["skipped"] == {"duplicate_across_splits": 1}
    heads = report["splits"]["train"]["heads"]
    assert heads["sleeve"]["labelled"] == 7 and heads["colour"]["labelled"] == 7
    assert heads["colour"]["classes"] == {"black": 1, "white": 2, "red": 2, "blue": 2}
    assert built.info.metadata["heads"] == ccb.EXAMPLE_HEADS


def test_empty_cells_are_unlabelled_and_boxes_are_optional(built):
    train, test = examples(built, "train"), examples(built, "test")
    labels = built.info.features["labels"]
    shirt2 = train["images/shirt_002.jpg"]
    assert labels["sleeve"].int2str(shirt2["labels"]["sleeve"]) == "short_sleeve"
    assert shirt2["labels"]["colour"] == -1
    np.testing.assert_allclose(shirt2["bbox"], [0, 0, 1, 1])
    assert train["images/shirt_003.jpg"]["labels"]["sleeve"] == -1
    np.testing.assert_allclose(
        train["images/shirt_001.jpg"]["bbox"], [9 / 48, 7 / 36, 39 / 48, 29 / 36], atol=1e-6
    )
    assert "images/tee_001.jpg" in train  # no split: by the hash of its path
    assert test["images/jacket_002.jpg"]["labels"] == {"sleeve": -1, "colour": -1}
    assert "images/Sub Folder/jacket 001.jpg" in test  # spaces in paths


def test_config_from_a_spec_file_and_from_the_manual_folder(manual, tmp_path):
    spec = tmp_path / "shop.json"
    spec.write_text(json.dumps({"heads": [{"name": "colour", "classes": list("abcd")}]}))
    config = ccb.CustomCsvConfig(name="shop", heads_file=str(spec))
    assert [h.name for h in config.heads] == ["colour"]
    # from the folder: heads.yaml is read, the name follows the content
    folder, config = ccb.config_for_manual_dir(manual)
    assert folder == str(manual) and config.name.startswith("csv_")
    assert config.heads == load_heads_file(manual / "heads.yaml")
    _, again = ccb.config_for_manual_dir(manual / "labels.csv")
    assert again.name == config.name and again.csv_file == "labels.csv"
    # training heads: those without a column are left out (masked in training)
    extra = Head("fit", ("tight", "loose"))
    _, restricted = ccb.config_for_manual_dir(manual, [*config.heads, extra])
    assert [h.name for h in restricted.heads] == ["sleeve", "colour"]
    assert restricted.name == config.name
    _, other = ccb.config_for_manual_dir(manual, config.heads[:1])
    assert other.name != config.name
    _, lenient = ccb.config_for_manual_dir(manual, skip_bad_rows=True)
    assert lenient.name == config.name + "_skip_bad_rows" and lenient.skip_bad_rows
    with pytest.raises(AnnotationError, match="at least one head of \\['fit'\\]"):
        ccb.config_for_manual_dir(manual, [extra])
    (manual / "heads.yaml").unlink()
    with pytest.raises(FileNotFoundError, match="pass --heads"):
        ccb.config_for_manual_dir(manual)
    with pytest.raises(ValueError, match="give heads_file"):
        ccb.CustomCsvConfig(name="x")


def test_sources_builds_custom_csv_from_the_training_heads(manual, tmp_path):
    heads = [*load_heads_file(manual / "heads.yaml"), Head("fit", ("tight", "loose"))]
    builder = sources.get_builder("custom_csv", str(manual), str(tmp_path / "tfds"), heads=heads)
    assert list(builder.info.features["labels"].keys()) == ["sleeve", "colour"]
    assert builder.info.splits["train"].num_examples == dummy_data.CUSTOM_CSV_SPLITS["train"]


@pytest.mark.parametrize(
    "line, field, value, reason",
    [
        ("images/x.jpg,long_sleeve,black", "number of columns", "3", "wrong_column_count"),
        ("images/x.jpg,long,black,,,,,train,", "sleeve", "'long'", "unknown_class"),
        ("images/x.jpg,,Black,,,,,train,", "colour", "'Black'", "unknown_class"),
        ("images/x.jpg,,,,,,,training,", "split", "'training'", "unknown_split"),
        ("images/x.jpg,,,1,2,,,train,", "x1,y1,x2,y2", "'1,2,,'", "bad_bbox"),
        ("images/x.jpg,,,30,2,10,40,train,", "x1,y1,x2,y2", "'30,2,10,40'", "bbox_inverted"),
        ("images/x.jpg,,,a,2,10,40,train,", "x1,y1,x2,y2", "'a,2,10,40'", "bad_bbox"),
        ("../secret.jpg,,,,,,,train,", "image", "'../secret.jpg'", "path_outside_root"),
        ("images/shirt_001.jpg,,,,,,,val,", "image", "'images/shirt_001.jpg'", "duplicate_row"),
    ],
)
def test_bad_rows_stop_the_build_naming_file_line_field_value(
    manual, tmp_path, line, field, value, reason
):
    append(manual, line)
    with pytest.raises(AnnotationError) as e:
        build(manual, tmp_path)
    assert str(e.value).startswith(f"{csv_path(manual)}:16: {field} = {value}: expected")
    assert e.value.reason == reason


def test_header_must_name_the_image_and_every_head_column(manual, tmp_path):
    path = csv_path(manual)
    path.write_bytes(path.read_bytes().replace(b"colour", b"color", 1))
    with pytest.raises(AnnotationError, match=r"labels\.csv:1: header = .*missing \['colour'\]"):  # fmt: skip
        build(manual, tmp_path)


def test_skip_bad_rows_counts_every_bad_row(manual, tmp_path):
    bad = [
        "images/x.jpg,long_sleeve,black",
        "images/x.jpg,long,black,,,,,train,",
        "images/x.jpg,,,,,,,training,",
        "images/x.jpg,,,30,2,10,40,train,",
        "../secret.jpg,,,,,,,train,",
        "",
        "images/shirt_001.jpg,,,,,,,val,",
    ]
    append(manual, *bad, "images/top_004.jpg,,,,,,,val,")
    builder = build(manual, tmp_path, "example_skip_bad_rows")
    report = builder.report
    assert report["rows_in"] == 14 + len(bad) + 1
    assert report["rows_in"] == report["rows_written"] + report["rows_reported"]
    bad_counts: dict[str, int] = {}
    for split in report["splits"].values():
        for reason, n in split["skipped"].items():
            if reason.startswith("bad_row:"):
                bad_counts[reason] = bad_counts.get(reason, 0) + n
    assert bad_counts == {
        "bad_row:wrong_column_count": 1,
        "bad_row:unknown_class": 1,
        "bad_row:unknown_split": 1,
        "bad_row:bbox_inverted": 1,
        "bad_row:path_outside_root": 1,
        "bad_row:blank_line": 1,
        "bad_row:duplicate_row": 2,
    }
    written = {s: builder.info.splits[s].num_examples for s in builder.info.splits}
    assert written == dummy_data.CUSTOM_CSV_SPLITS
