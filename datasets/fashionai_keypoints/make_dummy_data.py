"""Writes ``dummy_data/`` of the fashionai_keypoints builder: a tiny synthetic release set.

Three release folders in the real layout (``train1/Annotations/annotations.csv``,
``train2/Annotations/train.csv`` with CRLF line ends, ``test/Tests/test.csv``), every category,
visible, occluded and absent points, and rows the build must skip and count: a missing image, a
point outside its image, images byte-identical to training ones in ``val`` and ``test``; a PNG
and a CMYK JPEG behind ``.jpg`` names (converted). Malformed rows are not here (the strict build
would stop on them): the tests add them to a copy.

Regenerate (deterministic): ``python -m fashion_keras_datasets.fashionai_keypoints.make_dummy_data``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from collections.abc import Sequence

import numpy as np

from fashion_keras.heads import FASHIONAI_KEYPOINTS
from fashion_keras_datasets.fashionai_keypoints.fashionai_keypoints_dataset_builder import (
    ID_COLUMNS,
    KEYPOINTS,
    VAL_PERCENT,
    val_bucket,
)
from fashion_keras_datasets.synthetic.dummy_files import write_image

DUMMY_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dummy_data")
README_TEXT = """SYNTHETIC DATA - NOT FashionAI.

Written by `python -m fashion_keras_datasets.fashionai_keypoints.make_dummy_data` for the
builder's tests. The layout and the annotation format are those of the real keypoint releases;
the images are drawn rectangles and the keypoints random points on them, and some rows are
meant to be skipped (see fashion_keras_datasets/fashionai_keypoints/make_dummy_data.py).
"""
#: Size of the drawn images (``synthetic.dummy_files.drawing``): width 36, height 48.
WIDTH, HEIGHT = 36, 48

#: (release, category, split wanted, image kind); "copy:<n>" = the bytes of row n, "outside" =
#: a jpeg with one point beyond the image's right edge (skipped), "missing" = no image file.
ROWS: list[tuple[str, str, str, str]] = [
    # train1/Annotations/annotations.csv
    ("train1", "blouse", "train", "jpeg"),  # 0
    ("train1", "outwear", "train", "png"),  # 1: PNG named .jpg, converted
    ("train1", "trousers", "val", "jpeg"),  # 2
    ("train1", "skirt", "train", "cmyk_jpeg"),  # 3: converted
    ("train1", "dress", "train", "gray_jpeg"),  # 4: kept byte for byte
    ("train1", "blouse", "train", "missing"),  # 5: skipped, missing_image
    ("train1", "skirt", "train", "outside"),  # 6: skipped, keypoint_outside_image
    ("train1", "dress", "val", "jpeg"),  # 7
    # train2/Annotations/train.csv (CRLF)
    ("train2", "outwear", "train", "jpeg"),  # 8
    ("train2", "trousers", "val", "copy:0"),  # 9: in train as row 0, skipped
    ("train2", "dress", "train", "jpeg"),  # 10
    # test/Tests/test.csv
    ("test", "blouse", "test", "jpeg"),  # 11
    ("test", "trousers", "test", "jpeg"),  # 12
    ("test", "skirt", "test", "copy:8"),  # 13: in train as row 8, skipped
]
#: What the default build keeps per split.
SPLITS = {"train": 6, "val": 2, "test": 2}
FILES = {
    "train1": "Annotations/annotations.csv",
    "train2": "Annotations/train.csv",
    "test": "Tests/test.csv",
}


def image_id(i: int) -> str:
    """The release-relative image path of row ``i``, hashed into the split it wants."""
    release, category, split, _ = ROWS[i]
    for n in range(10_000):
        name = hashlib.md5(f"{release}/{category}/{i}/{n}".encode()).hexdigest() + ".jpg"
        rel = f"Images/{category}/{name}"
        if split == "test" or (val_bucket(rel) < VAL_PERCENT) == (split == "val"):
            return rel
    raise RuntimeError("no file name found")  # pragma: no cover


def cells(i: int) -> list[str]:
    """The 24 ``x_y_v`` cells of row ``i``: each defined keypoint visible, occluded or absent
    (by a seeded draw), the others ``-1_-1_-1``; row 6 puts its first point outside the image."""
    rng = np.random.default_rng(1000 + i)
    category = ROWS[i][1]
    defined = FASHIONAI_KEYPOINTS.defined_mask(category)
    out = []
    for k in range(len(KEYPOINTS)):
        v = int(rng.choice([1, 1, 1, 0, -1])) if defined[k] else -1
        x, y = int(rng.integers(0, WIDTH + 1)), int(rng.integers(0, HEIGHT + 1))
        out.append("-1_-1_-1" if v == -1 else f"{x}_{y}_{v}")
    if ROWS[i][3] == "outside":
        k = defined.index(True)
        out[k] = f"{WIDTH + 5}_{HEIGHT // 2}_1"
    return out


def write(root: str = DUMMY_DIR) -> None:
    """Rewrites the dummy release folders under ``root``."""
    if os.path.exists(root):
        shutil.rmtree(root)
    os.makedirs(root)
    with open(os.path.join(root, "README_SYNTHETIC.txt"), "w", encoding="utf-8") as f:
        f.write(README_TEXT)
    lines: dict[str, list[str]] = {
        "train1": [",".join((*ID_COLUMNS, *KEYPOINTS))],
        "train2": [",".join((*ID_COLUMNS, *KEYPOINTS))],
        "test": [",".join(ID_COLUMNS)],
    }
    written: dict[int, bytes] = {}
    for i, (release, category, split, kind) in enumerate(ROWS):
        rel = image_id(i)
        path = os.path.join(root, release, rel)
        if kind.startswith("copy:"):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(written[int(kind[5:])])
        elif kind != "missing":
            written[i] = write_image(path, "jpeg" if kind == "outside" else kind, seed=500 + i)
        row = [rel, category] + ([] if split == "test" else cells(i))
        lines[release].append(",".join(row))
    for release, rows in lines.items():
        _write_text(
            os.path.join(root, release, FILES[release]),
            rows,
            "\r\n" if release == "train2" else "\n",
        )


def _write_text(path: str, lines: Sequence[str], newline: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("".join(line + newline for line in lines))


def main(argv: Sequence[str] | None = None) -> int:
    """Rewrites ``datasets/fashionai_keypoints/dummy_data/`` (or the folder given)."""
    args = list(argv if argv is not None else sys.argv[1:])
    root = args[0] if args else DUMMY_DIR
    write(root)
    print(f"wrote {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
