"""See that a dataset was read right: its build report and a grid of examples per head.

``python -m fashion_keras.data inspect --dataset fashionai_attributes --data-dir DIR`` prepares
the dataset if needed (like training does; no ``--data-dir``: the synthetic demo data), prints the build report (rows per annotation file,
kept/skipped/adjusted per split with ``file:line`` examples, labels per head and class) and writes
a PNG grid: one row per head, a few examples labelled for it, each captioned with its class (and
FashionAI ``m`` classes), with the garment box (green) and the crop the model sees (the box plus
``--bbox-margin``, yellow) drawn on the image.

A head that names a region (``Head.region``; heads taken from the dataset get the region of the
preset head with the same name and classes) also gets its region box, in the region's colour
(:data:`REGION_COLOURS`): the box of ``--region-file`` for that image where the file has one
(:mod:`fashion_keras.data.region_lookup`), else the box of the example's ground-truth keypoints
(``keypoints/<head>`` features, :func:`~fashion_keras.heads.region_boxes.region_box`), else the
garment box, drawn dashed and captioned ``<region>: garment box``. The command prints per region
how many of the shown examples fell back to the garment box.
"""

from __future__ import annotations

import dataclasses
import io
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image, ImageDraw, ImageFont

from fashion_keras import cli, sections
from fashion_keras.data import pipeline, sources
from fashion_keras.data.config import DEFAULT_BBOX_MARGIN, DataConfig, PreprocessConfig
from fashion_keras.data.region_files import read_region_file
from fashion_keras.data.region_lookup import FULL_IMAGE, count_fallbacks, region_lookup
from fashion_keras.data.region_views import keypoint_head_for
from fashion_keras.heads import (
    KEYPOINT_PRESETS,
    PRESETS,
    REGIONS,
    Head,
    KeypointHead,
    get_heads,
    region_box,
)
from fashion_keras.heads.names import HeadSpecError

CELL = 150  # pixels per image cell
CAPTION = 28  # pixels of caption under each image
REGION_CAPTION = 12  # extra caption pixels (the region line) when a shown head has a region
LABEL_WIDTH = 190  # pixels of the head-name column
BOX_COLOUR = (0, 200, 0)
CROP_COLOUR = (255, 200, 0)
#: One colour per region preset (none is the garment box's or the crop's).
REGION_COLOURS: dict[str, tuple[int, int, int]] = {
    "collar": (255, 0, 255),
    "upper": (0, 110, 255),
    "sleeves": (255, 90, 0),
    "lower": (0, 210, 210),
    "garment": (140, 60, 255),
}
#: Where a shown example's region box came from.
FROM_FILE, FROM_KEYPOINTS, FROM_GARMENT = "region file", "keypoints", "garment box"
FALLBACK_NOTE = "garment box (no region box)"
_DASH, _GAP = 4, 3


def format_report(builder: tfds.core.DatasetBuilder, classes: bool = True) -> str:
    """The builder's stored build report as text (the same format for every builder)."""
    from fashion_keras_datasets.common.report import format_build_report

    report = builder.info.metadata.get("report") if builder.info.metadata else None
    sizes = ", ".join(f"{s} {builder.info.splits[s].num_examples}" for s in builder.info.splits)
    head = f"{builder.name}/{builder.builder_config.name if builder.builder_config else ''}"
    lines = [f"{head.rstrip('/')} {builder.version}: examples written: {sizes}"]
    if report:
        lines.append(format_build_report(report, classes=classes))
    else:
        lines.append("(no build report stored with this dataset)")
    return "\n".join(lines)


def crop_box(
    bbox: Sequence[float], width: int, height: int, margin: float
) -> tuple[int, int, int, int]:
    """Pixel ``(x0, y0, x1, y1)`` of the crop ``preprocess.crop_window`` takes for ``bbox``."""
    ymin, xmin, ymax, xmax = (float(v) for v in bbox)
    y0, x0, y1, x1 = ymin * height, xmin * width, ymax * height, xmax * width
    dy, dx = (y1 - y0) * margin, (x1 - x0) * margin
    top = min(max(np.floor(y0 - dy), 0.0), height - 1.0)
    left = min(max(np.floor(x0 - dx), 0.0), width - 1.0)
    bottom = min(max(np.ceil(y1 + dy), top + 1.0), float(height))
    right = min(max(np.ceil(x1 + dx), left + 1.0), float(width))
    return int(left), int(top), int(right), int(bottom)


def box_pixels(box: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    """The drawn outline ``(x0, y0, x1, y1)`` (inclusive) of a normalised ``(ymin, xmin, ymax,
    xmax)`` box on a ``width x height`` picture."""
    ymin, xmin, ymax, xmax = (float(v) for v in box)
    x0, y0 = round(xmin * width), round(ymin * height)
    return x0, y0, max(x0, round(xmax * width) - 1), max(y0, round(ymax * height) - 1)


def placement(
    width: int, height: int, row: int, column: int, row_height: int
) -> tuple[float, tuple[int, int]]:
    """``(scale, (left, top))``: how a ``width x height`` photo is shrunk or enlarged into the
    cell at ``row``, ``column`` of the grid, and where the drawn picture's top-left lands."""
    scale = (CELL - 4) / max(width, height)  # small images are enlarged, large ones shrunk
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    left = LABEL_WIDTH + column * CELL + (CELL - w) // 2
    return scale, (left, row * row_height + (CELL - h) // 2)


def row_height(heads: Sequence[Head]) -> int:
    """Pixels per grid row: the cell, its caption, and a region line when a head has a region."""
    return CELL + CAPTION + (REGION_CAPTION if any(h.region for h in heads) else 0)


def with_preset_regions(heads: Sequence[Head]) -> tuple[Head, ...]:
    """``heads``, each without a region given the region of the preset head (:data:`PRESETS`)
    with the same name and classes."""
    known = {(h.name, h.classes): h.region for spec in PRESETS.values() for h in spec if h.region}
    return tuple(
        h if h.region else dataclasses.replace(h, region=known.get((h.name, h.classes)))
        for h in heads
    )


def keypoint_heads_for_regions(
    regions: Sequence[str], heads: Sequence[Any], features: Mapping[str, Any]
) -> dict[str, KeypointHead]:
    """``{region: keypoint head}``: for each region, the first keypoint head (of ``heads``,
    then the :data:`KEYPOINT_PRESETS`) the dataset has ``keypoints/<head>`` for and that holds
    all the region's keypoints; regions without one are left out."""
    shapes = pipeline.keypoint_features(features)
    candidates = [h for h in heads if isinstance(h, KeypointHead)]
    candidates += [h for spec in KEYPOINT_PRESETS.values() for h in spec]
    usable = [h for h in candidates if shapes.get(h.name) == (h.num_keypoints, 3)]
    found = {}
    for region in regions:
        try:
            found[region] = keypoint_head_for(region, usable)
        except HeadSpecError:  # no such head: the region file's box or the garment box
            continue
    return found


def collect_examples(
    builder: tfds.core.DatasetBuilder,
    heads: Sequence[Head],
    split: str,
    per_head: int,
    max_scan: int = 5000,
    transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Up to ``per_head`` examples labelled for each head, scanning at most ``max_scan``
    (``transform``: a ``Dataset.map`` function applied first, e.g. a region lookup)."""
    ds = sources.load_split(builder, split).take(max_scan)
    if transform is not None:
        ds = ds.map(transform)
    found: dict[str, list[dict[str, Any]]] = {h.name: [] for h in heads}
    for ex in tfds.as_numpy(ds):
        labels = ex.get("labels", {})
        for h in heads:
            value = labels.get(h.name, ex.get(h.name, -1))
            if int(value) >= 0 and len(found[h.name]) < per_head:
                found[h.name].append(ex)
        if all(len(v) >= per_head for v in found.values()):
            break
    return found


def _photo_size(ex: Mapping[str, Any]) -> tuple[int, int]:
    """The photo's ``(width, height)``."""
    if "image/width" in ex and "image/height" in ex:
        return int(ex["image/width"]), int(ex["image/height"])
    return Image.open(io.BytesIO(ex["image"])).size


def resolve_regions(
    examples: Mapping[str, Sequence[dict[str, Any]]],
    heads: Sequence[Head],
    keypoint_heads: Mapping[str, KeypointHead],
) -> None:
    """Gives each shown example of a head with a region its box, in place: ``region_boxes``,
    ``region_found`` and ``region_source`` (:data:`FROM_FILE`, :data:`FROM_KEYPOINTS` or
    :data:`FROM_GARMENT`) per region. A box the region lookup found wins, then the box of the
    example's keypoints, then the garment box."""
    for head in heads:
        region = head.region
        if not region:
            continue
        for ex in examples.get(head.name, ()):
            boxes = ex.setdefault("region_boxes", {})
            found = ex.setdefault("region_found", {})
            source = ex.setdefault("region_source", {})
            if region in source:
                continue  # shown for another head with this region already
            if bool(found.get(region, False)):
                source[region] = FROM_FILE
                continue
            kp_head = keypoint_heads.get(region)
            points = ex.get("keypoints", {}).get(kp_head.name) if kp_head else None
            box = None
            if points is not None:
                width, height = _photo_size(ex)
                box = region_box(region, points, kp_head, (width, height))
            if box is not None:
                x1, y1, x2, y2 = box
                boxes[region] = np.array([y1 / height, x1 / width, y2 / height, x2 / width])
                found[region], source[region] = True, FROM_KEYPOINTS
            else:
                boxes[region] = np.asarray(ex.get("bbox", FULL_IMAGE), np.float64)
                found[region], source[region] = False, FROM_GARMENT


def region_summary(
    examples: Mapping[str, Sequence[Mapping[str, Any]]], heads: Sequence[Head]
) -> list[str]:
    """One line per region of the shown heads: where the shown examples' boxes came from and
    how many fell back to the garment box (:func:`count_fallbacks`)."""
    lines = []
    regions = list(dict.fromkeys(h.region for h in heads if h.region))
    for region in regions:
        shown = [
            ex
            for h in heads
            if h.region == region
            for ex in examples.get(h.name, ())
            if region in ex.get("region_source", {})
        ]
        counts = count_fallbacks([{"region_found": ex["region_found"]} for ex in shown], [region])
        sources_ = [ex["region_source"][region] for ex in shown]
        lines.append(
            f"region {region}: {counts.examples} shown examples; from the region file "
            f"{sources_.count(FROM_FILE)}, from keypoints {sources_.count(FROM_KEYPOINTS)}; "
            f"fell back to the garment box: {counts.fallbacks[region]}"
        )
    return lines


def _caption(ex: Mapping[str, Any], head: Head) -> str:
    labels = ex.get("labels", {})
    idx = int(labels.get(head.name, ex.get(head.name, -1)))
    text = head.classes[idx]
    m = ex.get("m_mask", {}).get(head.name)
    if m is not None and np.any(m):
        text += " | m: " + ", ".join(head.classes[i] for i in np.flatnonzero(m))
    return text


def _dashed_rectangle(
    pen: ImageDraw.ImageDraw, box: tuple[int, int, int, int], colour: tuple[int, int, int]
) -> None:
    """A rectangle outline of dashes (2 pixels wide) along ``box`` (inclusive corners)."""
    x0, y0, x1, y1 = box
    for start in range(x0, x1 + 1, _DASH + _GAP):
        end = min(start + _DASH - 1, x1)
        pen.rectangle((start, y0, end, y0 + 1), fill=colour)
        pen.rectangle((start, y1 - 1, end, y1), fill=colour)
    for start in range(y0, y1 + 1, _DASH + _GAP):
        end = min(start + _DASH - 1, y1)
        pen.rectangle((x0, start, x0 + 1, end), fill=colour)
        pen.rectangle((x1 - 1, start, x1, end), fill=colour)


def _draw_region(
    pen: ImageDraw.ImageDraw, ex: Mapping[str, Any], region: str, size: tuple[int, int], font: Any
) -> str:
    """Draws ``region``'s box of ``ex`` on its picture (of ``size``); returns its caption."""
    colour = REGION_COLOURS.get(region, (255, 0, 128))
    x0, y0, x1, y1 = box_pixels(ex["region_boxes"][region], *size)
    source = ex["region_source"][region]
    if source == FROM_GARMENT:  # dashed, just inside the (green) garment box
        _dashed_rectangle(pen, (x0 + 2, y0 + 2, max(x0 + 2, x1 - 2), max(y0 + 2, y1 - 2)), colour)
        return f"{region}: {FROM_GARMENT}"
    pen.rectangle((x0, y0, x1, y1), outline=colour, width=2)
    pen.text((x0 + 3, y0 + 2), region, fill=colour, font=font)
    return f"{region}: {source}"


def render_grid(
    examples: Mapping[str, Sequence[Mapping[str, Any]]],
    heads: Sequence[Head],
    margin: float = DEFAULT_BBOX_MARGIN,
) -> Image.Image:
    """One row per head: its examples with box, crop and class drawn, and the region box of a
    head with a region (examples given ``region_boxes`` by :func:`resolve_regions`)."""
    font = ImageFont.load_default()
    columns = max([len(v) for v in examples.values()] + [1])
    rows = [h for h in heads if h.name in examples]
    height = row_height(rows)
    grid = Image.new("RGB", (LABEL_WIDTH + columns * CELL, max(1, len(rows)) * height), "white")
    draw = ImageDraw.Draw(grid)
    for r, head in enumerate(rows):
        top = r * height
        draw.text((6, top + CELL // 2), head.name, fill="black", font=font)
        if head.region:
            colour = REGION_COLOURS.get(head.region, (255, 0, 128))
            draw.text((6, top + CELL // 2 + 14), f"region: {head.region}", fill=colour, font=font)
            draw.text((6, top + CELL // 2 + 28), f"dashed: {FALLBACK_NOTE}", fill=colour, font=font)
        if not examples[head.name]:
            draw.text((LABEL_WIDTH + 6, top + CELL // 2), "(no labelled examples)", fill="gray")
        for c, ex in enumerate(examples[head.name]):
            img = Image.open(io.BytesIO(ex["image"])).convert("RGB")
            w, h = img.size
            scale, corner = placement(w, h, r, c, height)
            img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))))
            pen = ImageDraw.Draw(img)
            bbox = ex.get("bbox", FULL_IMAGE)
            x0, y0, x1, y1 = (v * scale for v in crop_box(bbox, w, h, margin))
            pen.rectangle((x0, y0, x1 - 1, y1 - 1), outline=CROP_COLOUR, width=2)
            pen.rectangle(box_pixels(bbox, *img.size), outline=BOX_COLOUR, width=2)
            region_caption = None
            if head.region and head.region in ex.get("region_source", {}):
                region_caption = _draw_region(pen, ex, head.region, img.size, font)
            grid.paste(img, corner)
            left = LABEL_WIDTH + c * CELL
            caption = _caption(ex, head)
            draw.text((left + 2, top + CELL + 2), caption[:26], fill="black", font=font)
            if len(caption) > 26:
                draw.text((left + 2, top + CELL + 14), caption[26:52], fill="black", font=font)
            if region_caption:
                colour = REGION_COLOURS.get(head.region, (255, 0, 128))
                draw.text((left + 2, top + CELL + 26), region_caption, fill=colour, font=font)
    return grid


def inspect(
    data: DataConfig,
    *,
    heads: str | None = None,
    split: str = "train",
    per_head: int = 4,
    output: str = "inspect.png",
    bbox_margin: float = DEFAULT_BBOX_MARGIN,
    region_file: str | None = None,
) -> tuple[str, str]:
    """Prepares the dataset of ``data`` if needed and writes the grid; returns
    ``(report text, png path)``; the text ends with a line per region (:func:`region_summary`).

    Args:
      heads: a head spec (as ``--heads``); default: every head the dataset labels.
      region_file: a region file (:mod:`fashion_keras.data.region_files`) whose boxes are
        drawn for the heads with a region (default: ``data.region_file``, the
        ``--region-file`` flag).
    """
    if region_file is None:
        region_file = data.region_file
    boxes = None if region_file is None else read_region_file(region_file, tuple(REGIONS))
    spec = get_heads(heads) if heads else None
    builder = sources.builders_for(data, spec)[0][0]
    features = builder.info.features
    available = pipeline.label_features(features)
    if spec is None:
        all_heads: tuple[Any, ...] = ()
        shown = with_preset_regions([Head(name, tuple(f.names)) for name, f in available.items()])
    else:
        pipeline.check_heads(spec, features, builder.name)
        all_heads = spec
        shown = tuple(h for h in spec if isinstance(h, Head) and h.name in available)
    regions = list(dict.fromkeys(h.region for h in shown if h.region))
    lines = []
    lookup = None
    if boxes is not None:
        lines.append(f"region file {boxes.format()}")
        if regions:
            lookup = region_lookup(boxes, regions)
        else:
            lines.append("(no shown head names a region: the region file is not drawn)")
    examples = collect_examples(builder, shown, split, per_head, transform=lookup)
    resolve_regions(examples, shown, keypoint_heads_for_regions(regions, all_heads, features))
    lines += region_summary(examples, shown)
    grid = render_grid(examples, shown, bbox_margin)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    grid.save(output, format="PNG")
    return "\n".join([format_report(builder), *lines]), output


#: DataConfig fields inspect does not take (one dataset; --split picks the split).
DATA_EXCLUDE = ("sources", "source_weights", "train_split", "val_split")


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.command_parser(
        "python -m fashion_keras.data",
        "Dataset tools. inspect: print a dataset's build report and write a PNG grid of "
        "examples per head with their labels, crop boxes and region boxes.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("inspect", help="print the build report and write an example grid")
    p.add_argument("--split", default="train", help="split to draw examples from")
    p.add_argument("--per-head", type=int, default=4, help="examples per head")
    p.add_argument("--output", default="inspect.png", help="PNG file to write")
    data = p.add_argument_group("data (--heads default: every head the dataset labels)")
    sections.add_arguments(data, DataConfig, exclude=DATA_EXCLUDE)
    sections.add_arguments(p.add_argument_group("preprocessing"), PreprocessConfig)
    args = parser.parse_args(argv)
    data_config = sections.from_args(DataConfig, args)
    preprocess = sections.from_args(PreprocessConfig, args)
    with cli.input_errors(args.debug):
        text, path = inspect(
            data_config,
            heads=args.heads,
            split=args.split,
            per_head=args.per_head,
            output=args.output,
            bbox_margin=preprocess.resolved_margin(),
        )
    print(text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
