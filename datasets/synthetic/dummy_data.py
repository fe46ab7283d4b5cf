"""Writes the builders' ``dummy_data/`` folders: tiny synthetic releases in the real formats.

Each folder imitates its release's layout and file formats exactly, with awkward but legal
content the builders must handle without failing: PNG/GIF/BMP/WebP/16-bit PNG/CMYK JPEG behind a
``.jpg`` name (converted), grayscale JPEGs (kept), 1x1, empty, truncated, missing and
decompression-bomb images (skipped and reported), byte-identical images in two splits (kept out of
the evaluation split), CRLF line ends, runs of spaces, ``m`` labels, names with spaces. Malformed
annotation rows are not in ``dummy_data/`` (the default, strict build would stop on them): the
tests add them to a copy.

Regenerate (deterministic): ``python -m fashion_keras_datasets.synthetic.dummy_data``. The images
are drawn rectangles, not garments; the folders say so in ``README_SYNTHETIC.txt``.

This module writes the FashionAI and custom CSV folders and runs every writer (:data:`WRITERS`);
the DeepFashion writers are in :mod:`fashion_keras_datasets.synthetic.deepfashion_dummy_data`,
the images and text files in :mod:`fashion_keras_datasets.synthetic.dummy_files`.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable, Sequence

from fashion_keras.heads import FASHIONAI8
from fashion_keras_datasets.common.images import hash_bucket
from fashion_keras_datasets.synthetic.deepfashion_dummy_data import (
    write_deepfashion_attributes_landmarks,
    write_deepfashion_category,
)
from fashion_keras_datasets.synthetic.dummy_files import (
    fresh_folder,
    write_row_image,
    write_text,
)

#: The datasets/ folder (the ``fashion_keras_datasets`` package), holding one folder per builder.
DATASETS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- FashionAI ------------------------------------------------------------------------------------

_FASHIONAI_CLASSES = {h.name: len(h.classes) for h in FASHIONAI8}


def _fashionai_name(task: str, want_val: bool, salt: str, val_percent: int = 10) -> str:
    """A hash-like file name whose path lands in ``val`` (or ``train``) for ``val_percent``."""
    from fashion_keras_datasets.fashionai_attributes.fashionai_attributes_dataset_builder import (
        val_bucket,
    )

    for i in range(10_000):
        name = hashlib.md5(f"{task}/{salt}/{i}".encode()).hexdigest() + ".jpg"
        if (val_bucket(f"Images/{task}/{name}") < val_percent) == want_val:
            return name
    raise RuntimeError("no file name found")  # pragma: no cover


#: (release, task, label_string, split wanted, image kind, note); "copy:<n>" = bytes of row n.
FASHIONAI_ROWS: list[tuple[str, str, str, str, str]] = [
    # base/Annotations/label.csv
    ("base", "coat_length_labels", "nnynnnnn", "train", "jpeg"),  # 0
    ("base", "coat_length_labels", "nnnmynnn", "train", "jpeg"),  # 1: an m
    ("base", "collar_design_labels", "nynnn", "val", "jpeg"),  # 2
    ("base", "collar_design_labels", "nmnyn", "train", "png"),  # 3: PNG named .jpg
    ("base", "lapel_design_labels", "ynnnn", "train", "cmyk_jpeg"),  # 4: Invisible, CMYK
    ("base", "lapel_design_labels", "nnymn", "val", "gray_jpeg"),  # 5: kept as is
    ("base", "neck_design_labels", "nnnyn", "train", "png16_gray"),  # 6
    ("base", "neck_design_labels", "nynnn", "train", "gif"),  # 7
    ("base", "neckline_design_labels", "nnnnnnnynn", "train", "bmp"),  # 8
    ("base", "neckline_design_labels", "nnnnmynnnn", "val", "webp"),  # 9
    ("base", "pant_length_labels", "nnnnny", "train", "png16_rgb"),  # 10
    ("base", "pant_length_labels", "nnnynm", "train", "one_by_one"),  # 11: skipped
    ("base", "skirt_length_labels", "nynnnn", "train", "empty"),  # 12: skipped
    ("base", "skirt_length_labels", "nnmynn", "train", "missing"),  # 13: skipped
    ("base", "sleeve_length_labels", "nnnnnnnyn", "train", "truncated_jpeg"),  # 14: skipped
    ("base", "sleeve_length_labels", "nnnnnnmyn", "train", "bomb"),  # 15: skipped
    ("base", "sleeve_length_labels", "nnnynnnnn", "train", "rgba_png"),  # 16
    ("base", "skirt_length_labels", "nnnnyn", "val", "jpeg"),  # 17
    # web/Annotations/label.csv (CRLF line ends)
    ("web", "coat_length_labels", "nnnnnnny", "val", "copy:0"),  # 18: in train as row 0
    ("web", "skirt_length_labels", "nnnynm", "train", "jpeg"),  # 19
    ("web", "pant_length_labels", "mnnnny", "train", "jpeg"),  # 20
    ("web", "neck_design_labels", "nnnny", "val", "jpeg"),  # 21
    # rank/Tests/question.csv
    ("rank", "coat_length_labels", "?", "test", "jpeg"),  # 22
    ("rank", "collar_design_labels", "?", "test", "jpeg"),  # 23
    ("rank", "sleeve_length_labels", "?", "test", "copy:1"),  # 24: in train as row 1
    ("rank", "neckline_design_labels", "?", "test", "jpeg"),  # 25
]
#: What the default build of the FashionAI dummy data keeps per split.
FASHIONAI_SPLITS = {"train": 11, "val": 5, "test": 3}


def write_fashionai(root: str) -> None:
    """Writes the FashionAI dummy release folders ``base/``, ``web/`` and ``rank/``."""
    fresh_folder(root, "FashionAI")
    files: dict[str, list[str]] = {}
    written: dict[int, bytes] = {}
    for i, (release, task, label, split, kind) in enumerate(FASHIONAI_ROWS):
        if label != "?":
            assert len(label) == _FASHIONAI_CLASSES[task], (i, task, label)
        name = _fashionai_name(task, split == "val", f"{release}{i}")
        rel = f"Images/{task}/{name}"
        path = os.path.join(root, release, rel)
        write_row_image(path, kind, i, written, seed=i)
        csv_name = "Tests/question.csv" if label == "?" else "Annotations/label.csv"
        files.setdefault(f"{release}/{csv_name}", []).append(f"{rel},{task},{label}")
    for rel, lines in files.items():
        write_text(os.path.join(root, rel), lines, "\r\n" if rel.startswith("web/") else "\n")


# --- custom CSV -----------------------------------------------------------------------------------

CUSTOM_HEADS_YAML = """\
# The example shop's head spec: one CSV column per head (see fashion_keras.heads).
heads:
  - name: sleeve
    classes: [long_sleeve, short_sleeve, sleeveless]
  - name: colour
    classes: [black, white, red, blue]
    loss_weight: 0.5
"""
CUSTOM_CSV_HEADER = "image,sleeve,colour,x1,y1,x2,y2,split,notes"
#: (image path, sleeve, colour, "x1,y1,x2,y2" or "", split, notes, image kind).
CUSTOM_CSV_ROWS: list[tuple[str, str, str, str, str, str, str]] = [
    ("images/shirt_001.jpg", "long_sleeve", "white", "7,9,29,39", "train", "", "jpeg"),  # 0
    ("images/shirt_002.jpg", "short_sleeve", "", "", "train", "colour unknown", "jpeg"),
    ("images/shirt_003.jpg", "", "red", "7,9,29,39", "train", "", "png"),
    ("images/dress_001.jpg", "sleeveless", "black", "", "train", "slim, cropped", "gray_jpeg"),
    ("images/dress_002.jpg", "sleeveless", "blue", "7,9,29,39", "train", "", "png16_rgb"),
    ("images/coat_001.jpg", "long_sleeve", "black", "7,9,29,39", "train", "", "missing"),  # 5
    ("images/coat_002.jpg", "long_sleeve", "blue", "7,9,29,39", "train", "", "gif"),
    ("images/top_001.jpg", "short_sleeve", "white", "-3,9,29,39", "train", "clamped", "jpeg"),
    ("images/top_002.jpg", "short_sleeve", "red", "7,9,29,39", "val", "", "jpeg"),
    ("images/top_003.jpg", "sleeveless", "white", "", "val", "same photo", "copy:0"),  # 9
    ("images/top_004.jpg", "long_sleeve", "blue", "", "val", "", "jpeg"),
    ("images/Sub Folder/jacket 001.jpg", "long_sleeve", "black", "", "test", "", "jpeg"),
    ("images/jacket_002.jpg", "", "", "", "test", "nothing labelled", "jpeg"),
    ("images/tee_001.jpg", "short_sleeve", "red", "7,9,29,39", "", "split by hash", "webp"),
]
#: What the ``example`` build of the custom CSV dummy data keeps per split (row 13 has no
#: split and hashes into train).
CUSTOM_CSV_SPLITS = {"train": 8, "val": 2, "test": 2}


def _csv_cell(text: str) -> str:
    return f'"{text}"' if ("," in text or '"' in text) else text


def write_custom_csv(root: str) -> None:
    """Writes the custom CSV dummy folder: ``labels.csv`` (BOM, CRLF), ``heads.yaml``, images."""
    fresh_folder(root, "a real shop's data")
    written: dict[int, bytes] = {}
    lines = [CUSTOM_CSV_HEADER]
    for i, (path, sleeve, colour, box, split, notes, kind) in enumerate(CUSTOM_CSV_ROWS):
        if not split:
            assert hash_bucket(path) >= 10, path  # lands in train
        full = os.path.join(root, path)
        write_row_image(full, kind, i, written, seed=200 + i)
        cells = [path, sleeve, colour, *(box.split(",") if box else [""] * 4), split, notes]
        lines.append(",".join(_csv_cell(c) for c in cells))
    with open(os.path.join(root, "labels.csv"), "w", encoding="utf-8-sig", newline="") as f:
        f.write("".join(line + "\r\n" for line in lines))
    with open(os.path.join(root, "heads.yaml"), "w", encoding="utf-8") as f:
        f.write(CUSTOM_HEADS_YAML)


# --- CLI ------------------------------------------------------------------------------------------


WRITERS: dict[str, Callable[[str], None]] = {
    "fashionai_attributes": write_fashionai,
    "deepfashion_category": write_deepfashion_category,
    # adds the landmark files to the dummy data written by synthetic/demo.py
    "deepfashion_attributes": write_deepfashion_attributes_landmarks,
    "custom_csv": write_custom_csv,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Rewrites ``datasets/<name>/dummy_data/`` for the builders named (default: all)."""
    names = list(argv if argv is not None else sys.argv[1:]) or list(WRITERS)
    for name in names:
        root = os.path.join(DATASETS_DIR, name, "dummy_data")
        WRITERS[name](root)
        print(f"wrote {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
