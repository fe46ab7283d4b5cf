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
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import struct
import sys
import zlib
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from fashion_keras.heads import (
    DEEPFASHION_CATEGORIES,
    DEEPFASHION_CATEGORY_TYPES,
    DEEPFASHION_LANDMARKS,
    FASHIONAI8,
)
from fashion_keras_datasets.common.images import hash_bucket

#: The datasets/ folder (the ``fashion_keras_datasets`` package), holding one folder per builder.
DATASETS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = """SYNTHETIC DATA - NOT {what}.

Written by `python -m fashion_keras_datasets.synthetic.dummy_data` for the builder's tests.
The layout and the annotation formats are those of the real release; the images are drawn
rectangles, and some are broken or oddly encoded on purpose (see
fashion_keras_datasets/synthetic/dummy_data.py).
"""


# --- images ---------------------------------------------------------------------------------------


def drawing(seed: int, width: int = 36, height: int = 48) -> np.ndarray:
    """A deterministic RGB picture: a coloured "garment" rectangle on a noisy background."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 60, (height, width, 3)).astype(np.uint8) + rng.integers(0, 150, 3).astype(
        np.uint8
    )
    y0, x0 = height // 5, width // 5
    img[y0 : height - y0, x0 : width - x0] = rng.integers(60, 255, 3)
    return img


def encode(array: np.ndarray, fmt: str = "JPEG", mode: str | None = None, **kwargs) -> bytes:
    """Encodes an RGB uint8 array, optionally converted to a PIL ``mode`` first."""
    img = Image.fromarray(array)
    if mode is not None:
        img = img.convert(mode)
    if fmt == "JPEG":
        kwargs.setdefault("quality", 90)
    out = io.BytesIO()
    img.save(out, format=fmt, **kwargs)
    return out.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def raw_png(width: int, height: int, bit_depth: int, color_type: int, rows: bytes) -> bytes:
    """A PNG written chunk by chunk (for 16-bit RGB, and headers that lie about the size)."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(rows))
        + _png_chunk(b"IEND", b"")
    )


def png16_rgb(array: np.ndarray) -> bytes:
    """A 48-bit (16 bits per channel) RGB PNG of an RGB uint8 array."""
    wide = array.astype(">u2") * 257
    rows = b"".join(b"\x00" + wide[i].tobytes() for i in range(wide.shape[0]))
    return raw_png(array.shape[1], array.shape[0], 16, 2, rows)


def png16_gray(array: np.ndarray) -> bytes:
    """A 16-bit grayscale PNG (PIL mode ``I;16``) of an RGB uint8 array."""
    gray = np.asarray(Image.fromarray(array).convert("L"), np.uint16) * 257
    out = io.BytesIO()
    Image.fromarray(gray).save(out, format="PNG")
    return out.getvalue()


def bomb_png(side: int = 40_000) -> bytes:
    """A few hundred bytes whose header claims ``side`` x ``side`` pixels (never decoded)."""
    return raw_png(side, side, 8, 2, b"\x00" * 64)


def rgba_png(array: np.ndarray) -> bytes:
    """An RGBA PNG whose border is fully transparent."""
    rgba = np.dstack([array, np.full(array.shape[:2], 255, np.uint8)])
    rgba[:2, :, 3] = 0
    out = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(out, format="PNG")
    return out.getvalue()


#: Awkward encodings by name -> bytes from an RGB uint8 array.
AWKWARD: dict[str, Callable[[np.ndarray], bytes]] = {
    "jpeg": lambda a: encode(a),
    "gray_jpeg": lambda a: encode(a, mode="L"),
    "cmyk_jpeg": lambda a: encode(a, mode="CMYK"),
    "png": lambda a: encode(a, "PNG"),
    "rgba_png": rgba_png,
    "png16_gray": png16_gray,
    "png16_rgb": png16_rgb,
    "gif": lambda a: encode(a, "GIF", mode="P"),
    "bmp": lambda a: encode(a, "BMP"),
    "webp": lambda a: encode(a, "WEBP", quality=90),
    "one_by_one": lambda a: encode(a[:1, :1]),
    "empty": lambda a: b"",
    "truncated_jpeg": lambda a: encode(a)[:200],
    "not_an_image": lambda a: b"<html>404 Not Found</html>\n",
    "bomb": lambda a: bomb_png(),
}


def write_image(path: str, kind: str, seed: int) -> bytes:
    """Writes ``drawing(seed)`` encoded as ``kind`` (see :data:`AWKWARD`); returns the bytes."""
    data = AWKWARD[kind](drawing(seed))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return data


def _write_row_image(path: str, kind: str, row: int, written: dict[int, bytes], seed: int) -> None:
    """Writes the image of row ``row``: ``copy:<n>`` repeats the bytes of row ``n``, ``missing``
    writes nothing, any other kind is drawn (see :func:`write_image`) and kept in ``written``."""
    if kind.startswith("copy:"):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(written[int(kind[5:])])
    elif kind != "missing":
        written[row] = write_image(path, kind, seed=seed)


def _write_text(path: str, lines: Sequence[str], newline: str = "\n") -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("".join(line + newline for line in lines))


def _fresh(root: str, what: str) -> None:
    if os.path.exists(root):
        shutil.rmtree(root)
    os.makedirs(root)
    with open(os.path.join(root, "README_SYNTHETIC.txt"), "w", encoding="utf-8") as f:
        f.write(README.format(what=what))


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
    _fresh(root, "FashionAI")
    files: dict[str, list[str]] = {}
    written: dict[int, bytes] = {}
    for i, (release, task, label, split, kind) in enumerate(FASHIONAI_ROWS):
        if label != "?":
            assert len(label) == _FASHIONAI_CLASSES[task], (i, task, label)
        name = _fashionai_name(task, split == "val", f"{release}{i}")
        rel = f"Images/{task}/{name}"
        path = os.path.join(root, release, rel)
        _write_row_image(path, kind, i, written, seed=i)
        csv_name = "Tests/question.csv" if label == "?" else "Annotations/label.csv"
        files.setdefault(f"{release}/{csv_name}", []).append(f"{rel},{task},{label}")
    for rel, lines in files.items():
        _write_text(os.path.join(root, rel), lines, "\r\n" if rel.startswith("web/") else "\n")


# --- DeepFashion category benchmark ---------------------------------------------------------------

#: (image name, split, 1-based category id, bbox "x1 y1 x2 y2" or a keyword, image kind).
#: Images are 36 x 48 pixels with the "garment" at x 7-29, y 9-39; "clamped" reaches outside the
#: image, "outside" lies beyond it.
DEEPFASHION_CATEGORY_ROWS: list[tuple[str, str, int, str, str]] = [
    ("img/Floral_Shirt_Dress/img_00000001.jpg", "train", 41, "007 009 029 039", "jpeg"),  # 0
    ("img/Floral_Shirt_Dress/img_00000002.jpg", "train", 41, "clamped", "jpeg"),  # 1
    ("img/Sheer_Pleated-Front_Blouse/img_00000001.jpg", "train", 3, "007 009 029 039", "png"),
    ("img/Sheer_Pleated-Front_Blouse/img_00000002.jpg", "train", 3, "007 009 029 039", "cmyk_jpeg"),
    ("img/Classic_Denim_Jeans/img_00000001.jpg", "train", 26, "007 009 029 039", "gray_jpeg"),
    ("img/Classic_Denim_Jeans/img_00000002.jpg", "train", 26, "007 009 029 039", "missing"),  # 5
    ("img/Hooded_Parka/img_00000001.jpg", "train", 13, "outside", "jpeg"),  # 6: skipped
    ("img/Hooded_Parka/img_00000002.jpg", "train", 13, "007 009 029 039", "jpeg"),
    ("img/Midi_Skirt/img_00000001.jpg", "train", 33, "007 009 029 039", "webp"),
    ("img/Crew_Neck_Tee/img_00000001.jpg", "train", 18, "007 009 029 039", "jpeg"),  # 9
    ("img/Denim_Shorts/img_00000001.jpg", "train", 32, "007 009 029 039", "jpeg"),
    ("img/Floral_Shirt_Dress/img_00000003.jpg", "val", 41, "007 009 029 039", "copy:0"),  # 11
    ("img/Midi_Skirt/img_00000002.jpg", "val", 33, "007 009 029 039", "jpeg"),
    ("img/Crew_Neck_Tee/img_00000002.jpg", "val", 18, "007 009 029 039", "jpeg"),
    ("img/Cozy_Kimono/img_00000001.jpg", "val", 44, "007 009 029 039", "jpeg"),
    ("img/Classic_Denim_Jeans/img_00000003.jpg", "test", 26, "007 009 029 039", "jpeg"),
    ("img/Denim_Shorts/img_00000002.jpg", "test", 32, "007 009 029 039", "bmp"),
    ("img/Crew_Neck_Tee/img_00000003.jpg", "test", 18, "007 009 029 039", "copy:9"),  # 17
]
#: What the build of the DeepFashion category dummy data keeps per split.
DEEPFASHION_CATEGORY_SPLITS = {"train": 9, "val": 3, "test": 2}
NUM_ATTRIBUTES = 1000
_ATTR_WORDS = {
    1: ["floral", "striped", "dotted", "abstract", "paisley", "plaid", "chevron", "leopard"],
    2: ["cotton", "denim", "lace", "leather", "chiffon", "knit", "silk", "faux fur"],
    3: ["a-line", "bodycon", "boxy", "fit and flare", "maxi", "midi", "mini", "oversized"],
    4: ["v-neck", "crew neck", "button front", "zip front", "pocket", "hooded", "cuffed", "tie"],
    5: ["boho", "party", "workout", "retro", "summer", "sweet", "street", "classic"],
}


def deepfashion_attribute_list() -> list[tuple[str, int]]:
    """1000 synthetic ``(attribute name, type)`` pairs; names contain spaces."""
    out = []
    for i in range(NUM_ATTRIBUTES):
        t = i % 5 + 1
        words = _ATTR_WORDS[t]
        out.append((f"{words[i // 5 % len(words)]} {'style' if t == 5 else 'v'}{i // 40}", t))
    return out


def _counted(header: str, rows: Sequence[str]) -> list[str]:
    return [str(len(rows)), header, *rows]


#: Where each landmark sits on the 36 x 48 dummy images (x, y), moved by a row's offset.
_LANDMARK_SPOTS = {
    "collar_left": (12, 9),
    "collar_right": (24, 9),
    "sleeve_left": (7, 20),
    "sleeve_right": (29, 20),
    "waistline_left": (9, 25),
    "waistline_right": (27, 25),
    "hem_left": (8, 39),
    "hem_right": (28, 39),
}
#: DeepFashion visibility codes cycled over the landmarks (0 visible, 1 occluded, 2 truncated).
_LANDMARK_CODES = (0, 0, 1, 0, 2, 0, 0)
#: Rows of DEEPFASHION_CATEGORY_ROWS without a row in list_landmarks.txt (landmarks -1).
DEEPFASHION_ROWS_WITHOUT_LANDMARKS = (14,)


def deepfashion_landmarks(i: int) -> tuple[int, list[tuple[int, int, int]]] | None:
    """Row ``i`` of ``DEEPFASHION_CATEGORY_ROWS`` in ``list_landmarks.txt``: its clothes type
    (1-based, the category's) and ``(visibility, x, y)`` per landmark of the type in file order
    (truncated ones at 0 0); None when the image has no landmark row."""
    if i in DEEPFASHION_ROWS_WITHOUT_LANDMARKS:
        return None
    clothes_type = DEEPFASHION_CATEGORY_TYPES[DEEPFASHION_CATEGORY_ROWS[i][2] - 1]
    names = DEEPFASHION_LANDMARKS.categories[clothes_type - 1].keypoints
    triples = []
    for j, name in enumerate(names):
        code = _LANDMARK_CODES[(i + j) % len(_LANDMARK_CODES)]
        x, y = _LANDMARK_SPOTS[name]
        triples.append((code, 0, 0) if code == 2 else (code, x + i % 3, y + i % 2))
    return clothes_type, triples


def write_deepfashion_category(root: str) -> None:
    """Writes the DeepFashion category benchmark dummy release (``Anno/``, ``Eval/``, ``img/``)."""
    _fresh(root, "DeepFashion")
    rng = np.random.default_rng(0)
    written: dict[int, bytes] = {}
    cat_rows, bbox_rows, part_rows, attr_rows, landmark_rows = [], [], [], [], []
    width = max(len(r[0]) for r in DEEPFASHION_CATEGORY_ROWS) + 2
    for i, (name, split, cat, box, kind) in enumerate(DEEPFASHION_CATEGORY_ROWS):
        path = os.path.join(root, name)
        _write_row_image(path, kind, i, written, seed=100 + i)
        box = {"clamped": "007 -02 040 039", "outside": "040 050 060 070"}.get(box, box)
        cat_rows.append(f"{name:<{width}}{cat}")
        bbox_rows.append(f"{name:<{width}}" + "  ".join(box.split()))
        part_rows.append(f"{name:<{width}}{split}")
        values = rng.choice(["-1", "-1", "-1", "0", "1"], NUM_ATTRIBUTES)
        attr_rows.append(f"{name:<{width}}" + " ".join(values))
        landmarks = deepfashion_landmarks(i)
        if landmarks is not None:
            clothes_type, triples = landmarks
            cells = "  ".join(f"{v} {x:03d} {y:03d}" for v, x, y in triples)
            landmark_rows.append(f"{name:<{width}}{clothes_type}  {cells}")
    anno = os.path.join(root, "Anno")
    # the category file lists the images in another order: files are joined by name
    _write_text(
        os.path.join(anno, "list_category_img.txt"),
        _counted("image_name  category_label", cat_rows[::-1]),
    )
    _write_text(
        os.path.join(anno, "list_bbox.txt"),
        _counted("image_name  x_1  y_1  x_2  y_2", bbox_rows),
        "\r\n",
    )
    _write_text(
        os.path.join(root, "Eval", "list_eval_partition.txt"),
        _counted("image_name  evaluation_status", part_rows),
    )
    _write_text(
        os.path.join(anno, "list_attr_img.txt"), _counted("image_name  attribute_labels", attr_rows)
    )
    _write_text(
        os.path.join(anno, "list_landmarks.txt"),
        _counted(
            "image_name  clothes_type  landmark_visibility_1  landmark_location_x_1  "
            "landmark_location_y_1  ...",
            landmark_rows,
        ),
    )
    _write_text(
        os.path.join(anno, "list_attr_cloth.txt"),
        _counted(
            "attribute_name  attribute_type",
            [f"{n:<30}{t}" for n, t in deepfashion_attribute_list()],
        ),
    )
    _write_text(
        os.path.join(anno, "list_category_cloth.txt"),
        _counted(
            "category_name  category_type",
            [
                f"{n:<30}{t}"
                for n, t in zip(DEEPFASHION_CATEGORIES, DEEPFASHION_CATEGORY_TYPES, strict=True)
            ],
        ),
    )


# --- DeepFashion fine-grained attributes ---------------------------------------------------------

#: Where each landmark sits in a garment box, as fractions (x, y) of its width and height.
_BOX_SPOTS = {
    "collar_left": (0.35, 0.0),
    "collar_right": (0.65, 0.0),
    "sleeve_left": (0.0, 0.35),
    "sleeve_right": (1.0, 0.35),
    "waistline_left": (0.1, 0.5),
    "waistline_right": (0.9, 0.5),
    "hem_left": (0.05, 1.0),
    "hem_right": (0.95, 1.0),
}
#: Splits of the fine-grained dummy data given a ``<split>_landmarks.txt`` (test has none).
DEEPFASHION_FINE_LANDMARK_SPLITS = ("train", "val")


def deepfashion_fine_landmarks(category: int, box: Sequence[int], i: int) -> list[int]:
    """The 16 numbers of one ``Anno_fine/<split>_landmarks.txt`` row: the ``x y`` of the
    landmarks of the 1-based ``category``'s clothes type inside its pixel ``box``, in file order,
    then zero padding; the second landmark of every third row (``i``: the row) is absent (0 0)."""
    clothes_type = DEEPFASHION_CATEGORY_TYPES[category - 1]
    x1, y1, x2, y2 = box
    values: list[int] = []
    for j, name in enumerate(DEEPFASHION_LANDMARKS.categories[clothes_type - 1].keypoints):
        fx, fy = _BOX_SPOTS[name]
        absent = j == 1 and i % 3 == 1
        values += [0, 0] if absent else [round(x1 + fx * (x2 - x1)), round(y1 + fy * (y2 - y1))]
    return values + [0] * (2 * DEEPFASHION_LANDMARKS.num_keypoints - len(values))


def write_deepfashion_attributes_landmarks(root: str) -> None:
    """Adds ``Anno_fine/<split>_landmarks.txt`` (train and val) to the fine-grained dummy data
    (written by ``fashion_keras_datasets.synthetic.demo``), from each row's category and box."""
    anno = os.path.join(root, "Anno_fine")
    for split in DEEPFASHION_FINE_LANDMARK_SPLITS:
        with open(os.path.join(anno, f"{split}_cate.txt"), encoding="utf-8") as f:
            categories = [int(line) for line in f.read().split()]
        with open(os.path.join(anno, f"{split}_bbox.txt"), encoding="utf-8") as f:
            boxes = [[int(v) for v in line.split()] for line in f.read().splitlines()]
        rows = [
            " ".join(str(v) for v in deepfashion_fine_landmarks(c, b, i))
            for i, (c, b) in enumerate(zip(categories, boxes, strict=True))
        ]
        _write_text(os.path.join(anno, f"{split}_landmarks.txt"), rows)


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
    _fresh(root, "a real shop's data")
    written: dict[int, bytes] = {}
    lines = [CUSTOM_CSV_HEADER]
    for i, (path, sleeve, colour, box, split, notes, kind) in enumerate(CUSTOM_CSV_ROWS):
        if not split:
            assert hash_bucket(path) >= 10, path  # lands in train
        full = os.path.join(root, path)
        _write_row_image(full, kind, i, written, seed=200 + i)
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
