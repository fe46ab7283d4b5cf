"""A prepared dataset is reused only while its manual folder is unchanged.

Editing an annotation file or adding, removing or replacing an image prepares the dataset again
(with one log line naming what changed); an unchanged folder, or none at all, reuses it.
"""

from __future__ import annotations

import io
import logging
import pathlib
import shutil

import pytest
from dataset_helpers import examples
from dataset_helpers import prepare as build
from PIL import Image

from fashion_keras.data import sources
from fashion_keras.heads import load_heads_file
from fashion_keras_datasets.common.freshness import compare, fingerprint
from fashion_keras_datasets.custom_csv import custom_csv_dataset_builder as ccb
from fashion_keras_datasets.deepfashion_attributes import (
    deepfashion_attributes_dataset_builder as dfa,
)
from fashion_keras_datasets.synthetic import demo, dummy_data

DUMMY = pathlib.Path(ccb.__file__).parent / "dummy_data"
TRAIN = dummy_data.CUSTOM_CSV_SPLITS["train"]


def jpeg(colour, size=(40, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="JPEG", quality=90)
    return out.getvalue()


def changed_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "changed since it was prepared" in r.getMessage()]  # fmt: skip


@pytest.fixture
def manual(tmp_path):
    dst = tmp_path / "manual"
    shutil.copytree(DUMMY, dst)
    return dst


def edit_csv(manual, drop: str, relabel: tuple[str, str, str]) -> None:
    """Drops the row of image ``drop`` and replaces ``old`` by ``new`` in the row of ``image``."""
    path = manual / "labels.csv"
    image, old, new = relabel
    lines = path.read_bytes().decode("utf-8-sig").splitlines()
    lines = [line for line in lines if not line.startswith(drop + ",")]
    lines = [line.replace(old, new, 1) if line.startswith(image + ",") else line for line in lines]
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")


def test_an_edited_csv_is_prepared_again_through_get_builder(manual, tmp_path, caplog):
    heads = load_heads_file(manual / "heads.yaml")
    data_dir = str(tmp_path / "tfds")
    before = sources.get_builder("custom_csv", str(manual), data_dir, heads=heads)
    assert before.info.splits["train"].num_examples == TRAIN
    edit_csv(manual, "images/shirt_001.jpg", ("images/shirt_002.jpg", "short_sleeve", "long_sleeve"))  # fmt: skip
    with caplog.at_level(logging.INFO):
        after = sources.get_builder("custom_csv", str(manual), data_dir, heads=heads)
    assert after.info.splits["train"].num_examples == TRAIN - 1
    train = examples(after, "train")
    assert "images/shirt_001.jpg" not in train
    sleeve = after.info.features["labels"]["sleeve"]
    assert sleeve.int2str(train["images/shirt_002.jpg"]["labels"]["sleeve"]) == "long_sleeve"
    assert after.report["rows_in"] == len(dummy_data.CUSTOM_CSV_ROWS) - 1
    [line] = changed_lines(caplog)
    assert "labels.csv changed" in line and str(manual) in line and "\n" not in line


def test_an_added_image_is_prepared_again(manual, tmp_path, caplog):
    # dummy_data lists images/coat_001.jpg without the file: skipped as missing in train
    before = build(ccb.Builder, manual, tmp_path / "tfds", config="example")
    assert before.report["splits"]["train"]["skipped"] == {"missing_image": 1}
    (manual / "images" / "coat_001.jpg").write_bytes(jpeg((10, 200, 30)))
    with caplog.at_level(logging.INFO):
        after = build(ccb.Builder, manual, tmp_path / "tfds", config="example")
    assert after.info.splits["train"].num_examples == TRAIN + 1
    assert after.report["splits"]["train"]["skipped"] == {}
    [line] = changed_lines(caplog)
    assert "images: 1 added" in line


def test_a_replaced_image_is_prepared_again(tmp_path, caplog):
    manual = tmp_path / "demo"
    demo.generate_demo(manual, 4, 2, 0, seed=5, max_side=48)
    first = (manual / "Anno_fine" / "train.txt").read_text().split()[0]
    before = build(dfa.Builder, manual, tmp_path / "tfds")
    assert examples(before, "train")[first]["image"] == (manual / first).read_bytes()
    new = jpeg((250, 250, 0))
    (manual / first).write_bytes(new)
    with caplog.at_level(logging.INFO):
        after = build(dfa.Builder, manual, tmp_path / "tfds")
    assert examples(after, "train")[first]["image"] == new
    [line] = changed_lines(caplog)
    assert "images: 1 replaced" in line and "annotation" not in line


def test_a_header_only_csv_does_not_stay_prepared(manual, tmp_path):
    path = manual / "labels.csv"
    full = path.read_bytes()
    path.write_bytes(full.split(b"\r\n")[0] + b"\r\n")
    with pytest.raises(FileNotFoundError, match="labels.csv: train split"):
        build(ccb.Builder, manual, tmp_path / "tfds", config="example")
    path.write_bytes(full)
    builder = build(ccb.Builder, manual, tmp_path / "tfds", config="example")
    assert builder.info.splits["train"].num_examples == TRAIN


def test_an_unchanged_folder_is_reused_and_a_missing_one_too(manual, tmp_path, monkeypatch, caplog):
    # the TFDS folder inside the manual folder is not part of the source
    data_dir = manual / "tfds"
    build(ccb.Builder, manual, data_dir, config="example")
    (manual / ".DS_Store").write_bytes(b"finder")  # hidden files do not count

    def regenerate(*args, **kwargs):
        raise AssertionError("prepared again")

    monkeypatch.setattr(ccb.Builder, "_split_generators", regenerate)
    with caplog.at_level(logging.INFO):
        again = build(ccb.Builder, manual, data_dir, config="example")
    assert again.info.splits["train"].num_examples == TRAIN
    assert not changed_lines(caplog)
    # prepared data shipped without its manual folder is used as it is
    moved = tmp_path / "tfds_copy"
    shutil.copytree(data_dir, moved)
    reused = build(ccb.Builder, tmp_path / "gone", moved, config="example")
    assert reused.info.splits["train"].num_examples == TRAIN


# --- the fingerprint itself -----------------------------------------------------------------


def test_fingerprint_compares_annotations_by_content_and_other_files_by_size_and_time(tmp_path):
    root = tmp_path / "release"
    (root / "img" / "a").mkdir(parents=True)
    (root / "Anno").mkdir()
    (root / "Anno" / "list.txt").write_text("2\nimage_name\nimg/a/1.jpg\nimg/a/2.jpg\n")
    (root / "Anno" / "old.csv").write_text("x\n")
    for i in (1, 2, 3):
        (root / "img" / "a" / f"{i}.jpg").write_bytes(jpeg((i * 40, 0, 0)))
    (root / "img.zip").write_bytes(b"zip")
    (root / "tfds").mkdir()  # the TFDS folder inside the manual folder
    before = fingerprint(root, exclude=[root / "tfds"])
    assert set(before["annotations"]) == {"Anno/list.txt", "Anno/old.csv"}
    assert before["files"] == 4 and len(before["table"]) == 4 * 21
    # hidden files, the excluded folder and a copy elsewhere change nothing
    (root / ".DS_Store").write_bytes(b"x")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref")
    (root / "tfds" / "data.tfrecord").write_bytes(b"records")
    assert not compare(before, fingerprint(root, exclude=[root / "tfds"]))
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)  # keeps times
    assert not compare(before, fingerprint(copy, exclude=[copy / "tfds"]))

    (root / "Anno" / "list.txt").write_text("1\nimage_name\nimg/a/1.jpg\n")
    (root / "Anno" / "old.csv").unlink()
    (root / "Anno" / "new.json").write_text("{}")
    (root / "img" / "a" / "2.jpg").write_bytes(jpeg((0, 0, 200), size=(44, 48)))
    (root / "img" / "a" / "3.jpg").unlink()
    (root / "img" / "a" / "4.png").write_bytes(b"png")
    (root / "img" / "a" / "5.jpg").write_bytes(b"jpg")
    changes = compare(before, fingerprint(root, exclude=[root / "tfds"]))
    assert changes.annotations == {
        "Anno/list.txt": "changed",
        "Anno/new.json": "added",
        "Anno/old.csv": "removed",
    }
    assert changes.files["images"] == {"added": 2, "removed": 1, "replaced": 1}
    assert changes.files["other files"] == {"added": 0, "removed": 0, "replaced": 0}
    assert changes.describe() == (
        "Anno/list.txt changed, Anno/new.json added, Anno/old.csv removed; "
        "images: 2 added, 1 removed, 1 replaced"
    )
    moved = compare({**before, "manual_dir": "/elsewhere"}, fingerprint(root, exclude=[]))
    assert moved.describe().endswith("; prepared from /elsewhere")
