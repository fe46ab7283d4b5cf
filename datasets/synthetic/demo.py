"""Synthetic DeepFashion-6 demo data, written in the real ``Anno_fine/`` + ``img/`` layout.

The demo goes through the same TFDS builder (``deepfashion_attributes``) as the real release, so
the whole pipeline (build, train, evaluate, export) can run offline in minutes. Each image is a
garment drawn by :mod:`fashion_keras_datasets.synthetic.garments`, every head visible; design
details such as the neckline are small relative to the garment, as in a real photo.

Beside ``Anno_fine/`` the folder holds :data:`REGION_FILE` (``regions.csv``), a region file
(:mod:`fashion_keras.data.region_files`) with the box of every :data:`~fashion_keras.heads.
regions.REGIONS` region found from each garment's drawn FashionAI keypoints: it stands in for a
detector's output, so heads with a ``region`` can be trained on crops without a keypoint model.

Labels are drawn independently and uniformly per head. Generation is deterministic: the same seed
gives byte-identical files. Only numpy and PIL are used.

CLI: ``python -m fashion_keras_datasets.synthetic.demo OUT_DIR [--num-train N] [--num-val N]
[--num-test N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fashion_keras.data.region_files import write_region_file
from fashion_keras.heads import (
    DEEPFASHION6,
    DEEPFASHION_CATEGORIES,
    DEEPFASHION_CATEGORY_TYPES,
    FASHIONAI_KEYPOINTS,
)
from fashion_keras.heads.region_boxes import region_boxes
from fashion_keras.heads.regions import REGIONS
from fashion_keras_datasets.synthetic.garments import MAX_SIDE, render_garment_keypoints

# Bump when the images or files change, so cached demo folders are regenerated.
GENERATOR_VERSION = 4
#: The region file in the manual folder (the ``Anno_fine/`` + ``img/`` root).
REGION_FILE = "regions.csv"
#: The demo's rare class, as real shop data has one in nearly every head: (head, class, share of
#: the uniform draws of that class that keep it). Sleeveless garments are about 1 row in 12.
RARE_CLASS = ("sleeve", "sleeveless", 0.25)
MARKER_NAME = ".fashion_keras_demo.json"
README_NAME = "README_SYNTHETIC.txt"
SPLITS = ("train", "val", "test")
JPEG_QUALITY = 90
_SPLIT_SEED_IDS = {"train": 1, "val": 2, "test": 3}
_IMAGES_PER_ITEM = 8


def attribute_columns() -> list[tuple[str, int]]:
    """The 26 ``(attribute_name, attribute_type)`` columns of ``<split>_attr.txt``, in order."""
    return [(c, t) for t, head in enumerate(DEEPFASHION6, start=1) for c in head.classes]


def category_id(name: str) -> int:
    """The 1-based DeepFashion category id of ``name``."""
    return DEEPFASHION_CATEGORIES.index(name) + 1


def _make_rare(label_idx: dict[str, int], rng: np.random.Generator) -> None:
    """Turns most draws of :data:`RARE_CLASS` into another class of its head (its own random
    stream, so the other examples are drawn as before)."""
    head_name, rare, keep = RARE_CLASS
    head = next(h for h in DEEPFASHION6 if h.name == head_name)
    if head.classes[label_idx[head_name]] == rare and rng.random() >= keep:
        others = [i for i, c in enumerate(head.classes) if c != rare]
        label_idx[head_name] = others[int(rng.integers(len(others)))]


def _category_for(rng: np.random.Generator, labels: dict[str, str]) -> int:
    if labels["length"] != "no_dress":
        return category_id("Dress")
    if labels["sleeve"] == "sleeveless":
        return category_id(("Tank", "Top")[int(rng.integers(2))])
    if labels["sleeve"] == "short_sleeve":
        return category_id(("Tee", "Top")[int(rng.integers(2))])
    if labels["fabric"] == "knit":
        return category_id("Sweater")
    if labels["fabric"] in ("denim", "leather"):
        return category_id("Jacket")
    return category_id("Blouse")


def sample_example(seed: int, split: str, index: int, max_side: int = MAX_SIDE) -> dict[str, Any]:
    """Draws example ``index`` of ``split``: ``labels`` (class index per head), ``category_id``,
    ``image``, ``bbox``, and the garment's FashionAI ``keypoints`` (float32 ``[24, 3]``, see
    :class:`~fashion_keras_datasets.synthetic.garments.GarmentDrawing`) and ``neckline`` mask.

    Each example has its own random stream, so an example does not depend on the split sizes.
    """
    stream = [seed, _SPLIT_SEED_IDS[split], index]
    rng = np.random.default_rng(np.random.SeedSequence(stream))
    label_idx = {h.name: int(rng.integers(h.num_classes)) for h in DEEPFASHION6}
    _make_rare(label_idx, np.random.default_rng(np.random.SeedSequence([*stream, 1])))
    names = {h.name: h.classes[label_idx[h.name]] for h in DEEPFASHION6}
    drawing = render_garment_keypoints(rng, names, max_side)  # render_garment's pixels
    return {
        "labels": label_idx,
        "category_id": _category_for(rng, names),
        "image": drawing.image,
        "bbox": drawing.bbox,
        "keypoints": drawing.keypoints,
        "neckline": drawing.neckline,
    }


# --- writing the release layout -----------------------------------------------------------------

_README = """\
SYNTHETIC DATA - NOT DeepFashion.

This folder was generated by fashion_keras_datasets.synthetic.demo (generator version {version},
seed {seed}).
It imitates the layout of the DeepFashion "Category and Attribute Prediction" fine-grained
attribute release (Anno_fine/ + img/) so that the demo runs through the same TFDS builder as
the real data, but every image is a drawing of a garment on a random background. Each of the six
heads (texture, sleeve, length, neckline, fabric, fit) is drawn visibly and labelled at random,
each class about equally often except sleeveless (about 1 garment in 12: a rare class).
Accuracies measured on this data say nothing about real photographs.

Images: train {train}, val {val}, test {test}.

regions.csv: the box of each region (collar, upper, sleeves, lower, garment) of each image, from
the keypoints of the drawn garment (image,region,x1,y1,x2,y2 in pixels, x2/y2 exclusive), as a
detector would give them; a region whose keypoints the garment lacks has no row.
"""


def _write_split(
    root: str, split: str, n: int, start: int, seed: int, max_side: int
) -> list[tuple[Any, ...]]:
    """Writes the images and annotation files of ``split``; returns its region rows."""
    anno = os.path.join(root, "Anno_fine")
    paths, attrs, cates, boxes = [], [], [], []
    keypoints, sizes = [], []
    offsets = np.cumsum([0] + [h.num_classes for h in DEEPFASHION6])
    ncols = int(offsets[-1])
    for i in range(n):
        number = start + i
        item = f"Demo_Item_{(number - 1) // _IMAGES_PER_ITEM + 1:05d}"
        rel = f"img/{item}/img_{number:08d}.jpg"
        ex = sample_example(seed, split, i, max_side)
        folder = os.path.join(root, "img", item)
        os.makedirs(folder, exist_ok=True)
        ex["image"].save(os.path.join(root, rel), format="JPEG", quality=JPEG_QUALITY)
        row = ["0"] * ncols
        for k, head in enumerate(DEEPFASHION6):
            row[int(offsets[k]) + ex["labels"][head.name]] = "1"
        paths.append(rel)
        attrs.append(" ".join(row))
        cates.append(str(ex["category_id"]))
        boxes.append(" ".join(str(v) for v in ex["bbox"]))
        keypoints.append(ex["keypoints"])
        sizes.append(ex["image"].size)
    for suffix, rows in (("", paths), ("_attr", attrs), ("_cate", cates), ("_bbox", boxes)):
        with open(os.path.join(anno, f"{split}{suffix}.txt"), "w", encoding="utf-8") as f:
            f.write("".join(r + "\n" for r in rows))
    return region_rows(paths, np.stack(keypoints), np.asarray(sizes))


def region_rows(
    images: Sequence[str], keypoints: np.ndarray, image_sizes: np.ndarray
) -> list[tuple[Any, ...]]:
    """The region-file rows ``(image, region, x1, y1, x2, y2)`` of every region in
    :data:`REGIONS` found in each image, image by image (regions in their preset order).

    Args:
      images: the image names (the builder's ``image/filename``).
      keypoints: float ``[N, 24, 3]`` FashionAI keypoints ``(x, y, v)`` in pixels, v = -1 absent.
      image_sizes: ``[N, 2]`` ``(width, height)``.
    """
    found = {
        name: region_boxes(region, keypoints, FASHIONAI_KEYPOINTS, image_sizes)
        for name, region in REGIONS.items()
    }
    rows: list[tuple[Any, ...]] = []
    for i, image in enumerate(images):
        for name, (boxes, ok) in found.items():
            if ok[i]:
                rows.append((image, name, *(float(v) for v in boxes[i])))
    return rows


def _write_lists(root: str) -> None:
    anno = os.path.join(root, "Anno_fine")
    cols = attribute_columns()
    with open(os.path.join(anno, "list_attr_cloth.txt"), "w", encoding="utf-8") as f:
        f.write(f"{len(cols)}\nattribute_name  attribute_type\n")
        f.write("".join(f"{name:<28}{t}\n" for name, t in cols))
    with open(os.path.join(anno, "list_category_cloth.txt"), "w", encoding="utf-8") as f:
        f.write(f"{len(DEEPFASHION_CATEGORIES)}\ncategory_name  category_type\n")
        f.write(
            "".join(
                f"{name:<28}{t}\n"
                for name, t in zip(DEEPFASHION_CATEGORIES, DEEPFASHION_CATEGORY_TYPES, strict=True)
            )
        )


def generate_demo(
    root: str | os.PathLike,
    num_train: int = 3000,
    num_val: int = 500,
    num_test: int = 500,
    seed: int = 0,
    *,
    max_side: int = MAX_SIDE,
    overwrite: bool = False,
) -> dict[str, int]:
    """Writes a synthetic demo release to ``root`` (``img/`` + ``Anno_fine/``).

    The folder is built in a temporary sibling and renamed into place, so ``root`` is either
    absent or complete. Same arguments give byte-identical files.

    Args:
      root: the folder to create (the TFDS builder's manual folder).
      num_train, num_val: images per split (at least 1 each).
      num_test: test images; 0 writes no test files (the builder then has no test split).
      seed: random seed.
      max_side: the long side of the largest images (default 200; tiny test fixtures use less).
      overwrite: replace an existing ``root``; otherwise an existing non-empty one is an error.

    Returns:
      ``{"train": num_train, "val": num_val, "test": num_test}``.
    """
    counts = {"train": int(num_train), "val": int(num_val), "test": int(num_test)}
    for split, n in counts.items():
        if n < (0 if split == "test" else 1):
            raise ValueError(f"num_{split} = {n}: expected >= {0 if split == 'test' else 1}")
    root = os.path.abspath(os.fspath(root))
    if os.path.exists(root) and os.listdir(root) and not overwrite:
        raise FileExistsError(f"{root} exists and is not empty; pass overwrite=True to replace it")
    tmp = tmp_sibling(root)
    try:
        _write_demo_tree(tmp, counts, seed, max_side)
        replace_dir(tmp, root)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return counts


def tmp_sibling(root: str) -> str:
    """A new temporary sibling path of ``root`` (its parent created), for an atomic replace."""
    parent = os.path.dirname(root)
    os.makedirs(parent, exist_ok=True)
    return os.path.join(
        parent, f".{os.path.basename(root)}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    )


def _marker(counts: dict[str, int], seed: int, max_side: int) -> dict[str, Any]:
    marker: dict[str, Any] = {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "counts": counts,
    }
    if max_side != MAX_SIDE:
        marker["max_side"] = max_side
    return marker


def _write_demo_tree(tmp: str, counts: dict[str, int], seed: int, max_side: int) -> None:
    """Writes the whole release into the new folder ``tmp``; the marker file comes last."""
    os.makedirs(os.path.join(tmp, "Anno_fine"))
    os.makedirs(os.path.join(tmp, "img"))
    start = 1
    regions: list[tuple[Any, ...]] = []
    for split in SPLITS:
        if counts[split]:
            regions += _write_split(tmp, split, counts[split], start, seed, max_side)
            start += counts[split]
    write_region_file(os.path.join(tmp, REGION_FILE), regions)
    _write_lists(tmp)
    with open(os.path.join(tmp, README_NAME), "w", encoding="utf-8") as f:
        f.write(_README.format(version=GENERATOR_VERSION, seed=seed, **counts))
    with open(os.path.join(tmp, MARKER_NAME), "w", encoding="utf-8") as f:
        json.dump(_marker(counts, seed, max_side), f, sort_keys=True)
        f.write("\n")


def replace_dir(src: str, dst: str) -> None:
    """Renames ``src`` to ``dst``, replacing ``dst`` if it exists."""
    if os.path.exists(dst):
        trash = f"{dst}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.rename(dst, trash)
        try:
            os.rename(src, dst)
        finally:
            shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(src, dst)


def read_marker(root: str | os.PathLike, name: str = MARKER_NAME) -> dict[str, Any] | None:
    """The generator marker ``name`` of a demo folder, or None if absent or unreadable."""
    try:
        with open(os.path.join(os.fspath(root), name), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def cached_tree(
    root: str, expected: dict[str, Any], write: Callable[[str], None], marker: str = MARKER_NAME
) -> str:
    """``root``, first written by ``write(tmp)`` unless its marker file ``marker`` equals
    ``expected`` (``write`` fills the new folder ``tmp``, its marker last).

    Concurrent callers are safe: each writes its own temporary sibling and the first complete
    copy wins.
    """
    if read_marker(root, marker) == expected:
        return root
    tmp = tmp_sibling(root)
    try:
        write(tmp)
        # Another process may have installed a complete copy meanwhile: keep that one (it may
        # be in use) and drop ours. Otherwise replace the missing or stale folder.
        if read_marker(root, marker) != expected:
            try:
                replace_dir(tmp, root)
            except OSError:
                if read_marker(root, marker) != expected:
                    raise
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def default_cache_dir() -> str:
    """``$FASHION_KERAS_CACHE`` or ``~/.cache/fashion_keras``."""
    return os.environ.get("FASHION_KERAS_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "fashion_keras"
    )


def demo_manual_dir(
    cache_dir: str | None = None,
    *,
    num_train: int = 3000,
    num_val: int = 500,
    num_test: int = 500,
    seed: int = 0,
) -> str:
    """The cached demo manual folder, generated on first use.

    The default set lives in ``<cache_dir>/demo/v<GENERATOR_VERSION>/manual``; other sizes or seeds
    get their own sibling folder. A folder whose marker is missing or does not match is
    regenerated. Concurrent callers are safe: each generates into its own temporary folder and the
    first complete one wins.
    """
    cache_dir = os.path.abspath(cache_dir or default_cache_dir())
    counts = {"train": num_train, "val": num_val, "test": num_test}
    name = f"v{GENERATOR_VERSION}"
    if (num_train, num_val, num_test, seed) != (3000, 500, 500, 0):
        name += f"_s{seed}_{num_train}_{num_val}_{num_test}"
    root = os.path.join(cache_dir, "demo", name, "manual")
    return cached_tree(
        root,
        _marker(counts, seed, MAX_SIDE),
        lambda tmp: _write_demo_tree(tmp, counts, seed, MAX_SIDE),
    )


def demo_region_file(cache_dir: str | None = None, **sizes: int) -> str:
    """The region file (:data:`REGION_FILE`) of the cached demo :func:`demo_manual_dir` (the
    same arguments: ``num_train``, ``num_val``, ``num_test``, ``seed``), generated on first
    use."""
    return os.path.join(demo_manual_dir(cache_dir, **sizes), REGION_FILE)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fashion_keras_datasets.synthetic.demo",
        description="Write synthetic DeepFashion-6 demo data (Anno_fine/ + img/ layout).",
    )
    parser.add_argument("out_dir", help="folder to create (the builder's --manual_dir)")
    parser.add_argument("--num-train", type=int, default=3000)
    parser.add_argument("--num-val", type=int, default=500)
    parser.add_argument("--num-test", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-side", type=int, default=MAX_SIDE, help="long side of images")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT_DIR")
    args = parser.parse_args(argv)
    return run_generator(
        lambda: generate_demo(
            args.out_dir, args.num_train, args.num_val, args.num_test, args.seed,
            max_side=args.max_side, overwrite=args.overwrite,
        ),
        args.out_dir,
    )  # fmt: skip


def run_generator(write: Callable[[], dict[str, int]], out_dir: str) -> int:
    """A generator CLI's body: runs ``write``, prints what it wrote and how long it took, or the
    error (an existing folder, a bad size) as one line; returns the exit status."""
    start = time.perf_counter()
    try:
        counts = write()
    except (FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    took = time.perf_counter() - start
    print(f"wrote {counts} to {os.path.abspath(out_dir)} in {took:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
