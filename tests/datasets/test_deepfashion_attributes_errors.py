"""deepfashion_attributes builder: error reporting, skip reports, bbox/JPEG handling, demo data.

Every test works on a tiny synthetic release written by ``fashion_keras_datasets.synthetic.demo``
into a temporary
folder (a private copy per test when the test corrupts it).
"""

from __future__ import annotations

import filecmp
import io
import json
import logging
import os
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds
from dataset_helpers import examples, prepare
from PIL import Image

from fashion_keras.heads import DEEPFASHION6, DEEPFASHION_CATEGORIES
from fashion_keras_datasets.common.errors import AnnotationError, ImageProblem, MissingFilesError
from fashion_keras_datasets.common.images import ImageInfo, check_image
from fashion_keras_datasets.common.report import SkipReport
from fashion_keras_datasets.common.rows import (
    Row,
    normalize_bbox,
    parse_bbox,
    parse_label_string,
    parse_one_hot_groups,
    read_counted_rows,
    read_rows,
)
from fashion_keras_datasets.deepfashion_attributes import (
    deepfashion_attributes_dataset_builder as dfa,
)
from fashion_keras_datasets.synthetic import demo

NUM_TRAIN, NUM_VAL, NUM_TEST = 8, 4, 3


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "manual"
    demo.generate_demo(root, NUM_TRAIN, NUM_VAL, NUM_TEST, seed=3, max_side=48)
    return root


@pytest.fixture
def manual(demo_root, tmp_path):
    """A private copy of the demo release that a test may corrupt."""
    dst = tmp_path / "manual"
    shutil.copytree(demo_root, dst)
    return dst


def build(manual_dir, tmp_path) -> dfa.Builder:
    return prepare(dfa.Builder, manual_dir, tmp_path / "tfds")


def anno(manual_dir, name: str):
    return manual_dir / "Anno_fine" / name


def lines(path) -> list[str]:
    return path.read_text().splitlines()


def set_line(path, line_no: int, text: str) -> None:
    rows = lines(path)
    rows[line_no - 1] = text
    path.write_text("".join(r + "\n" for r in rows))


# --- required files, row structure ---------------------------------------------------------------


def test_missing_files_lists_manual_folder_and_every_missing_path(manual, tmp_path):
    anno(manual, "train_attr.txt").unlink()
    anno(manual, "val_bbox.txt").unlink()
    anno(manual, "val.txt").unlink()
    shutil.rmtree(manual / "img")
    with pytest.raises(MissingFilesError) as e:
        build(manual, tmp_path)
    msg = str(e.value)
    assert str(manual.resolve()) in msg
    assert e.value.missing == [
        "Anno_fine/train_attr.txt",
        "Anno_fine/val.txt",
        "Anno_fine/val_bbox.txt",
        "img/",
    ]
    for m in e.value.missing:
        assert f"- {m}\n" in msg
    assert "- Anno_fine/train.txt\n" not in msg  # present files are not listed
    assert "test_attr.txt" in msg and "optional" in msg  # the expected layout is shown


@pytest.mark.parametrize(
    "row, field, value",
    [
        ("0 " * 24 + "1", "number of columns", "25"),  # 25 columns
        (
            "1 0 0 0 0 0 0 1 0 0 1 0 0 1 0 0 0 1 0 0 0 0 0 1 0 1",  # two 1s in `fit`
            "fit (columns 24-26)",
            "'1 0 1'",
        ),
        (
            "1 0 0 0 0 0 0 1 0 0 1 0 0 1 0 0 0 1 0 0 0 0 0 2 0 0",  # a 2
            "column 24 (fit/tight)",
            "'2'",
        ),
    ],
    ids=["25_columns", "two_ones_in_group", "value_2"],
)
def test_malformed_attr_row_names_file_line_field_value(manual, tmp_path, row, field, value):
    path = anno(manual, "train_attr.txt")
    set_line(path, 3, row.strip())
    with pytest.raises(AnnotationError) as e:
        build(manual, tmp_path)
    msg = str(e.value)
    assert msg.startswith(f"{path}:3: {field} = {value}: expected"), msg
    assert e.value.line == 3 and e.value.path == str(path)


def test_inverted_bbox_is_an_error(manual, tmp_path):
    path = anno(manual, "val_bbox.txt")
    set_line(path, 2, "30 5 10 40")
    with pytest.raises(AnnotationError) as e:
        build(manual, tmp_path)
    assert str(e.value).startswith(f"{path}:2: bbox = '30 5 10 40': expected x1 < x2 and y1 < y2")


def test_every_split_is_checked_before_any_image_is_read(manual, tmp_path):
    shutil.rmtree(manual / "img")
    (manual / "img").mkdir()  # every image missing: would fail train with "all rows skipped"
    set_line(anno(manual, "test_attr.txt"), 2, "1 0")
    with pytest.raises(AnnotationError, match=r"test_attr\.txt:2: number of columns"):
        build(manual, tmp_path)


def test_row_count_mismatch_names_both_files_and_counts(manual, tmp_path):
    path = anno(manual, "val_cate.txt")
    path.write_text("".join(r + "\n" for r in lines(path)[:-1]))
    with pytest.raises(AnnotationError) as e:
        build(manual, tmp_path)
    msg = str(e.value)
    assert str(path) in msg and str(anno(manual, "val.txt")) in msg
    assert f"row count = {NUM_VAL - 1}" in msg and f"expected {NUM_VAL} rows" in msg


@pytest.mark.parametrize("bad", ["0", "51", "x"])
def test_category_out_of_range_is_an_error(manual, tmp_path, bad):
    path = anno(manual, "train_cate.txt")
    set_line(path, 5, bad)
    with pytest.raises(AnnotationError, match=rf":5: category id = '{bad}'.*\[1, 50\]"):
        build(manual, tmp_path)


@pytest.mark.parametrize("bad", ["../outside.jpg", "img/../../x.jpg", "/etc/passwd", "C:/x.jpg"])
def test_image_path_must_stay_inside_manual_dir(manual, tmp_path, bad):
    set_line(anno(manual, "train.txt"), 2, bad)
    with pytest.raises(AnnotationError, match=r"train\.txt:2: image path"):
        build(manual, tmp_path)


def test_duplicate_image_path_is_an_error(manual, tmp_path):
    path = anno(manual, "train.txt")
    set_line(path, 4, lines(path)[0])
    with pytest.raises(AnnotationError, match=r"train\.txt:4: .*also line 1"):
        build(manual, tmp_path)


def test_attr_list_with_wrong_types_is_an_error(manual, tmp_path):
    path = anno(manual, "list_attr_cloth.txt")
    rows = lines(path)
    rows[2 + 7] = "long_sleeve 1"  # column 8 belongs to type 2 (sleeve)
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(AnnotationError, match=r"list_attr_cloth\.txt:10: attribute_type"):
        build(manual, tmp_path)


# --- images: skipped and reported, bytes unchanged ----------------------------------------------


def test_missing_and_corrupt_images_are_skipped_counted_and_reported(manual, tmp_path, caplog):
    paths = lines(anno(manual, "train.txt"))
    (manual / paths[1]).unlink()  # line 2: missing
    data = (manual / paths[2]).read_bytes()
    (manual / paths[2]).write_bytes(data[: len(data) // 2])  # line 3: truncated JPEG
    with caplog.at_level(logging.INFO):
        builder = build(manual, tmp_path)
    assert builder.info.splits["train"].num_examples == NUM_TRAIN - 2
    report = builder.skip_reports["train"]
    assert report["rows"] == NUM_TRAIN and report["kept"] == NUM_TRAIN - 2
    assert report["skipped"] == {"missing_image": 1, "unreadable_image": 1}
    assert report["examples"]["missing_image"][0].startswith(f"{anno(manual, 'train.txt')}:2: ")
    assert report["examples"]["unreadable_image"][0].startswith(f"{anno(manual, 'train.txt')}:3: ")
    assert builder.skip_reports["val"]["skipped"] == {}
    assert "skipped 2 (missing_image: 1, unreadable_image: 1)" in caplog.text
    # the report is stored with the dataset and survives a reload
    reloaded = dfa.Builder(data_dir=str(tmp_path / "tfds"))
    assert reloaded.info.metadata["report"]["splits"]["train"] == report
    assert set(examples(builder, "train")) == set(paths) - {paths[1], paths[2]}


def test_all_images_missing_is_an_error(manual, tmp_path):
    shutil.rmtree(manual / "img")
    (manual / "img").mkdir()
    with pytest.raises(FileNotFoundError, match="all 8 rows were skipped"):
        build(manual, tmp_path)


def test_jpeg_bytes_are_stored_unchanged(manual, tmp_path):
    builder = build(manual, tmp_path)
    for split in ("train", "val", "test"):
        exs = examples(builder, split)
        assert exs
        for name, ex in exs.items():
            assert ex["image"] == (manual / name).read_bytes(), name


def test_grayscale_jpeg_is_kept_unchanged_and_decodes_to_rgb(manual, tmp_path):
    name = lines(anno(manual, "train.txt"))[0]
    Image.open(manual / name).convert("L").save(manual / name, format="JPEG")
    builder = build(manual, tmp_path)
    assert examples(builder, "train")[name]["image"] == (manual / name).read_bytes()
    assert builder.skip_reports["train"]["adjusted"] == {}
    for ex in tfds.as_numpy(builder.as_dataset(split="train")):
        if ex["image/filename"].decode() == name:
            assert ex["image"].shape[-1] == 3


def test_non_jpeg_image_is_reencoded_and_reported(manual, tmp_path):
    name = lines(anno(manual, "train.txt"))[0]
    img = Image.open(manual / name).convert("RGB")
    img.save(manual / name, format="PNG")  # a PNG behind a .jpg name
    builder = build(manual, tmp_path)
    stored = examples(builder, "train")[name]["image"]
    assert stored[:2] == b"\xff\xd8"  # JPEG
    assert Image.open(io.BytesIO(stored)).size == img.size
    assert builder.skip_reports["train"]["adjusted"] == {"reencoded_to_jpeg": 1}


def test_bbox_is_normalised_from_pixels_and_the_real_image_size(manual, tmp_path):
    names = lines(anno(manual, "train.txt"))
    sizes = [Image.open(manual / n).size for n in names]
    w, h = sizes[0]
    set_line(anno(manual, "train_bbox.txt"), 1, f"{w // 4} {h // 5} {w // 2} {h - 1}")
    w2, h2 = sizes[1]
    set_line(anno(manual, "train_bbox.txt"), 2, f"-5 -3 {w2 + 10} {h2 // 2}")  # clamped
    w3, h3 = sizes[2]
    set_line(anno(manual, "train_bbox.txt"), 3, f"{w3 + 1} 0 {w3 + 9} {h3}")  # outside
    builder = build(manual, tmp_path)
    exs = examples(builder, "train")
    np.testing.assert_allclose(
        exs[names[0]]["bbox"], [(h // 5) / h, (w // 4) / w, (h - 1) / h, (w // 2) / w], atol=1e-6
    )
    np.testing.assert_allclose(exs[names[1]]["bbox"], [0.0, 0.0, (h2 // 2) / h2, 1.0], atol=1e-6)
    assert names[2] not in exs
    report = builder.skip_reports["train"]
    assert report["adjusted"] == {"bbox_clamped": 1}
    assert report["skipped"] == {"bbox_outside_image": 1}


def test_test_split_optional_files_give_unlabelled_rows(manual, tmp_path):
    for name in ("test_attr.txt", "test_cate.txt", "test_bbox.txt"):
        anno(manual, name).unlink()
    builder = build(manual, tmp_path)
    exs = examples(builder, "test")
    assert len(exs) == NUM_TEST
    for ex in exs.values():
        assert all(ex["labels"][h.name] == -1 for h in DEEPFASHION6)
        assert ex["category"] == -1
        np.testing.assert_allclose(ex["bbox"], [0, 0, 1, 1])
    assert builder.skip_reports["test"]["adjusted"] == {"bbox_file_absent": NUM_TEST}


def test_without_test_txt_there_is_no_test_split(manual, tmp_path):
    for name in ("test.txt", "test_attr.txt", "test_cate.txt", "test_bbox.txt"):
        anno(manual, name).unlink()
    builder = build(manual, tmp_path)
    assert set(builder.info.splits) == {"train", "val"}


# --- the demo data through the builder ------------------------------------------------------------


def test_demo_builds_and_labels_decode_back_to_the_attribute_columns(manual, tmp_path):
    builder = build(manual, tmp_path)
    features = builder.info.features
    assert list(features["labels"].keys()) == [h.name for h in DEEPFASHION6]
    for split, n in (("train", NUM_TRAIN), ("val", NUM_VAL)):
        exs = examples(builder, split)
        assert len(exs) == n
        paths = lines(anno(manual, f"{split}.txt"))
        attrs = lines(anno(manual, f"{split}_attr.txt"))
        cates = lines(anno(manual, f"{split}_cate.txt"))
        for path, attr, cate in zip(paths, attrs, cates, strict=True):
            ex = exs[path]
            columns = []
            for head in DEEPFASHION6:
                name = features["labels"][head.name].int2str(ex["labels"][head.name])
                columns += ["1" if c == name else "0" for c in head.classes]
            assert " ".join(columns) == attr
            assert DEEPFASHION_CATEGORIES[ex["category"]] == DEEPFASHION_CATEGORIES[int(cate) - 1]


def test_tfds_builder_registered_by_name():
    assert "deepfashion_attributes" in tfds.list_builders(with_community_datasets=False)
    assert tfds.builder_cls("deepfashion_attributes") is dfa.Builder


# --- the demo generator ------------------------------------------------------------------------


def _tree(root) -> list[str]:
    return sorted(
        os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs
    )


def test_generator_is_deterministic(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for root, seed in ((a, 5), (b, 5), (c, 6)):
        assert demo.generate_demo(root, 6, 2, 2, seed=seed, max_side=64) == {
            "train": 6,
            "val": 2,
            "test": 2,
        }
    files = _tree(a)
    assert files == _tree(b)
    assert "README_SYNTHETIC.txt" in files and "Anno_fine/list_attr_cloth.txt" in files
    assert demo.REGION_FILE in files  # compared byte for byte too
    _, mismatch, errors = filecmp.cmpfiles(a, b, files, shallow=False)
    assert not mismatch and not errors
    assert (a / "Anno_fine/train_attr.txt").read_bytes() != (
        c / "Anno_fine/train_attr.txt"
    ).read_bytes()
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]  # no temporary folders left


def test_every_class_of_every_head_appears_and_files_are_consistent(tmp_path):
    root = tmp_path / "demo"
    demo.generate_demo(root, 150, 1, 0, seed=0, max_side=40)
    assert not (root / "Anno_fine/test.txt").exists()
    rows = read_rows(root / "Anno_fine/train_attr.txt")
    groups = [(h.name, h.classes) for h in DEEPFASHION6]
    seen = {h.name: set() for h in DEEPFASHION6}
    for row in rows:
        for head, idx in parse_one_hot_groups(row, groups).items():
            seen[head].add(idx)
    for head in DEEPFASHION6:
        assert seen[head.name] == set(range(head.num_classes)), head.name
    cates = [int(x) for x in lines(root / "Anno_fine/train_cate.txt")]
    lengths = [parse_one_hot_groups(r, groups)["length"] for r in rows]
    for cate, length in zip(cates, lengths, strict=True):
        is_dress = DEEPFASHION6[2].classes[length] != "no_dress"
        assert (DEEPFASHION_CATEGORIES[cate - 1] == "Dress") == is_dress
    header, attr_rows = read_counted_rows(root / "Anno_fine/list_attr_cloth.txt")
    assert header == ("attribute_name", "attribute_type")
    assert [(r.fields[0], int(r.fields[1])) for r in attr_rows] == demo.attribute_columns()
    for row, path in zip(
        read_rows(root / "Anno_fine/train_bbox.txt"),
        lines(root / "Anno_fine/train.txt"),
        strict=True,
    ):
        x1, y1, x2, y2 = parse_bbox(row)
        w, h = Image.open(root / path).size
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h and max(w, h) <= 40


def test_garment_occupies_a_sub_region_and_images_are_small():
    for i in range(10):
        ex = demo.sample_example(0, "train", i)
        w, h = ex["image"].size
        x1, y1, x2, y2 = ex["bbox"]
        assert max(w, h) <= 200
        assert (x2 - x1) * (y2 - y1) < 0.95 * w * h


def test_generate_demo_refuses_to_overwrite_unless_asked(tmp_path):
    root = tmp_path / "out"
    root.mkdir()
    (root / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        demo.generate_demo(root, 1, 1, 0, max_side=32)
    demo.generate_demo(root, 1, 1, 0, max_side=32, overwrite=True)
    assert not (root / "keep.txt").exists() and (root / "Anno_fine/train.txt").exists()


def test_demo_manual_dir_generates_once_and_regenerates_stale(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    path = demo.demo_manual_dir(str(cache), num_train=2, num_val=1, num_test=1, seed=1)
    assert path.startswith(str(cache / "demo" / f"v{demo.GENERATOR_VERSION}_s1_2_1_1"))
    assert path.endswith("manual")
    marker = demo.read_marker(path)
    assert marker["counts"] == {"train": 2, "val": 1, "test": 1}
    stamp = os.stat(os.path.join(path, "Anno_fine", "train.txt")).st_mtime_ns
    calls = []
    monkeypatch.setattr(demo, "_write_demo_tree", lambda *a, **k: calls.append(a))
    assert demo.demo_manual_dir(str(cache), num_train=2, num_val=1, num_test=1, seed=1) == path
    assert not calls  # cached
    monkeypatch.undo()
    os.remove(os.path.join(path, demo.MARKER_NAME))  # stale: regenerate
    assert demo.demo_manual_dir(str(cache), num_train=2, num_val=1, num_test=1, seed=1) == path
    assert demo.read_marker(path) == marker
    assert os.stat(os.path.join(path, "Anno_fine", "train.txt")).st_mtime_ns >= stamp
    assert sorted(os.listdir(os.path.dirname(path))) == ["manual"]  # no temporary folders left


def test_demo_manual_dir_default_location(tmp_path, monkeypatch):
    calls = []
    real_write = demo._write_demo_tree

    def fake_write(tmp, counts, seed, max_side):
        calls.append((counts, seed, max_side))
        real_write(tmp, {"train": 1, "val": 1, "test": 0}, seed, 32)
        with open(os.path.join(tmp, demo.MARKER_NAME), "w") as f:
            json.dump(demo._marker(counts, seed, max_side), f)

    monkeypatch.setattr(demo, "_write_demo_tree", fake_write)
    monkeypatch.setenv("FASHION_KERAS_CACHE", str(tmp_path / "env_cache"))
    path = demo.demo_manual_dir()
    assert path == str(tmp_path / "env_cache" / "demo" / f"v{demo.GENERATOR_VERSION}" / "manual")
    assert calls == [({"train": 3000, "val": 500, "test": 500}, 0, demo.MAX_SIDE)]
    assert demo.demo_manual_dir() == path and len(calls) == 1  # cached by its marker


def test_demo_manual_dir_keeps_a_copy_installed_meanwhile(tmp_path, monkeypatch):
    """Two processes generating at once: the second keeps the first's (possibly in-use) copy."""
    cache = str(tmp_path / "cache")
    real_write = demo._write_demo_tree
    first = {}

    def racing_write(tmp, counts, seed, max_side):
        real_write(tmp, counts, seed, max_side)
        if not first:  # another process finishes first, while we were writing
            first["racing"] = True
            demo.generate_demo(os.path.join(os.path.dirname(tmp), "manual"), 1, 1, 1, seed=seed)
            first["stamp"] = os.stat(os.path.join(os.path.dirname(tmp), "manual")).st_ino

    monkeypatch.setattr(demo, "_write_demo_tree", racing_write)
    path = demo.demo_manual_dir(cache, num_train=1, num_val=1, num_test=1, seed=0)
    assert os.stat(path).st_ino == first["stamp"]  # not replaced
    assert sorted(os.listdir(os.path.dirname(path))) == ["manual"]


def test_cli_writes_demo(tmp_path, capsys):
    out = tmp_path / "cli"
    assert demo.main([str(out), "--num-train", "2", "--num-val", "1", "--num-test", "0"]) == 0
    assert len(lines(out / "Anno_fine/train.txt")) == 2
    assert "wrote" in capsys.readouterr().out
    assert demo.main([str(out), "--num-train", "2"]) == 2  # exists, no --overwrite


# --- the shared builder code (fashion_keras_datasets.common) ------------------------------------


def test_skip_report_format_and_dict():
    report = SkipReport("ds", "train", max_examples=2)
    for i in range(3):
        report.skip("missing_image", f"f.txt:{i + 1}", "gone")
    report.adjust("bbox_clamped", "b.txt:7")
    report.keep()
    d = report.as_dict()
    assert d == {
        "dataset": "ds",
        "split": "train",
        "rows": 4,
        "kept": 1,
        "skipped": {"missing_image": 3},
        "adjusted": {"bbox_clamped": 1},
        "examples": {
            "bbox_clamped": ["b.txt:7"],
            "missing_image": ["f.txt:1: gone", "f.txt:2: gone"],
        },
        "heads": {},
    }
    text = report.format()
    assert text.splitlines()[0] == (
        "ds/train: kept 1 of 4 rows; skipped 3 (missing_image: 3); adjusted 1 (bbox_clamped: 1)"
    )
    assert "missing_image (first 2 of 3):" in text


def test_read_rows_rejects_inner_blank_lines_and_ignores_trailing_ones(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("1 2\n3 4\n\n\n")
    assert [r.fields for r in read_rows(path)] == [("1", "2"), ("3", "4")]
    path.write_text("1 2\n\n3 4\n")
    with pytest.raises(AnnotationError, match=r"a\.txt:2: row = ''"):
        read_rows(path)
    path.write_text("1 2\n3\n")
    with pytest.raises(AnnotationError, match=r"a\.txt:2: number of fields = 1"):
        read_rows(path, num_fields=2)


def test_normalize_bbox():
    assert normalize_bbox((10, 20, 50, 80), 100, 200) == ((0.1, 0.1, 0.4, 0.5), False)
    assert normalize_bbox((-10, 0, 50, 300), 100, 200) == ((0.0, 0.0, 1.0, 0.5), True)
    assert normalize_bbox((120, 0, 150, 10), 100, 200) == (None, True)


def test_parse_label_string():
    row = Row("label.csv", 4, ("img.jpg", "collar", "nmyn"))
    assert parse_label_string(row, 2, ["a", "b", "c", "d"]) == (2, (1,))
    bad = Row("label.csv", 5, ("img.jpg", "collar", "nyyn"))
    with pytest.raises(AnnotationError, match=r"label\.csv:5: label = 'nyyn'"):
        parse_label_string(bad, 2, ["a", "b", "c", "d"])


def test_check_image_reports_missing_and_unreadable(tmp_path):
    with pytest.raises(ImageProblem) as e:
        check_image(tmp_path / "none.jpg")
    assert e.value.reason == "missing_image"
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(ImageProblem) as e:
        check_image(tmp_path / "bad.jpg")
    assert e.value.reason == "unreadable_image"
    Image.new("L", (9, 8)).save(tmp_path / "ok.jpg")
    assert check_image(tmp_path / "ok.jpg") == ImageInfo(9, 8, "JPEG", "L")
    Image.new("L", (7, 5)).save(tmp_path / "tiny.jpg")  # under the default minimum side of 8
    with pytest.raises(ImageProblem) as e:
        check_image(tmp_path / "tiny.jpg")
    assert e.value.reason == "image_too_small"


# --- shared validation: report totals, skip_bad_rows, duplicates across splits ------------------


def test_skip_bad_rows_config_skips_bad_rows_of_every_file_and_counts_add_up(manual, tmp_path):
    set_line(
        anno(manual, "train_attr.txt"), 3, "1 0 0 0 0 0 0 1 0 0 1 0 0 1 0 0 0 1 0 0 0 0 0 1 0 1"
    )
    set_line(anno(manual, "val_bbox.txt"), 2, "30 5 10 40")
    set_line(anno(manual, "test_cate.txt"), 1, "51")
    builder = prepare(dfa.Builder, manual, tmp_path / "tfds", config="default_skip_bad_rows")
    report = builder.report
    assert report["rows_in"] == NUM_TRAIN + NUM_VAL + NUM_TEST
    assert report["rows_in"] == report["rows_written"] + report["rows_reported"]
    assert report["splits"]["train"]["skipped"] == {"bad_row:not_one_hot": 1}
    assert report["splits"]["val"]["skipped"] == {"bad_row:bbox_inverted": 1}
    assert report["splits"]["test"]["skipped"] == {"bad_row:category_out_of_range": 1}
    example = report["splits"]["val"]["examples"]["bad_row:bbox_inverted"][0]
    assert example.startswith(f"{anno(manual, 'val_bbox.txt')}:2: bbox = '30 5 10 40'")
    paths = lines(anno(manual, "train.txt"))
    assert paths[2] not in examples(builder, "train")
    assert builder.info.splits["train"].num_examples == NUM_TRAIN - 1
    heads = report["splits"]["train"]["heads"]
    assert [h for h in heads] == [h.name for h in DEEPFASHION6]
    assert all(c["labelled"] == NUM_TRAIN - 1 for c in heads.values())


def test_an_image_of_val_identical_to_a_train_image_is_left_out_of_val(manual, tmp_path):
    train0 = lines(anno(manual, "train.txt"))[0]
    val1 = lines(anno(manual, "val.txt"))[1]
    shutil.copy(manual / train0, manual / val1)
    builder = build(manual, tmp_path)
    assert val1 not in examples(builder, "val") and train0 in examples(builder, "train")
    report = builder.skip_reports["val"]
    assert report["skipped"] == {"duplicate_across_splits": 1}
    (example,) = report["examples"]["duplicate_across_splits"]
    assert example.startswith(f"{anno(manual, 'val.txt')}:2: {val1} has the same bytes")
    assert example.endswith(f"{anno(manual, 'train.txt')}:1")
