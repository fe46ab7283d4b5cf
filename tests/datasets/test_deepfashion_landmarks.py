"""DeepFashion landmarks (formats.md sections 5 and 2.1) in both DeepFashion builders.

``keypoints/deepfashion_landmarks`` holds 8 rows (x, y, v) in original pixels: the slots of each
clothes type, DeepFashion's visibility mapped (0 -> 1, 1 -> 0, 2 -> -1), -1 where absent; every
bad landmark row stops the build with ``file:line: field = 'value': expected ...`` or is
counted under ``<config>_skip_bad_rows``. The fixtures are the builders' dummy_data/ folders;
tests that change them work on a private copy.
"""

from __future__ import annotations

import pathlib
import shutil

import numpy as np
import pytest
from dataset_helpers import examples, prepare
from PIL import Image

from fashion_keras.heads import DEEPFASHION_LANDMARKS
from fashion_keras_datasets.common.errors import AnnotationError
from fashion_keras_datasets.common.report import SkipReport, format_split_report
from fashion_keras_datasets.deepfashion_attributes import (
    deepfashion_attributes_dataset_builder as dfa,
)
from fashion_keras_datasets.deepfashion_category import deepfashion_category_dataset_builder as dfc
from fashion_keras_datasets.synthetic import deepfashion_dummy_data

DUMMY = pathlib.Path(dfc.__file__).parent / "dummy_data"
DUMMY_FINE = pathlib.Path(dfa.__file__).parent / "dummy_data"
ROWS = deepfashion_dummy_data.DEEPFASHION_CATEGORY_ROWS
HEAD = "deepfashion_landmarks"
# The slots (indices in collar_left, collar_right, sleeve_left, sleeve_right, waistline_left,
# waistline_right, hem_left, hem_right) each clothes type's landmarks fill, in file order.
SLOTS = {1: (0, 1, 2, 3, 6, 7), 2: (4, 5, 6, 7), 3: (0, 1, 2, 3, 4, 5, 6, 7)}
V = {0: 1.0, 1: 0.0, 2: -1.0}  # DeepFashion visibility -> v
EXPECTED_NAMES = [
    "collar_left", "collar_right", "sleeve_left", "sleeve_right",
    "waistline_left", "waistline_right", "hem_left", "hem_right",
]  # fmt: skip


def build_category(manual, tmp_path, config="category") -> dfc.Builder:
    return prepare(dfc.Builder, manual, tmp_path / "tfds", config=config)


def build_fine(manual, tmp_path, config="default") -> dfa.Builder:
    return prepare(dfa.Builder, manual, tmp_path / "tfds", config=config)


@pytest.fixture(scope="module")
def category_build(tmp_path_factory):
    return build_category(DUMMY, tmp_path_factory.mktemp("dfl"))


@pytest.fixture(scope="module")
def fine_build(tmp_path_factory):
    return build_fine(DUMMY_FINE, tmp_path_factory.mktemp("dfl_fine"))


@pytest.fixture
def manual(tmp_path):
    dst = tmp_path / "manual"
    shutil.copytree(DUMMY, dst)
    return dst


@pytest.fixture
def manual_fine(tmp_path):
    dst = tmp_path / "manual"
    shutil.copytree(DUMMY_FINE, dst)
    return dst


def landmark_file(manual) -> pathlib.Path:
    return manual / "Anno" / "list_landmarks.txt"


def landmark_line(row: int) -> int:
    """The line of ROWS[row] in the dummy list_landmarks.txt (rows in order, some left out)."""
    missing = deepfashion_dummy_data.DEEPFASHION_ROWS_WITHOUT_LANDMARKS
    return 3 + row - sum(1 for m in missing if m < row)


def set_line(path, line_no: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[line_no - 1] = text
    path.write_text("\n".join(lines) + "\n")


def expected_coarse(row: int) -> np.ndarray:
    out = np.full((8, 3), -1.0, np.float32)
    entry = deepfashion_dummy_data.deepfashion_landmarks(row)
    if entry is not None:
        clothes_type, triples = entry
        for slot, (code, x, y) in zip(SLOTS[clothes_type], triples, strict=True):
            if code != 2:
                out[slot] = (x, y, V[code])
    return out


# --- the contract: feature, metadata ------------------------------------------------------------


def test_feature_and_metadata_name_the_eight_landmarks(category_build, fine_build):
    assert list(DEEPFASHION_LANDMARKS.keypoints) == EXPECTED_NAMES
    for builder in (category_build, fine_build):
        feature = builder.info.features["keypoints"][HEAD]
        assert feature.shape == (8, 3) and feature.dtype == np.float32
        assert builder.info.metadata["keypoint_heads"] == {HEAD: EXPECTED_NAMES}
    # stored with the prepared data, next to the other metadata
    reloaded = dfc.Builder(data_dir=category_build.data_dir_root, config="category")
    assert reloaded.info.metadata["keypoint_heads"] == {HEAD: EXPECTED_NAMES}
    assert "report" in reloaded.info.metadata


# --- coarse Anno/list_landmarks.txt -------------------------------------------------------------


def test_coarse_landmarks_fill_the_slots_of_each_clothes_type(category_build):
    seen_types, seen_v = set(), set()
    for split in ("train", "val", "test"):
        for name, ex in examples(category_build, split).items():
            i = next(i for i, r in enumerate(ROWS) if r[0] == name)
            got = ex["keypoints"][HEAD]
            np.testing.assert_array_equal(got, expected_coarse(i), err_msg=name)
            entry = deepfashion_dummy_data.deepfashion_landmarks(i)
            # the row's clothes type, among the head's categories (-1 without a row)
            want_category = -1 if entry is None else entry[0] - 1
            assert ex["keypoint_categories"][HEAD] == want_category, name
            if entry is not None:
                seen_types.add(entry[0])
            seen_v.update(float(v) for v in got[:, 2])
    assert seen_types == {1, 2, 3} and seen_v == {-1.0, 0.0, 1.0}
    # a lower-body row: collar and sleeve slots absent, waistline and hem filled
    jeans = examples(category_build, "train")[ROWS[4][0]]["keypoints"][HEAD]
    assert (jeans[:4] == -1).all() and (jeans[4:, 2] != -1).any()


def test_report_counts_examples_with_and_without_landmarks(category_build):
    splits = category_build.report["splits"]
    kept = {s: category_build.info.splits[s].num_examples for s in ("train", "val", "test")}
    assert splits["train"]["counts"] == {"landmarks": kept["train"]}
    assert splits["test"]["counts"] == {"landmarks": kept["test"]}
    assert splits["val"]["counts"] == {"landmarks": kept["val"] - 1, "landmarks_absent": 1}
    (absent,) = splits["val"]["examples"]["landmarks_absent"]
    name = ROWS[14][0]
    partition = DUMMY / "Eval" / "list_eval_partition.txt"
    assert absent == f"{partition}:17: {name}: no row in list_landmarks.txt: landmarks -1"
    kimono = examples(category_build, "val")[name]["keypoints"][HEAD]
    assert (kimono == -1).all()
    assert "counted: landmarks: 2, landmarks_absent: 1" in format_split_report(splits["val"])


def test_release_without_landmark_file_builds_all_absent_and_counted(manual, tmp_path):
    landmark_file(manual).unlink()
    builder = build_category(manual, tmp_path, "attributes")
    for split in ("train", "val", "test"):
        exs = examples(builder, split)
        assert exs and all((ex["keypoints"][HEAD] == -1).all() for ex in exs.values())
        report = builder.report["splits"][split]
        assert report["counts"] == {"landmarks_absent": len(exs)}
        assert report["examples"]["landmarks_absent"][0].endswith(
            ": no list_landmarks.txt in the release: landmarks -1"
        )
    assert builder.info.metadata["keypoint_heads"] == {HEAD: EXPECTED_NAMES}
    sizes = {s: builder.info.splits[s].num_examples for s in ("train", "val", "test")}
    assert sizes == deepfashion_dummy_data.DEEPFASHION_CATEGORY_SPLITS


def test_variation_type_column_and_clothes_type_mismatch(manual, tmp_path):
    path = landmark_file(manual)
    lines = path.read_text().splitlines()
    # row 0 (a dress) with a variation_type column: same landmarks
    name, clothes_type, *cells = lines[landmark_line(0) - 1].split()
    set_line(path, landmark_line(0), " ".join([name, clothes_type, "2", *cells]))
    # row 9 (a tee, upper body) annotated as full body: kept as listed, counted
    tee = ROWS[9][0]
    full = "0 010 010  1 020 011  0 005 020  0 030 020  0 011 025  2 0 0  0 009 039  0 027 039"
    set_line(path, landmark_line(9), f"{tee} 3 {full}")
    builder = build_category(manual, tmp_path)
    train = examples(builder, "train")
    np.testing.assert_array_equal(train[ROWS[0][0]]["keypoints"][HEAD], expected_coarse(0))
    np.testing.assert_array_equal(
        train[tee]["keypoints"][HEAD],
        [
            [10, 10, 1], [20, 11, 0], [5, 20, 1], [30, 20, 1],
            [11, 25, 1], [-1, -1, -1], [9, 39, 1], [27, 39, 1],
        ],
    )  # fmt: skip
    report = builder.report["splits"]["train"]
    assert report["counts"]["landmark_type_mismatch"] == 1
    (example,) = report["examples"]["landmark_type_mismatch"]
    assert example == (
        f"{path}:{landmark_line(9)}: clothes_type 3 (full_body) but the image's category is "
        "upper_body; landmarks kept as listed"
    )


UPPER = "0 012 009  0 024 009  0 007 020  0 029 020  0 008 039  0 028 039"
BAD_COARSE = {
    # id: (ROWS index, landmark row after the image name, field = 'value': expected ..., reason)
    "not_a_number": (
        7,
        "1 0 abc 009  0 024 009  0 007 020  0 029 020  0 008 039  0 028 039",
        "collar_left x (column 4) = 'abc': expected a number (pixels)",
        "not_a_number",
    ),
    "visibility_3": (
        9,
        "1 0 012 009  3 024 009  0 007 020  0 029 020  0 008 039  0 028 039",
        "collar_right visibility (column 6) = '3': expected 0 (visible), 1 (occluded) or 2 "
        "(truncated)",
        "bad_visibility",
    ),
    "clothes_type_4": (
        10,
        f"4 {UPPER}",
        "clothes_type = '4': expected an integer in [1, 3]",
        "bad_clothes_type",
    ),
    "wrong_count_for_type": (
        12,
        f"2 {UPPER}",  # lower body: 4 landmarks, 6 given
        "number of fields = 20: expected 14 or 15 (image_name clothes_type [variation_type] then "
        "`visibility x y` per landmark; clothes_type 2 (lower_body) has 4 landmarks)",
        "wrong_landmark_count",
    ),
    "point_outside_image": (
        15,
        "2 0 009 025  0 027 025  1 040 039  0 028 039",
        "hem_left x y (columns 10-11) = '040 039': expected a point inside the 36x48 image "
        "(0 <= x <= 36, 0 <= y <= 48), or visibility 2 (truncated)",
        "landmark_outside_image",
    ),
}


@pytest.mark.parametrize("kind", list(BAD_COARSE))
def test_bad_coarse_landmark_row_stops_the_build(manual, tmp_path, kind):
    row, cells, message, _ = BAD_COARSE[kind]
    path = landmark_file(manual)
    set_line(path, landmark_line(row), f"{ROWS[row][0]} {cells}")
    with pytest.raises(AnnotationError) as e:
        build_category(manual, tmp_path)
    assert str(e.value) == f"{path}:{landmark_line(row)}: {message}"


def test_bad_coarse_landmark_rows_are_counted_in_the_skip_variant(manual, tmp_path):
    path = landmark_file(manual)
    for row, cells, _, _ in BAD_COARSE.values():
        set_line(path, landmark_line(row), f"{ROWS[row][0]} {cells}")
    builder = build_category(manual, tmp_path, "category_skip_bad_rows")
    report = builder.report
    assert report["rows_in"] == len(ROWS) == report["rows_written"] + report["rows_reported"]
    bad = {}
    for split, r in report["splits"].items():
        for reason, n in r["skipped"].items():
            if reason.startswith("bad_row:"):
                bad[split, reason] = n
    split_of = {kind: ROWS[row][1] for kind, (row, *_) in BAD_COARSE.items()}
    assert bad == {(split_of[k], f"bad_row:{v[3]}"): 1 for k, v in BAD_COARSE.items()}
    for kind, (row, _, message, reason) in BAD_COARSE.items():
        examples_ = report["splits"][split_of[kind]]["examples"][f"bad_row:{reason}"]
        assert examples_ == [f"{path}:{landmark_line(row)}: {message}"]
        assert ROWS[row][0] not in examples(builder, split_of[kind])
    assert builder.info.splits["train"].num_examples == 9 - 3


# --- fine-grained Anno_fine/<split>_landmarks.txt -------------------------------------------------


def fine_rows(root, split: str) -> list[tuple[str, int, list[float] | None]]:
    """``(image, category id, 16 landmark numbers or None)`` per row of a split's files."""
    anno = root / "Anno_fine"
    names = (anno / f"{split}.txt").read_text().split()
    cats = [int(c) for c in (anno / f"{split}_cate.txt").read_text().split()]
    lm_path = anno / f"{split}_landmarks.txt"
    values = (
        [[float(v) for v in line.split()] for line in lm_path.read_text().splitlines()]
        if lm_path.is_file()
        else [None] * len(names)
    )
    return list(zip(names, cats, values, strict=True))


def test_fine_landmarks_fill_the_slots_of_the_category_type(fine_build):
    types, v_absent_second = set(), set()
    for split in ("train", "val", "test"):
        exs = examples(fine_build, split)
        for name, cat, values in fine_rows(DUMMY_FINE, split):
            want = np.full((8, 3), -1.0, np.float32)
            if values is not None:
                clothes_type = 1 if cat <= 20 else (2 if cat <= 36 else 3)
                slots = SLOTS[clothes_type]
                assert values[2 * len(slots) :] == [0.0] * (16 - 2 * len(slots))
                for j, slot in enumerate(slots):
                    x, y = values[2 * j : 2 * j + 2]
                    if (x, y) != (0.0, 0.0):
                        want[slot] = (x, y, 1.0)
                types.add(clothes_type)
            np.testing.assert_array_equal(exs[name]["keypoints"][HEAD], want, err_msg=name)
            v_absent_second.add(float(exs[name]["keypoints"][HEAD][1, 2]))
    assert types == {1, 3} and v_absent_second == {-1.0, 1.0}  # a 0 0 pair is absent
    splits = fine_build.report["splits"]
    assert splits["train"]["counts"] == {"landmarks": 4}
    assert splits["val"]["counts"] == {"landmarks": 2}
    assert splits["test"]["counts"] == {"landmarks_absent": 2}  # no test_landmarks.txt
    assert splits["test"]["examples"]["landmarks_absent"][0].endswith(
        ": no Anno_fine/test_landmarks.txt read: landmarks -1"
    )


def test_fine_landmarks_need_the_category_file(manual_fine, tmp_path):
    anno = manual_fine / "Anno_fine"
    shutil.copy(anno / "val_landmarks.txt", anno / "test_landmarks.txt")
    (anno / "test_cate.txt").unlink()
    builder = build_fine(manual_fine, tmp_path)
    assert all((ex["keypoints"][HEAD] == -1).all() for ex in examples(builder, "test").values())
    assert builder.report["notes"] == [
        f"{anno / 'test_landmarks.txt'}: not read: without test_cate.txt the clothes type of its "
        "rows is unknown (landmarks -1)"
    ]


def _fine_size(root, split: str, row: int) -> tuple[int, int]:
    name = (root / "Anno_fine" / f"{split}.txt").read_text().split()[row]
    return Image.open(root / name).size


def bad_fine_rows(root) -> dict[str, tuple[str, int, str, str, str]]:
    """id: (split, 1-based line, new landmark line, field = 'value': expected ..., reason).
    Train rows 1 and 3 are upper body (category 19), the others full body (41)."""
    w, h = _fine_size(root, "val", 1)
    return {
        "fifteen_values": (
            "train",
            1,
            "7 4 12 4 2 11 17 11 3 23 16 23 0 0 0",
            "number of fields = 15: expected 16 whitespace-separated field(s) (8 landmark points "
            "x y, zero-padded) (row: '7 4 12 4 2 11 17 11 3 23 16 23 0 0 0')",
            "wrong_column_count",
        ),
        "not_a_number": (
            "train",
            4,
            "18 10 21 six 15 18 24 18 16 21 23 21 15 32 24 32",
            "collar_right y (column 4) = 'six': expected a number (pixels)",
            "not_a_number",
        ),
        "padding_not_zero": (
            "train",
            3,
            "16 6 21 6 10 16 27 16 11 35 26 35 5 5 0 0",
            "padding (column 13) = '5': expected 0: upper_body garments (the row's category) have "
            "6 landmarks, so columns 13-16 are zero padding",
            "wrong_landmark_count",
        ),
        "point_outside_image": (
            "val",
            2,
            f"14 6 0 0 9 16 23 16 10 21 22 21 10 {h + 5} 22 36",
            f"hem_left x y (columns 13-14) = '10 {h + 5}': expected a point inside the {w}x{h} "
            f"image (0 <= x <= {w}, 0 <= y <= {h}), or visibility 2 (truncated)",
            "landmark_outside_image",
        ),
    }


@pytest.mark.parametrize(
    "kind", ["fifteen_values", "not_a_number", "padding_not_zero", "point_outside_image"]
)
def test_bad_fine_landmark_row_stops_the_build(manual_fine, tmp_path, kind):
    split, line, text, message, _ = bad_fine_rows(manual_fine)[kind]
    path = manual_fine / "Anno_fine" / f"{split}_landmarks.txt"
    set_line(path, line, text)
    with pytest.raises(AnnotationError) as e:
        build_fine(manual_fine, tmp_path)
    assert str(e.value) == f"{path}:{line}: {message}"


def test_bad_fine_landmark_rows_are_counted_in_the_skip_variant(manual_fine, tmp_path):
    bad = bad_fine_rows(manual_fine)
    for split, line, text, _, _ in bad.values():
        set_line(manual_fine / "Anno_fine" / f"{split}_landmarks.txt", line, text)
    builder = build_fine(manual_fine, tmp_path, "default_skip_bad_rows")
    splits = builder.report["splits"]
    assert splits["train"]["skipped"] == {
        "bad_row:wrong_column_count": 1,
        "bad_row:not_a_number": 1,
        "bad_row:wrong_landmark_count": 1,
    }
    assert splits["val"]["skipped"] == {"bad_row:landmark_outside_image": 1}
    for split, line, _, message, reason in bad.values():
        path = manual_fine / "Anno_fine" / f"{split}_landmarks.txt"
        assert splits[split]["examples"][f"bad_row:{reason}"] == [f"{path}:{line}: {message}"]
    assert builder.info.splits["train"].num_examples == 1
    assert splits["train"]["counts"] == {"landmarks": 1}


def test_fine_landmark_file_must_line_up_with_the_split(manual_fine, tmp_path):
    path = manual_fine / "Anno_fine" / "val_landmarks.txt"
    path.write_text(path.read_text().splitlines()[0] + "\n")
    with pytest.raises(AnnotationError, match=r"val_landmarks\.txt:2: row count = 1: expected 2"):
        build_fine(manual_fine, tmp_path)


# --- the report's counts (common/report.py) -------------------------------------------------------


def test_skip_report_counts_merge_and_format():
    a, b = SkipReport("ds", "train"), SkipReport("ds", "train")
    a.count("landmarks")
    b.count("landmarks_absent", "p.txt:4", "no row")
    b.count("landmarks")
    a.merge(b)
    d = a.as_dict()
    assert d["counts"] == {"landmarks": 2, "landmarks_absent": 1}
    assert d["examples"] == {"landmarks_absent": ["p.txt:4: no row"]}
    assert "counts" not in SkipReport("ds", "val").as_dict()
    text = format_split_report(d)
    assert "  counted: landmarks: 2, landmarks_absent: 1" in text
    assert "  landmarks_absent:\n    p.txt:4: no row" in text
