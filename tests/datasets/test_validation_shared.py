"""Shared builder code (fashion_keras_datasets.common): images, CSV rows, duplicates, reports."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from fashion_keras_datasets.common.builder import RowPolicy
from fashion_keras_datasets.common.errors import AnnotationError, ImageProblem
from fashion_keras_datasets.common.images import (
    CrossSplitDuplicates,
    ImageLimits,
    file_md5,
    hash_bucket,
    prepare_image,
)
from fashion_keras_datasets.common.report import BuildReport, SkipReport, format_build_report
from fashion_keras_datasets.common.rows import Row, parse_label_string, read_csv_rows
from fashion_keras_datasets.fashionai_attributes import Builder as FashionAIBuilder
from fashion_keras_datasets.synthetic import dummy_files

DRAWING = dummy_files.drawing(5)  # 48 x 36 RGB


def write(tmp_path, kind: str):
    path = tmp_path / f"{kind}.jpg"  # every kind behind a .jpg name, as in real releases
    path.write_bytes(dummy_files.AWKWARD[kind](DRAWING))
    return path


@pytest.mark.parametrize(
    "kind, reencoded",
    [
        ("jpeg", False),
        ("gray_jpeg", False),
        ("cmyk_jpeg", True),
        ("png", True),
        ("rgba_png", True),
        ("png16_gray", True),
        ("png16_rgb", True),
        ("gif", True),
        ("bmp", True),
        ("webp", True),
    ],
)
def test_prepare_image_gives_jpeg_tensorflow_decodes_to_rgb(tmp_path, kind, reencoded):
    path = write(tmp_path, kind)
    image = prepare_image(path)
    assert image.reencoded == reencoded
    assert (image.info.width, image.info.height) == (36, 48)
    assert image.data[:2] == b"\xff\xd8"
    if not reencoded:
        assert image.data == path.read_bytes()  # kept byte for byte
    decoded = tf.io.decode_jpeg(image.data, channels=3).numpy()
    assert decoded.shape == (48, 36, 3)
    assert image.md5 == file_md5(path)


def test_sixteen_bit_png_is_rescaled_not_clipped(tmp_path):
    image = prepare_image(write(tmp_path, "png16_gray"))
    decoded = tf.io.decode_jpeg(image.data, channels=3).numpy().astype(float)
    gray = np.asarray(Image.fromarray(DRAWING).convert("L"), float)
    assert abs(decoded.mean() - gray.mean()) < 3  # clipping 16-bit values would give ~255
    rgb = prepare_image(write(tmp_path, "png16_rgb"))
    decoded = tf.io.decode_jpeg(rgb.data, channels=3).numpy().astype(float)
    # JPEG noise aside, each channel keeps its level (the high byte of each 16-bit value)
    np.testing.assert_allclose(decoded.mean(axis=(0, 1)), DRAWING.mean(axis=(0, 1)), atol=3)


def test_transparent_pixels_become_white_and_cmyk_keeps_its_colours(tmp_path):
    rgba = prepare_image(write(tmp_path, "rgba_png"))
    decoded = tf.io.decode_jpeg(rgba.data, channels=3).numpy().astype(float)
    assert decoded[0].mean() > 240  # the transparent top rows
    cmyk = prepare_image(write(tmp_path, "cmyk_jpeg"))
    decoded = tf.io.decode_jpeg(cmyk.data, channels=3).numpy().astype(float)
    np.testing.assert_allclose(decoded.mean(axis=(0, 1)), DRAWING.mean(axis=(0, 1)), atol=6)


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("empty", "empty_image"),
        ("truncated_jpeg", "unreadable_image"),
        ("not_an_image", "unreadable_image"),
        ("one_by_one", "image_too_small"),
        ("bomb", "image_too_large"),
    ],
)
def test_unusable_images_raise_an_image_problem_with_a_reason(tmp_path, kind, reason):
    with pytest.raises(ImageProblem) as e:
        prepare_image(write(tmp_path, kind))
    assert e.value.reason == reason
    assert str(tmp_path) in str(e.value)


def test_missing_image_and_folder(tmp_path):
    for path in (tmp_path / "nope.jpg", tmp_path):
        with pytest.raises(ImageProblem) as e:
            prepare_image(path)
        assert e.value.reason == "missing_image"


def test_image_limits_are_checked_from_the_header(tmp_path):
    path = write(tmp_path, "jpeg")
    limits = ImageLimits(max_pixels=36 * 48 - 1, min_side=8)
    with pytest.raises(ImageProblem, match="1728 pixels, over the cap of 1727"):
        prepare_image(path, limits)
    with pytest.raises(ImageProblem, match="a side below 37") as e:
        prepare_image(path, ImageLimits(min_side=37))
    assert e.value.reason == "image_too_small"
    assert prepare_image(path, ImageLimits(36 * 48, 36)).info.width == 36
    # a bomb under PIL's own limit but over ours: never decoded, our message
    (tmp_path / "b.png").write_bytes(dummy_files.bomb_png(8000))
    with pytest.raises(ImageProblem, match="64000000 pixels, over the cap") as e:
        prepare_image(tmp_path / "b.png")
    assert e.value.reason == "image_too_large"


def test_read_csv_rows_keeps_line_numbers_through_quotes_bom_crlf(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes(
        '\ufeffimage,notes\r\na.jpg,plain\r\n\r\nb.jpg,"two\r\nlines, comma"\r\nc.jpg , x\r\n\r\n'.encode()
    )
    header, rows = read_csv_rows(path, header=True)
    assert header == ("image", "notes")
    assert [(r.line, r.fields) for r in rows] == [
        (2, ("a.jpg", "plain")),
        (3, ()),  # an inner blank line is kept, with its line, for the caller to report
        (4, ("b.jpg", "two\nlines, comma")),
        (6, ("c.jpg", "x")),
    ]
    assert rows[0].where == f"{path}:2" and rows[0].text == "a.jpg,plain"
    _, rows = read_csv_rows(path, header=False)
    assert rows[0].fields == ("image", "notes") and rows[0].line == 1


def test_annotation_error_message_names_file_line_field_value_and_pickles():
    import pickle

    row = Row("label.csv", 7, ("a.jpg", "x"), sep=",")
    err = row.error("task", "x", "one of [...]", note="n", reason="unknown_task")
    assert str(err) == "label.csv:7: task = 'x': expected one of [...] (n)"
    assert err.where == "label.csv:7" and err.reason == "unknown_task"
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err) and again.reason == "unknown_task"


@pytest.mark.parametrize(
    "token, reason",
    [("nyn", "label_length"), ("nnnn", "label_y_count"), ("ynyn", "label_y_count"),
     ("nyxn", "label_characters"), ("nYnn", "label_characters")],
)  # fmt: skip
def test_label_string_problems_have_distinct_reasons(token, reason):
    row = Row("label.csv", 3, ("a.jpg", "t", token), sep=",")
    with pytest.raises(AnnotationError) as e:
        parse_label_string(row, 2, ["a", "b", "c", "d"], "label_string")
    assert e.value.reason == reason
    assert str(e.value).startswith(f"label.csv:3: label_string = {token!r}: expected 4 characters")


def test_cross_split_duplicates_stay_in_the_first_split():
    finder = CrossSplitDuplicates(("train", "val", "test"))
    finder.add("test", "t1", "A", "q.csv:1")  # seen in test first, but train outranks it
    finder.add("val", "v1", "A", "l.csv:9")
    finder.add("train", "r1", "A", "l.csv:2")
    finder.add("train", "r2", "A", "l.csv:3")  # same bytes twice in train: both kept
    finder.add("val", "v2", "B", "l.csv:4")
    finder.add("test", "t2", "B", "q.csv:2")
    finder.add("test", "t3", None, "q.csv:3")  # unreadable: reported elsewhere
    assert finder.duplicates() == {
        ("test", "t1"): "l.csv:2",
        ("val", "v1"): "l.csv:2",
        ("test", "t2"): "l.csv:4",
    }


def test_build_report_totals_and_format():
    report = BuildReport("ds", "cfg")
    report.add_file("a.csv", 4)
    train = report.split("train")
    train.declare_heads({"sleeve": ["long", "short"]})
    train.keep({"sleeve": "long"})
    train.keep({"sleeve": None})
    train.skip("missing_image", "a.csv:3", "gone")
    metadata = {}
    with pytest.raises(RuntimeError, match="4 rows read .* but 2 written \\+ 1 reported"):
        report.finish_split("train", metadata)
    report.split("val").skip("bad_row:unknown_task", "a.csv:4", "task = 'x'")
    summary = report.finish_split("val", metadata)
    assert metadata["report"] == summary
    assert (summary["rows_in"], summary["rows_written"], summary["rows_reported"]) == (4, 2, 2)
    assert summary["splits"]["train"]["heads"] == {
        "sleeve": {"labelled": 1, "classes": {"long": 1, "short": 0}}
    }
    text = format_build_report(summary, classes=True)
    assert text.splitlines()[0] == "ds/cfg: 4 rows in = 2 written + 2 reported"
    assert "sleeve: long 1, short 0" in text and "a.csv:4: task = 'x'" in text


def test_row_policy_raises_or_counts():
    err = Row("f.txt", 2, ("x",)).error("f", "x", "y", reason="bad")
    report = SkipReport("ds", "train")
    with pytest.raises(AnnotationError):
        RowPolicy(False).bad_row(err, report)
    RowPolicy(True).bad_row(err, report)
    assert report.skipped == {"bad_row:bad": 1}
    build = BuildReport("ds")
    RowPolicy(True).file_problem(err, build)
    assert build.notes == [str(err)]


def test_skip_bad_rows_config_names_resolve_for_every_predefined_config():
    config = FashionAIBuilder.get_builder_config("m_half_skip_bad_rows")
    assert config.skip_bad_rows and config.m_weight == 0.5 and config.name == "m_half_skip_bad_rows"
    assert FashionAIBuilder.get_builder_config("m_half_skip_bad_rows") is config  # stable
    assert not FashionAIBuilder.get_builder_config("m_half").skip_bad_rows
    assert FashionAIBuilder.get_builder_config("nope_skip_bad_rows") is None


def test_hash_bucket_is_stable():
    assert hash_bucket("Images/x/a.jpg") == hash_bucket("Images/x/a.jpg")
    buckets = {hash_bucket(f"{i}.jpg") for i in range(500)}
    assert min(buckets) >= 0 and max(buckets) < 100 and len(buckets) > 90


def test_awkward_encodings_really_are_what_they_claim():
    formats = {
        k: Image.open(io.BytesIO(dummy_files.AWKWARD[k](DRAWING)))
        for k in ("cmyk_jpeg", "png16_gray", "png16_rgb", "gif", "webp", "rgba_png")
    }
    assert formats["cmyk_jpeg"].mode == "CMYK"
    assert formats["png16_gray"].mode == "I;16"
    assert formats["gif"].format == "GIF" and formats["webp"].format == "WEBP"
    assert formats["rgba_png"].mode == "RGBA"
    png16 = dummy_files.AWKWARD["png16_rgb"](DRAWING)
    assert png16[24:26] == b"\x10\x02"  # IHDR: bit depth 16, colour type 2 (RGB)
    bomb = dummy_files.bomb_png()
    assert len(bomb) < 200 and bomb[16:24] == (40_000).to_bytes(4, "big") * 2
