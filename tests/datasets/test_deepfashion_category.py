"""deepfashion_category: the coarse benchmark files joined by name, attributes, bad input, report."""

from __future__ import annotations

import pathlib
import shutil

import keras
import numpy as np
import pytest
from dataset_helpers import examples, prepare

from fashion_keras.heads import DEEPFASHION_CATEGORIES, get_heads
from fashion_keras.training import losses as losses_lib
from fashion_keras.training import metrics as metrics_lib
from fashion_keras_datasets.common.errors import AnnotationError, MissingFilesError
from fashion_keras_datasets.deepfashion_category import deepfashion_category_dataset_builder as dfc
from fashion_keras_datasets.synthetic import deepfashion_dummy_data

DUMMY = pathlib.Path(dfc.__file__).parent / "dummy_data"
ROWS = deepfashion_dummy_data.DEEPFASHION_CATEGORY_ROWS


def build(manual_dir, tmp_path, config="category") -> dfc.Builder:
    return prepare(dfc.Builder, manual_dir, tmp_path / "tfds", config=config)


@pytest.fixture(scope="module")
def attributes_build(tmp_path_factory):
    return build(DUMMY, tmp_path_factory.mktemp("dfc"), "attributes")


@pytest.fixture
def manual(tmp_path):
    dst = tmp_path / "manual"
    shutil.copytree(DUMMY, dst)
    return dst


def set_line(path, line_no: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[line_no - 1] = text
    path.write_text("\n".join(lines) + "\n")


def partition(manual):
    return manual / "Eval" / "list_eval_partition.txt"


def anno(manual, name):
    return manual / "Anno" / name


# --- the dummy release -----------------------------------------------------------------------


def test_report_counts_add_up(attributes_build):
    report = attributes_build.report
    assert report["files"] == {str(DUMMY / "Eval" / "list_eval_partition.txt"): len(ROWS)}
    assert report["rows_in"] == 18 == report["rows_written"] + report["rows_reported"]
    written = {s: attributes_build.info.splits[s].num_examples for s in ("train", "val", "test")}
    assert written == deepfashion_dummy_data.DEEPFASHION_CATEGORY_SPLITS
    splits = report["splits"]
    assert splits["train"]["skipped"] == {"bbox_outside_image": 1, "missing_image": 1}
    assert splits["train"]["adjusted"] == {"bbox_clamped": 1, "reencoded_to_jpeg": 3}
    assert splits["val"]["skipped"] == {"duplicate_across_splits": 1}
    assert splits["test"]["skipped"] == {"duplicate_across_splits": 1}
    assert splits["test"]["adjusted"] == {"reencoded_to_jpeg": 1}
    bbox_file = DUMMY / "Anno" / "list_bbox.txt"
    assert splits["train"]["examples"]["bbox_outside_image"][0].startswith(f"{bbox_file}:9: ")
    assert splits["train"]["heads"]["category"]["classes"]["Dress"] == 2
    assert splits["train"]["heads"]["category_type"]["labelled"] == 9


def test_labels_are_zero_based_ids_with_body_type_and_bbox(attributes_build):
    train = examples(attributes_build, "train")
    for name, split, cat, _, kind in ROWS:
        if split != "train" or kind == "missing" or name not in train:
            continue
        ex = train[name]
        assert DEEPFASHION_CATEGORIES[ex["labels"]["category"]] == DEEPFASHION_CATEGORIES[cat - 1]
        body = 0 if cat <= 20 else (1 if cat <= 36 else 2)
        assert ex["labels"]["category_type"] == body
    np.testing.assert_allclose(
        train[ROWS[0][0]]["bbox"], [9 / 48, 7 / 36, 39 / 48, 29 / 36], atol=1e-6
    )
    np.testing.assert_allclose(train[ROWS[1][0]]["bbox"], [0, 7 / 36, 39 / 48, 1], atol=1e-6)
    assert ROWS[6][0] not in train  # box outside its image


def test_attributes_config_reads_values_and_names_with_spaces(attributes_build):
    meta = attributes_build.info.metadata
    expected = deepfashion_dummy_data.deepfashion_attribute_list()
    assert meta["attribute_names"] == [n for n, _ in expected]
    assert " " in meta["attribute_names"][0]
    assert meta["attribute_types"][:5] == ["texture", "fabric", "shape", "part", "style"]
    lines = (DUMMY / "Anno" / "list_attr_img.txt").read_text().splitlines()[2:]
    values = {line.split()[0]: [int(v) for v in line.split()[1:]] for line in lines}
    for name, ex in examples(attributes_build, "val").items():
        assert ex["attributes"].dtype == np.int8
        np.testing.assert_array_equal(ex["attributes"], values[name])


def test_category_config_has_no_attributes_and_accepts_anno_coarse(tmp_path):
    manual = tmp_path / "manual"
    shutil.copytree(DUMMY, manual)
    (manual / "Anno").rename(manual / "Anno_coarse")
    (manual / "Anno_coarse" / "list_attr_img.txt").unlink()  # not read by this config
    builder = build(manual, tmp_path)
    assert "attributes" not in builder.info.features
    assert builder.info.splits["train"].num_examples == 9


def test_category_head_trains_with_top3_and_top5():
    """The 50-class head gets top-3/top-5 (metrics.py adds them above 10 classes), masked."""
    heads = get_heads("deepfashion_category")
    keras.utils.set_random_seed(0)
    inp = keras.Input((4,))
    model = keras.Model(inp, {"category": keras.layers.Dense(50, "softmax", name="category")(inp)})
    model.compile(
        optimizer="sgd",
        loss=losses_lib.focal_losses(heads),
        weighted_metrics=metrics_lib.head_metrics(heads),
    )
    x = np.random.default_rng(0).normal(size=(6, 4)).astype("float32")
    labels = np.array([3, 10, 40, 25, 1, 2])
    y = {"category": np.eye(50, dtype="float32")[labels]}
    w = {"category": np.array([1, 1, 1, 1, 0, 0], "float32")}
    logs = model.evaluate(x, y, sample_weight=w, return_dict=True, verbose=0)
    probs = model.predict(x, verbose=0)["category"][:4]
    ranks = (-probs).argsort(axis=1)
    for k in (3, 5):
        hit = np.mean([labels[i] in ranks[i, :k] for i in range(4)])
        assert logs[f"category_top{k}"] == pytest.approx(hit)
    assert logs["category_accuracy"] == pytest.approx(np.mean(ranks[:, 0] == labels[:4]))


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "file, line, text, message",
    [
        ("partition", 3, "img/a.jpg train extra", r"list_eval_partition\.txt:3: number of fields"),
        ("partition", 4, f"{ROWS[1][0]} training", r"partition\.txt:4: evaluation_status = 'tr"),
        ("partition", 5, "../img/x.jpg train", r"partition\.txt:5: image_name = '\.\./img/x\.jpg'"),
        ("partition", 5, f"{ROWS[0][0]} train", r"partition\.txt:5: image_name = .*also line 3"),
        ("partition", 1, "19", r"partition\.txt:1: count line = 19: expected 18"),
        ("category", 3, f"{ROWS[-1][0]} 51", r"list_category_img\.txt:3: category_label = '51'"),
        ("category", 3, f"{ROWS[-1][0]} 0", r"list_category_img\.txt:3: category_label = '0'"),
        ("category", 3, f"{ROWS[-1][0]} x", r"list_category_img\.txt:3: category_label = 'x'"),
        (
            "category",
            3,
            "img/Other/img_1.jpg 3",
            r"partition\.txt:20: image_name = 'img/Crew_Neck_Tee/img_00000003\.jpg': expected a "
            r"row for it in list_category_img\.txt",
        ),
        ("bbox", 3, f"{ROWS[0][0]} 30 5 10 40", r"list_bbox\.txt:3: bbox x_1 y_1 x_2 y_2 = "),
        ("bbox", 3, f"{ROWS[0][0]} 1 2 3", r"list_bbox\.txt:3: number of fields = 4"),
    ],
    ids=[
        "partition_columns",
        "unknown_split",
        "path_escapes",
        "duplicate_name",
        "count_line",
        "category_51",
        "category_0",
        "category_x",
        "category_missing",
        "bbox_inverted",
        "bbox_fields",
    ],
)
def test_bad_rows_stop_the_build_naming_file_line_field_value(manual, tmp_path, file, line, text, message):  # fmt: skip
    path = {
        "partition": partition(manual),
        "category": anno(manual, "list_category_img.txt"),
        "bbox": anno(manual, "list_bbox.txt"),
    }[file]
    set_line(path, line, text)
    with pytest.raises(AnnotationError, match=message):
        build(manual, tmp_path)


def test_rows_for_images_the_partition_does_not_list_are_an_error(manual, tmp_path):
    path = anno(manual, "list_category_img.txt")
    lines = path.read_text().splitlines()
    lines[0] = str(len(ROWS) + 1)
    lines.append("img/Not_Listed/img_00000001.jpg  3")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(AnnotationError) as e:
        build(manual, tmp_path)
    assert str(e.value).startswith(
        f"{path}:21: image_name = 'img/Not_Listed/img_00000001.jpg': expected an image listed in "
        "Eval/list_eval_partition.txt"
    )


def test_attribute_value_and_attribute_list_errors(manual, tmp_path):
    path = anno(manual, "list_attr_img.txt")
    lines = path.read_text().splitlines()
    fields = lines[2].split()
    fields[7] = "2"
    lines[2] = " ".join(fields)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(AnnotationError, match=r"list_attr_img\.txt:3: attribute 7 = '2'"):
        build(manual, tmp_path, "attributes")
    shutil.copy(DUMMY / "Anno" / "list_attr_img.txt", path)
    set_line(anno(manual, "list_attr_cloth.txt"), 5, "pleated mini skirt")
    with pytest.raises(AnnotationError, match=r"list_attr_cloth\.txt:5: attribute_type"):
        build(manual, tmp_path, "attributes")


def test_category_list_must_match_the_taxonomy(manual, tmp_path):
    set_line(anno(manual, "list_category_cloth.txt"), 3, "Anorakk                       1")
    with pytest.raises(AnnotationError, match=r"cloth\.txt:3: category_name = 'Anorakk'"):
        build(manual, tmp_path)


def test_missing_files_are_listed_together(manual, tmp_path):
    anno(manual, "list_bbox.txt").unlink()
    partition(manual).unlink()
    with pytest.raises(MissingFilesError) as e:
        build(manual, tmp_path)
    assert e.value.missing == ["Anno/list_bbox.txt", "Eval/list_eval_partition.txt"]


def test_skip_bad_rows_reports_every_bad_row_and_the_counts_add_up(manual, tmp_path):
    set_line(partition(manual), 4, f"{ROWS[1][0]} training")  # unknown split
    set_line(partition(manual), 20, f"{ROWS[0][0]} test")  # listed twice
    cat = anno(manual, "list_category_img.txt")
    lines = cat.read_text().splitlines()
    by_name = {line.split()[0]: i for i, line in enumerate(lines[2:], start=3)}
    set_line(cat, by_name[ROWS[7][0]], f"{ROWS[7][0]} 51")  # out of range
    bbox = anno(manual, "list_bbox.txt")
    set_line(bbox, 3 + 9, f"{ROWS[9][0]} 30 5 10 40")  # inverted
    set_line(bbox, 3 + 12, f"{ROWS[12][0]} 1 2")  # wrong field count
    set_line(bbox, 1, "17")  # count line off
    builder = build(manual, tmp_path, "category_skip_bad_rows")
    report = builder.report
    assert report["rows_in"] == 18 == report["rows_written"] + report["rows_reported"]
    bad = {
        (split, reason): n
        for split, r in report["splits"].items()
        for reason, n in r["skipped"].items()
        if reason.startswith("bad_row:")
    }
    assert bad == {
        ("train", "bad_row:unknown_split"): 1,
        ("train", "bad_row:category_out_of_range"): 1,
        ("train", "bad_row:bbox_inverted"): 1,
        ("val", "bad_row:wrong_column_count"): 1,
        ("test", "bad_row:duplicate_row"): 1,
    }
    assert any("list_bbox.txt:1: count line = 17" in n for n in report["notes"])
    assert builder.info.splits["train"].num_examples == 9 - 3
