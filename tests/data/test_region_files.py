"""Region files: reading (errors, skips, clamping), writing, and the join with tf.data."""

from __future__ import annotations

import posixpath
import re

import numpy as np
import pytest
import tensorflow as tf
from conftest import boxed_image, encode

from fashion_keras.data.region_files import (
    RegionBox,
    append_region_rows,
    drop_torn_line,
    read_region_file,
    write_region_file,
)
from fashion_keras.data.region_lookup import (
    FallbackCounts,
    count_fallbacks,
    normalize_image_path_tf,
    region_lookup,
)
from fashion_keras_datasets.common.errors import AnnotationError

REGIONS = ("collar", "sleeves", "lower")
HEADER = "image,region,x1,y1,x2,y2"


def region_csv(tmp_path, *lines: str, header: str = HEADER, name: str = "regions.csv") -> str:
    path = tmp_path / name
    path.write_text("\n".join([header, *lines]) + "\n")
    return str(path)


def read_error(tmp_path, *lines: str, header: str = HEADER, **kwargs) -> AnnotationError:
    path = region_csv(tmp_path, *lines, header=header)
    with pytest.raises(AnnotationError) as info:
        read_region_file(path, REGIONS, **kwargs)
    return info.value


# --- reading -----------------------------------------------------------------------------------


def test_reads_boxes_with_and_without_score(tmp_path):
    path = region_csv(
        tmp_path,
        "img/Dress/x.jpg,collar,10,20,30.5,40,0.9",
        "./img/Dress/x.jpg,lower,0,50,60,100,",
        "r1/Images/blouse/y.jpg,collar,1,2,3,4,1",
        header=HEADER + ",score",
    )
    rf = read_region_file(path, REGIONS)
    assert rf.boxes == {
        ("img/Dress/x.jpg", "collar"): (10.0, 20.0, 30.5, 40.0, 0.9),
        ("img/Dress/x.jpg", "lower"): (0.0, 50.0, 60.0, 100.0, None),
        ("r1/Images/blouse/y.jpg", "collar"): (1.0, 2.0, 3.0, 4.0, 1.0),
    }
    assert rf.rows == 3 and rf.skipped == {} and rf.clamped == 0
    assert rf.box("img//Dress/./x.jpg", "collar") == RegionBox(10, 20, 30.5, 40, 0.9)
    assert rf.box("img/Dress/x.jpg", "sleeves") is None
    assert rf.box("img/Dress/other.jpg", "collar") is None
    with pytest.raises(ValueError, match="unknown region 'hood'"):
        rf.box("img/Dress/x.jpg", "hood")


def test_reads_without_score_column(tmp_path):
    rf = read_region_file(region_csv(tmp_path, "a.jpg,sleeves,0,0,5,5"), REGIONS)
    assert rf.boxes == {("a.jpg", "sleeves"): (0.0, 0.0, 5.0, 5.0, None)}


@pytest.mark.parametrize(
    "line, message, reason",
    [
        (
            "a.jpg,collar,1,2,3",
            "number of columns = 5: expected 6 (image,region,x1,y1,x2,y2, as in the header)",
            "wrong_column_count",
        ),
        (
            "a.jpg,collar,1,two,3,4",
            "y1 = 'two': expected a finite number (pixels)",
            "not_a_number",
        ),
        (
            "a.jpg,collar,1,2,nan,4",
            "x2 = 'nan': expected a finite number (pixels)",
            "not_a_number",
        ),
        (
            "a.jpg,collar,5,2,5,4",
            "x2 = '5': expected a number > x1 = 5 (the box's exclusive far "
            "edge, in pixels) (the box is inverted or empty)",
            "bbox_inverted",
        ),
        (
            "a.jpg,collar,1,9.5,3,4",
            "y2 = '4': expected a number > y1 = 9.5 (the box's exclusive far "
            "edge, in pixels) (the box is inverted or empty)",
            "bbox_inverted",
        ),
        (
            "a.jpg,hood,1,2,3,4",
            "region = 'hood': expected one of ['collar', 'sleeves', 'lower']",
            "unknown_region",
        ),
        (
            ",collar,1,2,3,4",
            "image = '': expected the image path as the dataset names it (image/filename)",
            "bad_path",
        ),
    ],
)
def test_row_errors(tmp_path, line, message, reason):
    error = read_error(tmp_path, "ok.jpg,lower,0,0,1,1", line)
    assert str(error) == f"{tmp_path / 'regions.csv'}:3: {message}"
    assert error.reason == reason and error.line == 3


@pytest.mark.parametrize(
    "score, message",
    [
        ("1.5", "score = '1.5': expected a number in [0, 1] or an empty cell"),
        ("-0.1", "score = '-0.1': expected a number in [0, 1] or an empty cell"),
        ("high", "score = 'high': expected a number in [0, 1] or an empty cell"),
    ],
)
def test_score_errors(tmp_path, score, message):
    error = read_error(tmp_path, f"a.jpg,collar,1,2,3,4,{score}", header=HEADER + ",score")
    assert str(error) == f"{tmp_path / 'regions.csv'}:2: {message}"
    assert error.reason == "bad_score"


def test_duplicate_row_names_the_first_line(tmp_path):
    error = read_error(
        tmp_path, "a.jpg,collar,1,2,3,4", "b.jpg,collar,1,2,3,4", "./a.jpg,collar,5,6,7,8"
    )
    assert str(error) == (
        f"{tmp_path / 'regions.csv'}:4: (image, region) = 'a.jpg,collar': expected one row per "
        "image and region (line 2 already has this image's 'collar' box)"
    )
    assert error.reason == "duplicate_row"


@pytest.mark.parametrize(
    "header, message",
    [
        ("image,region,x1,y1,x2", "header column 6 = '': expected 'y2'"),
        ("image,part,x1,y1,x2,y2", "header column 2 = 'part': expected 'region'"),
        (HEADER + ",conf", "header column 7 = 'conf': expected 'score'"),
        (HEADER + ",score,extra", "number of header columns = 8: expected 7"),
    ],
)
def test_header_errors(tmp_path, header, message):
    error = read_error(tmp_path, "a.jpg,collar,1,2,3,4", header=header)
    assert str(error).startswith(f"{tmp_path / 'regions.csv'}:1: {message} (")
    assert "image,region,x1,y1,x2,y2[,score]" in str(error)
    assert error.reason == "bad_header"


def test_blank_line_inside_is_an_error(tmp_path):
    error = read_error(tmp_path, "a.jpg,collar,1,2,3,4", "", "b.jpg,collar,1,2,3,4")
    assert (
        str(error)
        == f"{tmp_path / 'regions.csv'}:3: row = '': expected a non-empty row (blank line)"
    )


def test_box_wholly_outside_the_image_is_a_bad_row(tmp_path):
    error = read_error(tmp_path, "a.jpg,collar,100,2,120,4", image_sizes={"a.jpg": (80, 40)})
    assert str(error) == (
        f"{tmp_path / 'regions.csv'}:2: x1,y1,x2,y2 = '100,2,120,4': expected a box overlapping "
        "its 80x40 photo (x in [0, 80], y in [0, 40]) (the box lies wholly outside the photo)"
    )
    assert error.reason == "bbox_outside_image"


def test_clamps_boxes_reaching_outside_the_image(tmp_path):
    path = region_csv(
        tmp_path,
        "a.jpg,collar,-5,10,90,30",  # reaches left and right
        "./a.jpg,lower,0,20,80,40",  # exactly inside: not clamped
        "b.jpg,collar,-5,-5,500,500",  # size unknown: kept as is
        "a.jpg,sleeves,10,39,20,60",  # reaches below
    )
    rf = read_region_file(path, REGIONS, image_sizes={"./a.jpg": (80, 40)})
    assert rf.box("a.jpg", "collar") == (0.0, 10.0, 80.0, 30.0, None)
    assert rf.box("a.jpg", "lower") == (0.0, 20.0, 80.0, 40.0, None)
    assert rf.box("b.jpg", "collar") == (-5.0, -5.0, 500.0, 500.0, None)
    assert rf.box("a.jpg", "sleeves") == (10.0, 39.0, 20.0, 40.0, None)
    assert rf.clamped == 2 and rf.skipped == {}
    assert rf.examples[0] == (f"{path}:2: bbox_clamped: box -5,10,90,30 clamped to the 80x40 photo")
    assert "clamped 2" in rf.format()


def test_skip_bad_rows_counts_every_reason(tmp_path):
    path = region_csv(
        tmp_path,
        "a.jpg,collar,1,2,3,4,0.5",
        "a.jpg,collar,1,2,3,4,0.5",  # duplicate
        "a.jpg,hood,1,2,3,4,",  # unknown region
        "b.jpg,collar,1,x,3,4,",  # not a number
        "b.jpg,lower,3,2,1,4,",  # inverted
        "c.jpg,lower,1,2,3,4,2",  # score
        "c.jpg,lower,1,2,3",  # columns
        "c.jpg,lower,1,2,3,4,",  # kept: the bad rows above claimed nothing
        "c.jpg,collar,500,2,600,4,",  # outside
        "c.jpg,sleeves,-1,2,3,4,",  # clamped
        header=HEADER + ",score",
    )
    rf = read_region_file(path, REGIONS, image_sizes={"c.jpg": (100, 50)}, skip_bad_rows=True)
    assert set(rf.boxes) == {("a.jpg", "collar"), ("c.jpg", "lower"), ("c.jpg", "sleeves")}
    assert rf.skipped == {
        "bad_row:duplicate_row": 1,
        "bad_row:unknown_region": 1,
        "bad_row:not_a_number": 1,
        "bad_row:bbox_inverted": 1,
        "bad_row:bad_score": 1,
        "bad_row:wrong_column_count": 1,
        "bad_row:bbox_outside_image": 1,
    }
    assert rf.rows == 10 and rf.num_skipped == 7 and rf.clamped == 1
    assert rf.examples[0].startswith(f"{path}:3: bad_row:duplicate_row: (image, region) = ")
    assert len(rf.examples) == 5  # the first five of eight
    summary = rf.format().splitlines()[0]
    assert summary.startswith(f"{path}: kept 3 of 10 rows; skipped 7 (bad_row:bad_score: 1, ")
    assert summary.endswith("; clamped 1")


def test_skip_bad_rows_still_raises_on_a_bad_header(tmp_path):
    path = region_csv(tmp_path, "a.jpg,collar,1,2,3,4", header="image,region,x,y,w,h")
    with pytest.raises(AnnotationError, match="header column 3 = 'x'"):
        read_region_file(path, REGIONS, skip_bad_rows=True)


def test_bad_region_names_are_rejected(tmp_path):
    path = region_csv(tmp_path, "a.jpg,collar,1,2,3,4")
    with pytest.raises(ValueError, match="repeat"):
        read_region_file(path, ("collar", "collar"))
    with pytest.raises(ValueError, match="without ',' or '|'"):
        read_region_file(path, ("collar|x",))


# --- writing -----------------------------------------------------------------------------------


def test_round_trip_with_scores(tmp_path):
    rows = [
        ("img/Dress/x.jpg", "collar", 10, 20.25, 30, 40, 0.875),
        ("./odd, name.jpg", "lower", 0.1, 0.2, 1 / 3, 100, None),  # comma: quoted
        ("r/Images/blouse/y.jpg", "sleeves", -3, 0, 5e3, 7, 0.0),
    ]
    path = write_region_file(tmp_path / "sub" / "out.csv", rows)
    text = (tmp_path / "sub" / "out.csv").read_text().splitlines()
    assert text[0] == HEADER + ",score"
    assert text[1] == "img/Dress/x.jpg,collar,10,20.25,30,40,0.875"
    assert text[2] == '"odd, name.jpg",lower,0.1,0.2,0.3333333333333333,100,'
    rf = read_region_file(path, REGIONS)
    assert rf.boxes == {
        ("img/Dress/x.jpg", "collar"): (10.0, 20.25, 30.0, 40.0, 0.875),
        ("odd, name.jpg", "lower"): (0.1, 0.2, 1 / 3, 100.0, None),
        ("r/Images/blouse/y.jpg", "sleeves"): (-3.0, 0.0, 5000.0, 7.0, 0.0),
    }
    # and back again, from the RegionFile itself: the same bytes
    again = write_region_file(tmp_path / "again.csv", rf)
    assert (tmp_path / "again.csv").read_text() == (tmp_path / "sub" / "out.csv").read_text()
    assert read_region_file(again, REGIONS).boxes == rf.boxes
    assert not list(tmp_path.glob("**/*.tmp-*"))


def test_write_without_scores_has_no_score_column(tmp_path):
    boxes = {("a.jpg", "collar"): (1, 2, 3, 4), ("b.jpg", "collar"): (1, 2, 3, 4, None)}
    path = write_region_file(tmp_path / "r.csv", boxes)
    assert (
        tmp_path / "r.csv"
    ).read_text() == f"{HEADER}\na.jpg,collar,1,2,3,4\nb.jpg,collar,1,2,3,4\n"
    assert read_region_file(path, REGIONS).box("b.jpg", "collar") == (1, 2, 3, 4, None)


@pytest.mark.parametrize(
    "row, expected",
    [
        (("a.jpg", "collar", 3, 2, 1, 4), "finite x1 < x2 and y1 < y2"),
        (("a.jpg", "collar", 1, 2, 3, 4, 1.5), "a score in [0, 1] or None"),
        (("a.jpg", "collar", 1, 2, 3), "(image, region, x1, y1, x2, y2[, score])"),
        (("", "collar", 1, 2, 3, 4), "an image path"),
    ],
)
def test_write_rejects_rows_the_reader_would_reject(tmp_path, row, expected):
    with pytest.raises(ValueError, match=r"region row 1 = .*: expected " + re.escape(expected)):
        write_region_file(tmp_path / "r.csv", [("ok.jpg", "lower", 0, 0, 1, 1), row])
    assert not (tmp_path / "r.csv").exists()


def test_write_rejects_duplicates(tmp_path):
    rows = [("a.jpg", "collar", 0, 0, 1, 1), ("./a.jpg", "collar", 0, 0, 2, 2)]
    with pytest.raises(ValueError, match="one row per image and region"):
        write_region_file(tmp_path / "r.csv", rows)


def test_append_creates_the_header_once_and_appends(tmp_path):
    path = tmp_path / "sub" / "r.csv"
    seen: set[tuple[str, str]] = set()
    assert append_region_rows(path, [], seen) == 0  # the header alone: a valid, empty file
    assert path.read_text() == HEADER + ",score\n"
    assert read_region_file(path, REGIONS).boxes == {}
    assert append_region_rows(path, [("./a.jpg", "collar", 1, 2, 3.5, 4, 0.25)], seen) == 1
    assert append_region_rows(path, [("b, c.jpg", "lower", 0, 0, 1, 1, None)], seen) == 1
    assert path.read_text().splitlines() == [
        HEADER + ",score",
        "a.jpg,collar,1,2,3.5,4,0.25",
        '"b, c.jpg",lower,0,0,1,1,',
    ]
    assert seen == {("a.jpg", "collar"), ("b, c.jpg", "lower")}
    assert read_region_file(path, REGIONS).boxes == {
        ("a.jpg", "collar"): (1.0, 2.0, 3.5, 4.0, 0.25),
        ("b, c.jpg", "lower"): (0.0, 0.0, 1.0, 1.0, None),
    }
    assert not list(tmp_path.glob("**/*.tmp-*"))


def test_append_rejects_a_bad_batch_whole(tmp_path):
    path = tmp_path / "r.csv"
    seen: set[tuple[str, str]] = set()
    append_region_rows(path, [("a.jpg", "collar", 0, 0, 1, 1, 0.5)], seen)
    before = path.read_text()
    with pytest.raises(ValueError, match=r"region row 1 = .*one row per image and region"):
        append_region_rows(
            path, [("b.jpg", "collar", 0, 0, 1, 1, 0.5), ("./a.jpg", "collar", 0, 0, 2, 2)], seen
        )
    with pytest.raises(ValueError, match=r"region row 0 = .*a score in \[0, 1\] or None"):
        append_region_rows(path, [("c.jpg", "collar", 0, 0, 1, 1, 2.0)], seen)
    assert path.read_text() == before
    assert seen == {("a.jpg", "collar")}


def test_append_needs_the_score_header(tmp_path):
    path = region_csv(tmp_path, "a.jpg,collar,0,0,1,1")
    with pytest.raises(
        ValueError, match=r"r(egions)?.csv: header 'image,region,x1,y1,x2,y2': expected .*score"
    ):
        append_region_rows(path, [("b.jpg", "collar", 0, 0, 1, 1, 0.5)])


def test_append_drops_a_torn_last_line(tmp_path):
    path = tmp_path / "r.csv"
    append_region_rows(path, [("a.jpg", "collar", 0, 0, 1, 1, 0.5)])
    intact = path.read_text()
    assert not drop_torn_line(path)
    with open(path, "a") as f:
        f.write("b.jpg,coll")  # a killed write
    append_region_rows(path, [("b.jpg", "collar", 0, 0, 1, 1, 0.5)])
    assert path.read_text() == intact + "b.jpg,collar,0,0,1,1,0.5\n"
    (tmp_path / "torn.csv").write_text("image,reg")
    with pytest.raises(ValueError, match=r"torn.csv: no complete line .*delete it"):
        drop_torn_line(tmp_path / "torn.csv")


# --- joining with tf.data ----------------------------------------------------------------------

H, W = 40, 80  # a non-square photo
GARMENT = (0.1, 0.2, 0.9, 0.8)


def joined(tmp_path, filenames, regions=("collar", "lower"), **extra):
    path = region_csv(
        tmp_path,
        "img/Dress/x.jpg,collar,8,4,40,20,0.9",  # (ymin, xmin, ymax, xmax) .1 .1 .5 .5
        "./img/Dress/y.jpg,lower,-8,20,88,60,",  # reaches outside: clamped by the join
        "img/Dress/z.jpg,collar,100,0,120,10,",  # wholly outside the 80x40 photo
        header=HEADER + ",score",
    )
    rf = read_region_file(path, REGIONS)
    image = encode(boxed_image(H, W, (5, 5, 30, 60)))
    n = len(filenames)
    ds = tf.data.Dataset.from_tensor_slices(
        {
            "image": [image] * n,
            "image/filename": list(filenames),
            "bbox": np.array([GARMENT] * n, np.float32),
            **extra,
        }
    )
    lookup = region_lookup(rf, regions)
    return ds.map(lookup), lookup


def test_join_found_boxes_are_normalised_to_the_photo(tmp_path):
    ds, _ = joined(tmp_path, ["img/Dress/x.jpg", "img//Dress/./y.jpg"])
    first, second = list(ds.as_numpy_iterator())
    np.testing.assert_allclose(first["region_boxes"]["collar"], [4 / H, 8 / W, 20 / H, 40 / W])
    assert first["region_found"]["collar"] and not first["region_found"]["lower"]
    np.testing.assert_allclose(first["region_boxes"]["lower"], GARMENT)
    # path normalisation both sides; clamped to [0, 1]
    assert second["region_found"]["lower"] and not second["region_found"]["collar"]
    np.testing.assert_allclose(second["region_boxes"]["lower"], [20 / H, 0.0, 1.0, 1.0])
    np.testing.assert_allclose(second["region_boxes"]["collar"], GARMENT)
    # the example's own features pass through
    assert first["image/filename"] == b"img/Dress/x.jpg"
    np.testing.assert_allclose(first["bbox"], GARMENT)
    assert first["region_boxes"]["collar"].dtype == np.float32


def test_join_uses_size_features_and_rejects_boxes_outside(tmp_path):
    # with image/height and image/width, those are the photo's size (here twice the JPEG's)
    ds, _ = joined(
        tmp_path,
        ["img/Dress/x.jpg", "img/Dress/z.jpg"],
        **{"image/height": [2 * H, H], "image/width": [2 * W, W]},
    )
    first, second = list(ds.as_numpy_iterator())
    np.testing.assert_allclose(
        first["region_boxes"]["collar"], [4 / (2 * H), 8 / (2 * W), 20 / (2 * H), 40 / (2 * W)]
    )
    assert not second["region_found"]["collar"]  # box wholly outside: the garment box
    np.testing.assert_allclose(second["region_boxes"]["collar"], GARMENT)


def test_join_decoded_images_and_png(tmp_path):
    rf = read_region_file(region_csv(tmp_path, "p.png,collar,0,0,40,40"), REGIONS)
    lookup = region_lookup(rf, ["collar"])
    png = encode(boxed_image(H, W, (0, 0, 1, 1)), fmt="PNG")
    example = {"image": tf.constant(png), "image/filename": tf.constant("p.png")}
    out = lookup(example)
    np.testing.assert_allclose(out["region_boxes"]["collar"].numpy(), [0, 0, 1, 0.5])
    decoded = {"image": tf.zeros([H, 2 * W, 3], tf.uint8), "image/filename": "./p.png"}
    out = lookup(decoded)  # a decoded image gives its own shape
    np.testing.assert_allclose(out["region_boxes"]["collar"].numpy(), [0, 0, 1, 0.25])
    # no bbox: the fallback is the whole photo
    out = lookup({"image": tf.constant(png), "image/filename": tf.constant("q.png")})
    assert not out["region_found"]["collar"].numpy()
    np.testing.assert_allclose(out["region_boxes"]["collar"].numpy(), [0, 0, 1, 1])


def test_lookup_checks_its_regions(tmp_path):
    rf = read_region_file(region_csv(tmp_path, "a.jpg,collar,1,2,3,4"), REGIONS)
    with pytest.raises(ValueError, match="unknown region 'hood'"):
        region_lookup(rf, ["collar", "hood"])
    # a region the file allows but has no box for: every example falls back
    lookup = region_lookup(rf, ["sleeves"])
    assert lookup.num_boxes == 0
    _, found = lookup.pixel_boxes(tf.constant("a.jpg"))
    assert not found["sleeves"].numpy()


def test_count_fallbacks(tmp_path):
    names = ["img/Dress/x.jpg", "img/Dress/y.jpg", "img/Dress/z.jpg", "other.jpg"]
    ds, _ = joined(tmp_path, names, regions=("collar", "lower", "sleeves"))
    counts = count_fallbacks(ds)
    assert counts == FallbackCounts(4, {"collar": 3, "lower": 3, "sleeves": 4})
    assert counts.format("train") == (
        "train: 4 examples; fell back to the garment box: collar 3, lower 3, sleeves 4"
    )
    # batched datasets and python examples count the same
    assert count_fallbacks(ds.batch(3), ["lower"]) == FallbackCounts(4, {"lower": 3})
    python = [{"region_found": {"collar": True}}, {"region_found": {"collar": False}}]
    assert count_fallbacks(python) == FallbackCounts(2, {"collar": 1})


def test_tf_path_normalisation_matches_python():
    paths = ["./a.jpg", "a//b.jpg", "a/./b.jpg", "a/././b/", "a/b/.", ".b/c", "a./b", "x"]
    got = normalize_image_path_tf(tf.constant(paths)).numpy().astype(str).tolist()
    assert got == [posixpath.normpath(p) for p in paths]
