"""``python -m fashion_keras.data inspect``: region boxes beside the garment box.

Region boxes come from a ``--region-file`` (joined by image path) or from the example's own
keypoints; an example with neither shows its garment box, dashed, and is counted as a fallback.
"""

from __future__ import annotations

import io
import pathlib

import numpy as np
import pytest
from PIL import Image

from fashion_keras.data import inspection, sources
from fashion_keras.data.region_files import write_region_file
from fashion_keras.heads import FASHIONAI_KEYPOINTS, PRESETS, Head, get_heads, region_box

DATASETS = pathlib.Path(__file__).resolve().parents[2] / "datasets"
CSV_DUMMY = DATASETS / "custom_csv" / "dummy_data"
KEYPOINT_DUMMY = DATASETS / "fashionai_keypoints" / "dummy_data"
PER_HEAD = 3


def _write_spec(path: pathlib.Path, name: str, classes: list[str], region: str) -> str:
    path.write_text(f"heads:\n  - name: {name}\n    classes: {classes}\n    region: {region}\n")
    return str(path)


@pytest.fixture(scope="module")
def csv_data(tmp_path_factory):
    """The custom_csv dummy release, prepared; its ``sleeve`` head given the sleeves region."""
    root = tmp_path_factory.mktemp("inspect_csv")
    builder = sources.get_builder("custom_csv", str(CSV_DUMMY), str(root / "tfds"))
    spec = _write_spec(
        root / "heads.yaml", "sleeve", ["long_sleeve", "short_sleeve", "sleeveless"], "sleeves"
    )
    return {"root": root, "builder": builder, "spec": spec}


def _argv(data_dir: pathlib.Path, dataset: str, tfds_dir: pathlib.Path, *extra: str) -> list[str]:
    return [
        "inspect", "--dataset", dataset, "--data-dir", str(data_dir),
        "--tfds-data-dir", str(tfds_dir), "--per-head", str(PER_HEAD), *extra,
    ]  # fmt: skip


def _photo(ex) -> Image.Image:
    return Image.open(io.BytesIO(ex["image"])).convert("RGB")


def _drawn_edges(ex, box_norm, column: int, heads) -> tuple[int, int, int, int]:
    """Grid pixels ``(left x, right x, middle y, top y)`` of a normalised box drawn on the
    example shown in row 0, ``column``."""
    w, h = _photo(ex).size
    scale, (left, top) = inspection.placement(w, h, 0, column, inspection.row_height(heads))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    x0, y0, x1, y1 = inspection.box_pixels(box_norm, *size)
    return left + x0, left + x1, top + (y0 + y1) // 2, top + y0


def _colour_at(grid: np.ndarray, x: int, y: int) -> tuple[int, ...]:
    return tuple(int(v) for v in grid[y, x])


def test_region_file_boxes_are_drawn_and_fallbacks_counted(csv_data, capsys):
    root, builder = csv_data["root"], csv_data["builder"]
    heads = get_heads(csv_data["spec"])
    shown = inspection.collect_examples(builder, heads, "train", PER_HEAD)["sleeve"]
    assert len(shown) == PER_HEAD
    rows, boxes = [], {}
    for i in (0, 2):  # a box for the first and the last shown image only
        w, h = _photo(shown[i]).size
        x1, y1, x2, y2 = round(w * 0.2), round(h * 0.1), round(w * 0.7), round(h * 0.6)
        name = shown[i]["image/filename"].decode()
        rows.append((f"./{name}", "sleeves", x1, y1, x2, y2))  # any spelling of the path
        boxes[i] = (y1 / h, x1 / w, y2 / h, x2 / w)
    region_file = write_region_file(root / "regions.csv", rows)
    out = root / "grid.png"
    argv = _argv(CSV_DUMMY, "custom_csv", root / "tfds", "--heads", csv_data["spec"])
    assert inspection.main([*argv, "--region-file", str(region_file), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "region file " in printed and "kept 2 of 2 rows" in printed
    assert (
        "region sleeves: 3 shown examples; from the region file 2, from keypoints 0; "
        "fell back to the garment box: 1"
    ) in printed
    grid = np.asarray(Image.open(out).convert("RGB"))
    colour = inspection.REGION_COLOURS["sleeves"]
    for i, box in boxes.items():
        left, right, middle, _ = _drawn_edges(shown[i], box, i, heads)
        assert _colour_at(grid, left, middle) == colour, i
        assert _colour_at(grid, right, middle) == colour, i
        assert _colour_at(grid, left - 2, middle) != colour, i  # just outside the box
    # the example without a box: its garment box, dashed in the region colour
    cell = grid[: inspection.CELL, inspection.LABEL_WIDTH + inspection.CELL :][:, : inspection.CELL]
    assert (np.abs(cell.astype(int) - colour).sum(axis=-1) == 0).sum() > 20
    # one row, with the region caption line
    assert grid.shape[0] == inspection.CELL + inspection.CAPTION + inspection.REGION_CAPTION


def test_bad_region_file_row_is_a_one_line_error(csv_data):
    root = csv_data["root"]
    bad = root / "bad_regions.csv"
    bad.write_text("image,region,x1,y1,x2,y2\nimages/shirt_001.jpg,sleeves,2,3,abc,30\n")
    argv = _argv(CSV_DUMMY, "custom_csv", root / "tfds", "--heads", csv_data["spec"])
    with pytest.raises(SystemExit) as e:
        inspection.main([*argv, "--region-file", str(bad), "--output", str(root / "bad.png")])
    message = str(e.value.code)
    assert message == f"error: {bad}:2: x2 = 'abc': expected a finite number (pixels)"
    assert "\n" not in message


def test_keypoint_region_boxes_are_drawn(tmp_path, capsys):
    categories = list(FASHIONAI_KEYPOINTS.category_names)
    spec = _write_spec(tmp_path / "heads.yaml", "category", categories, "collar")
    out = tmp_path / "kp.png"
    argv = _argv(KEYPOINT_DUMMY, "fashionai_keypoints", tmp_path / "tfds", "--heads", spec)
    assert inspection.main([*argv, "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    heads = get_heads(spec)
    builder = sources.get_builder(
        "fashionai_keypoints", str(KEYPOINT_DUMMY), str(tmp_path / "tfds")
    )
    shown = inspection.collect_examples(builder, heads, "train", PER_HEAD)["category"]
    expected = {}
    for i, ex in enumerate(shown):
        w, h = _photo(ex).size
        points = ex["keypoints"][FASHIONAI_KEYPOINTS.name]
        box = region_box("collar", points, FASHIONAI_KEYPOINTS, (w, h))
        if box is not None:
            expected[i] = (box[1] / h, box[0] / w, box[3] / h, box[2] / w)
    assert expected, "the dummy release has collar keypoints in the first examples"
    assert (
        f"region collar: {len(shown)} shown examples; from the region file 0, from keypoints "
        f"{len(expected)}; fell back to the garment box: {len(shown) - len(expected)}"
    ) in printed
    grid = np.asarray(Image.open(out).convert("RGB"))
    colour = inspection.REGION_COLOURS["collar"]
    for i, box in expected.items():
        left, right, middle, _ = _drawn_edges(shown[i], box, i, heads)
        assert _colour_at(grid, left, middle) == colour, i
        assert _colour_at(grid, right, middle) == colour, i


def test_heads_taken_from_the_dataset_get_the_preset_region():
    neckline = next(h for h in PRESETS["deepfashion6"] if h.name == "neckline")
    unknown = Head("neckline", ("a", "b"))
    plain, other = inspection.with_preset_regions([Head("neckline", neckline.classes), unknown])
    assert plain.region == neckline.region == "collar"
    assert other.region is None  # same name, other classes: no preset region


def test_regions_use_a_keypoint_head_the_dataset_has():
    features = {"keypoints": {"fashionai_keypoints": _Shape((24, 3))}}
    found = inspection.keypoint_heads_for_regions(["collar", "lower"], (), features)
    assert {r: h.name for r, h in found.items()} == {
        "collar": "fashionai_keypoints",
        "lower": "fashionai_keypoints",
    }
    # DeepFashion landmarks lack the FashionAI names the regions are made of
    landmarks = {"keypoints": {"deepfashion_landmarks": _Shape((8, 3))}}
    assert inspection.keypoint_heads_for_regions(["collar"], (), landmarks) == {}


class _Shape:
    """A stand-in feature with a ``shape``."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape
