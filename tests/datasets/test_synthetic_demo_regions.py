"""The attribute demo's small neckline and its region file (``regions.csv``).

The neckline must be small relative to the garment (as in a photo of a whole garment) yet fill a
good part of the collar region's box, which must contain it; ``regions.csv`` must read back
cleanly with the names the ``deepfashion_attributes`` builder gives its images, and hold the
boxes of the keypoints the drawing put in that very image.
"""

from __future__ import annotations

import numpy as np
import pytest
from dataset_helpers import examples, prepare

from fashion_keras.data.region_files import read_region_file
from fashion_keras.heads import DEEPFASHION_CATEGORIES, FASHIONAI_KEYPOINTS
from fashion_keras.heads.region_boxes import region_box
from fashion_keras.heads.regions import REGIONS
from fashion_keras_datasets.deepfashion_attributes import (
    deepfashion_attributes_dataset_builder as dfa,
)
from fashion_keras_datasets.synthetic import demo

SEED = 4
COUNTS = {"train": 6, "val": 3, "test": 3}
NECK_POINTS = ("neckline_left", "neckline_right", "center_front")


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo_regions") / "manual"
    demo.generate_demo(root, COUNTS["train"], COUNTS["val"], COUNTS["test"], seed=SEED)
    return root


def _images(root) -> dict[str, tuple[str, int]]:
    """``{image/filename: (split, index)}`` from the split files."""
    out = {}
    for split in demo.SPLITS:
        lines = (root / "Anno_fine" / f"{split}.txt").read_text().splitlines()
        out |= {name: (split, i) for i, name in enumerate(lines)}
    return out


def _extent(mask: np.ndarray) -> tuple[int, int, int, int]:
    """The pixel-edge box ``(x1, y1, x2, y2)`` of a mask's True pixels."""
    rows, cols = np.nonzero(mask)
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


def test_the_collar_box_contains_the_drawn_neckline(demo_root):
    boxes = read_region_file(demo_root / demo.REGION_FILE, list(REGIONS))
    for image, (split, index) in _images(demo_root).items():
        ex = demo.sample_example(SEED, split, index)
        box = boxes.box(image, "collar")
        assert box is not None, image
        x1, y1, x2, y2 = _extent(ex["neckline"])  # the opening, or the closed collar band
        assert box.x1 <= x1 and box.y1 <= y1 and x2 <= box.x2 and y2 <= box.y2, (image, box)
        # the box is the one of the keypoints drawn in this very image
        assert box[:4] == pytest.approx(
            region_box("collar", ex["keypoints"], FASHIONAI_KEYPOINTS, ex["image"].size)
        )


def test_the_neckline_is_small_in_the_garment_and_large_in_the_collar_crop():
    """Bounds: the neckline's width is at most 0.45 of the garment box's width in every image and
    between 1/10 and 1/5 of it in the median (a real neck in a photo of a whole garment; it was
    1/4 to 1/6 before), and at least 0.15 of the collar box's side (10 px in a 64 px crop)."""
    in_garment, in_collar = [], []
    for i in range(40):
        ex = demo.sample_example(0, "train", i)
        x1, _, x2, _ = _extent(ex["neckline"])
        gx1, _, gx2, _ = ex["bbox"]
        cx1, cy1, cx2, cy2 = region_box(
            "collar", ex["keypoints"], FASHIONAI_KEYPOINTS, ex["image"].size
        )
        in_garment.append((x2 - x1) / (gx2 - gx1))
        in_collar.append((x2 - x1) / max(cx2 - cx1, cy2 - cy1))
    assert max(in_garment) <= 0.45
    assert 1 / 10 <= float(np.median(in_garment)) <= 1 / 5
    assert min(in_collar) >= 0.15


def test_neckline_keypoints_lie_on_the_drawn_neckline():
    """The keypoints are those of the drawing: each neckline point touches the neckline mask."""
    for i in range(12):
        ex = demo.sample_example(1, "val", i)
        ys, xs = np.nonzero(ex["neckline"])
        for name in NECK_POINTS:
            x, y, v = ex["keypoints"][FASHIONAI_KEYPOINTS.index(name)]
            assert v == 1
            assert np.min(np.maximum(np.abs(xs - x), np.abs(ys - y))) <= 2, (i, name, x, y)


def test_region_file_reads_back_and_names_the_builders_images(demo_root, tmp_path):
    regions = read_region_file(demo_root / demo.REGION_FILE, list(REGIONS), skip_bad_rows=True)
    assert regions.num_skipped == 0 and regions.clamped == 0
    builder = prepare(dfa.Builder, demo_root, tmp_path / "tfds")
    names = {}
    for split in demo.SPLITS:
        names |= {name: ex for name, ex in examples(builder, split).items()}
    assert len(names) == sum(COUNTS.values())
    assert {image for image, _ in regions.boxes} == set(names)
    for name, ex in names.items():
        found = {r for image, r in regions.boxes if image == name}
        # tops and dresses have the collar, upper, sleeves and garment keypoints; only dresses
        # have a hemline ("lower"): a region without keypoints has no row
        is_dress = DEEPFASHION_CATEGORIES[ex["category"]] == "Dress"
        assert found == {"collar", "upper", "sleeves", "garment"} | (
            {"lower"} if is_dress else set()
        )


def test_demo_region_file_is_in_the_cached_manual_dir(tmp_path):
    kwargs = {"num_train": 2, "num_val": 1, "num_test": 0, "seed": 2}
    path = demo.demo_region_file(str(tmp_path), **kwargs)
    assert path == str(
        tmp_path / "demo" / f"v{demo.GENERATOR_VERSION}_s2_2_1_0" / "manual" / "regions.csv"
    )
    assert path.startswith(demo.demo_manual_dir(str(tmp_path), **kwargs))
    assert len(read_region_file(path, list(REGIONS)).boxes) >= 3 * 4
