"""FashionAI keypoints submission files: writing, reading back, and their errors."""

import csv

import numpy as np
import pytest

from fashion_keras.evaluation.keypoint_submission import (
    Submission,
    read_submission,
    submission_header,
    write_submission,
)
from fashion_keras.heads import FASHIONAI_KEYPOINTS, KeypointHead
from fashion_keras_datasets.common.errors import AnnotationError

HEAD = FASHIONAI_KEYPOINTS
CATS = ["skirt", "blouse", "trousers", "dress", "outwear"]
IDS = [f"Images/{c}/{i:03d}.jpg" for i, c in enumerate(CATS)]


def _points(n=5, seed=0):
    return np.random.default_rng(seed).uniform(0, 500, size=(n, HEAD.num_keypoints, 2))


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def _rewrite(path, line, column, value):
    """Replaces the cell of 1-based ``line`` and 0-based ``column`` in the CSV at ``path``."""
    rows = _rows(path)
    rows[line - 1][column] = value
    path.write_text("\n".join(",".join(r) for r in rows) + "\n")


def test_header_rows_in_given_order_and_undefined_points_absent(tmp_path):
    path = tmp_path / "sub" / "submission.csv"
    points = _points()
    assert write_submission(path, IDS, CATS, points) == str(path)
    rows = _rows(path)
    assert rows[0] == ["image_id", "image_category", *HEAD.keypoints]
    assert len(rows[0]) == 26
    assert (rows[0][2], rows[0][-1]) == ("neckline_left", "bottom_right_out")
    assert [r[0] for r in rows[1:]] == IDS  # the test list's order, not sorted or grouped
    assert [r[1] for r in rows[1:]] == CATS
    for i, row in enumerate(rows[1:]):
        assert len(row) == 26
        mask = HEAD.defined_mask(CATS[i])
        for j, cell in enumerate(row[2:]):
            if mask[j]:
                x, y = np.floor(points[i, j] + 0.5).astype(int)
                assert cell == f"{x}_{y}_1"
            else:
                assert cell == "-1_-1_-1"
    skirt = rows[1][2:]
    assert sum(c != "-1_-1_-1" for c in skirt) == 4


def test_rounding_to_integer_pixels(tmp_path):
    points = np.zeros((1, 24, 2))
    j0, j1, j2, j3 = (HEAD.index(k) for k in HEAD.category("skirt").keypoints)
    points[0, j0] = (10.4, 10.6)
    points[0, j1] = (2.5, 3.5)  # halves go up, not to even
    points[0, j2] = (-0.4, -0.6)
    points[0, j3] = (99.0, 0.49999)
    path = tmp_path / "s.csv"
    write_submission(path, ["a.jpg"], ["skirt"], points)
    cells = _rows(path)[1][2:]
    assert [cells[j] for j in (j0, j1, j2, j3)] == ["10_11_1", "3_4_1", "0_-1_1", "99_0_1"]


def test_undefined_points_may_hold_anything(tmp_path):
    points = _points(1)
    defined = np.asarray(HEAD.defined_mask("trousers"))
    points[0, ~defined] = np.nan
    points[0, np.flatnonzero(~defined)[0]] = np.inf
    path = tmp_path / "s.csv"
    write_submission(path, ["t.jpg"], ["trousers"], points)
    cells = _rows(path)[1][2:]
    assert [c == "-1_-1_-1" for c in cells] == list(~defined)


def test_round_trip_through_read_submission(tmp_path):
    path = tmp_path / "s.csv"
    points = _points()
    write_submission(path, IDS, CATS, points)
    sub = read_submission(path, image_ids=IDS)
    assert isinstance(sub, Submission) and len(sub) == 5
    assert sub.image_ids == tuple(IDS) and sub.categories == tuple(CATS)
    defined = np.asarray([HEAD.defined_mask(c) for c in CATS])
    np.testing.assert_array_equal(sub.visibility, np.where(defined, 1, -1))
    np.testing.assert_array_equal(sub.keypoints[defined], np.floor(points[defined] + 0.5))
    assert np.isnan(sub.keypoints[~defined]).all()
    # reading back and writing again gives the same file
    again = tmp_path / "again.csv"
    write_submission(again, sub.image_ids, sub.categories, sub.keypoints)
    assert again.read_text() == path.read_text()


def test_empty_test_list_writes_the_header_only(tmp_path):
    path = tmp_path / "s.csv"
    write_submission(path, [], [], np.zeros((0, 24, 2)))
    assert path.read_text() == ",".join(submission_header()) + "\n"
    sub = read_submission(path)
    assert len(sub) == 0 and sub.keypoints.shape == (0, 24, 2)


def test_other_heads_set_the_columns(tmp_path):
    head = KeypointHead(
        "shoe",
        ("toe", "heel_left", "heel_right"),
        (("heel_left", "heel_right"),),
        {"sneaker": (("toe", "heel_left", "heel_right"), None), "clog": (("toe",), None)},
    )
    path = tmp_path / "s.csv"
    write_submission(path, ["a", "b"], ["clog", "sneaker"], np.ones((2, 3, 2)), head=head)
    assert _rows(path) == [
        ["image_id", "image_category", "toe", "heel_left", "heel_right"],
        ["a", "clog", "1_1_1", "-1_-1_-1", "-1_-1_-1"],
        ["b", "sneaker", "1_1_1", "1_1_1", "1_1_1"],
    ]
    assert read_submission(path, head).categories == ("clog", "sneaker")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(keypoints=np.zeros((5, 24))), r"keypoints must have shape \(N, 24, 2\).*\(5, 24\)"),
        (dict(keypoints=np.zeros((5, 23, 2))), r"got shape \(5, 23, 2\)"),
        (dict(image_ids=IDS[:4]), r"image_ids has 4 entries but keypoints has 5 rows"),
        (dict(categories=CATS + ["skirt"]), r"categories has 6 entries but keypoints has 5"),
        (
            dict(categories=["skirt", "shirt", *CATS[2:]]),
            r"categories\[1\] = 'shirt': expected one of \['blouse', 'outwear', 'trousers', "
            r"'skirt', 'dress'\] \(image 'Images/blouse/001.jpg'\)",
        ),
        (dict(image_ids=["a", "b", "a", "c", "d"]), r"image_ids\[2\] = 'a': .*also image_ids\[0\]"),
        (dict(image_ids=["a", "", "b", "c", "d"]), r"image_ids\[1\] = '': expected a non-empty"),
        (dict(image_ids=["a", "b,c", "d", "e", "f"]), r"image_ids\[1\] = 'b,c'.*without commas"),
    ],
)
def test_bad_arguments_name_the_field_and_value(tmp_path, kwargs, message):
    args = dict(image_ids=IDS, categories=CATS, keypoints=_points()) | kwargs
    path = tmp_path / "s.csv"
    with pytest.raises(ValueError, match=message):
        write_submission(path, **args)
    assert not path.exists() and list(tmp_path.iterdir()) == []  # nothing half-written


def test_non_finite_defined_coordinate_is_named(tmp_path):
    points = _points()
    j = HEAD.index("hemline_right")
    points[0, j, 1] = np.nan  # row 0 is a skirt, which defines hemline_right
    with pytest.raises(
        ValueError,
        match=r"keypoints\[0, 18\] \('hemline_right' of image 'Images/skirt/000.jpg', skirt\) = "
        r"\[.*, nan\]: expected finite pixel coordinates",
    ):
        write_submission(tmp_path / "s.csv", IDS, CATS, points)


@pytest.fixture
def good_file(tmp_path):
    path = tmp_path / "sub.csv"
    write_submission(path, IDS, CATS, _points())
    return path


# (line, column, value, message): one change to a good file, and the error it gives
_BAD_CELLS = [
    (1, 2, "neckline", r":1: header column 3 = 'neckline': expected 'neckline_left'"),
    (2, 1, "shirt", r":2: image_category = 'shirt': expected one of \['blouse'"),
    (3, 0, "", r":3: image_id = '': expected the test list's image path"),
    (2, 17, "12_13", r":2: waistband_left \(column 18\) = '12_13': expected x_y_v"),
    (2, 17, "1.5_x_1", r":2: waistband_left \(column 18\) = '1.5_x_1': expected x_y_v"),
    (2, 17, "12_13_2", r":2: waistband_left \(column 18\) = '12_13_2': expected a visibility"),
    (2, 17, "12_13_-1", r"= '12_13_-1': expected '-1_-1_-1' for an absent keypoint"),
    (
        2,
        17,
        "-1_-1_-1",
        r":2: waistband_left \(column 18\) = '-1_-1_-1': expected a predicted point x_y_1: "
        r"category 'skirt' defines 'waistband_left'",
    ),
    (
        2,
        2,
        "5_5_1",
        r":2: neckline_left \(column 3\) = '5_5_1': expected '-1_-1_-1': category 'skirt' does "
        r"not define 'neckline_left'",
    ),
    (4, 0, IDS[0], r":4: image_id = 'Images/skirt/000.jpg': expected each image once \(also on "),
]


@pytest.mark.parametrize("line, column, value, message", _BAD_CELLS)
def test_read_submission_names_file_line_field_and_value(good_file, line, column, value, message):
    _rewrite(good_file, line, column, value)
    with pytest.raises(AnnotationError, match=message) as err:
        read_submission(good_file)
    assert str(err.value).startswith(f"{good_file}:{line}: ")


def test_read_submission_checks_the_column_counts(good_file):
    rows = _rows(good_file)
    good_file.write_text(
        "\n".join(",".join(r) for r in [rows[0], rows[1], rows[2][:-1], *rows[3:]]) + "\n"
    )
    with pytest.raises(
        AnnotationError, match=r"sub.csv:3: number of columns = 25: expected 26 comma-separated"
    ):
        read_submission(good_file)
    good_file.write_text(",".join([*rows[0], "extra"]) + "\n")
    with pytest.raises(AnnotationError, match=r":1: number of header columns = 27: expected 26"):
        read_submission(good_file)
    good_file.write_text("")
    with pytest.raises(AnnotationError, match=r"sub.csv:1: header = '': expected image_id,"):
        read_submission(good_file)


def test_read_submission_can_relax_the_defined_points_and_check_the_test_list(good_file):
    _rewrite(good_file, 2, 2, "5_5_0")  # the skirt row gives a point the category lacks
    sub = read_submission(good_file, check_defined=False)
    assert sub.visibility[0, 0] == 0 and tuple(sub.keypoints[0, 0]) == (5.0, 5.0)
    with pytest.raises(
        AnnotationError,
        match=r":3: image_id = 'Images/blouse/001.jpg': expected 'Images/trousers/002.jpg' "
        r"\(row 2 of the test list",
    ):
        read_submission(good_file, image_ids=[IDS[0], IDS[2]], check_defined=False)
    with pytest.raises(AnnotationError, match=r"sub.csv: rows = 5: expected 6 .*'extra.jpg'"):
        read_submission(good_file, image_ids=[*IDS, "extra.jpg"], check_defined=False)
    with pytest.raises(AnnotationError, match=r":6: image_id = .*expected no more rows"):
        read_submission(good_file, image_ids=IDS[:4], check_defined=False)


def test_read_submission_accepts_crlf_bom_and_trailing_blank_lines(good_file):
    text = good_file.read_text()
    good_file.write_bytes(("\ufeff" + text.replace("\n", "\r\n") + "\r\n").encode("utf-8"))
    assert read_submission(good_file).image_ids == tuple(IDS)
