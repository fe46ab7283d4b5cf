"""The DeepFashion ``dummy_data/`` writers: the category benchmark release (``Anno/``,
``Eval/``, ``img/``, with landmarks and attributes) and the landmark files added to the
fine-grained attributes dummy data.

Rows and per-split counts are public for the builders' tests;
``python -m fashion_keras_datasets.synthetic.dummy_data`` runs the writers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from fashion_keras.heads import (
    DEEPFASHION_CATEGORIES,
    DEEPFASHION_CATEGORY_TYPES,
    DEEPFASHION_LANDMARKS,
)
from fashion_keras_datasets.synthetic.dummy_files import (
    fresh_folder,
    write_row_image,
    write_text,
)

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
    fresh_folder(root, "DeepFashion")
    rng = np.random.default_rng(0)
    written: dict[int, bytes] = {}
    cat_rows, bbox_rows, part_rows, attr_rows, landmark_rows = [], [], [], [], []
    width = max(len(r[0]) for r in DEEPFASHION_CATEGORY_ROWS) + 2
    for i, (name, split, cat, box, kind) in enumerate(DEEPFASHION_CATEGORY_ROWS):
        path = os.path.join(root, name)
        write_row_image(path, kind, i, written, seed=100 + i)
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
    write_text(
        os.path.join(anno, "list_category_img.txt"),
        _counted("image_name  category_label", cat_rows[::-1]),
    )
    write_text(
        os.path.join(anno, "list_bbox.txt"),
        _counted("image_name  x_1  y_1  x_2  y_2", bbox_rows),
        "\r\n",
    )
    write_text(
        os.path.join(root, "Eval", "list_eval_partition.txt"),
        _counted("image_name  evaluation_status", part_rows),
    )
    write_text(
        os.path.join(anno, "list_attr_img.txt"), _counted("image_name  attribute_labels", attr_rows)
    )
    write_text(
        os.path.join(anno, "list_landmarks.txt"),
        _counted(
            "image_name  clothes_type  landmark_visibility_1  landmark_location_x_1  "
            "landmark_location_y_1  ...",
            landmark_rows,
        ),
    )
    write_text(
        os.path.join(anno, "list_attr_cloth.txt"),
        _counted(
            "attribute_name  attribute_type",
            [f"{n:<30}{t}" for n, t in deepfashion_attribute_list()],
        ),
    )
    write_text(
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
        write_text(os.path.join(anno, f"{split}_landmarks.txt"), rows)
