"""See that a dataset was read right: its build report and a grid of examples per head.

``python -m fashion_keras.data inspect --dataset fashionai_attributes --data-dir DIR`` prepares
the dataset if needed (like training does; no ``--data-dir``: the synthetic demo data), prints the build report (rows per annotation file,
kept/skipped/adjusted per split with ``file:line`` examples, labels per head and class) and writes
a PNG grid: one row per head, a few examples labelled for it, each captioned with its class (and
FashionAI ``m`` classes), with the garment box (green) and the crop the model sees (the box plus
``--bbox-margin``, yellow) drawn on the image.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image, ImageDraw, ImageFont

from fashion_keras import cli, sections
from fashion_keras.data import pipeline, sources
from fashion_keras.data.config import DEFAULT_BBOX_MARGIN, DataConfig, PreprocessConfig
from fashion_keras.heads import Head, get_heads

CELL = 150  # pixels per image cell
CAPTION = 28  # pixels of caption under each image
LABEL_WIDTH = 190  # pixels of the head-name column
BOX_COLOUR = (0, 200, 0)
CROP_COLOUR = (255, 200, 0)


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


def collect_examples(
    builder: tfds.core.DatasetBuilder,
    heads: Sequence[Head],
    split: str,
    per_head: int,
    max_scan: int = 5000,
) -> dict[str, list[dict[str, Any]]]:
    """Up to ``per_head`` examples labelled for each head, scanning at most ``max_scan``."""
    ds = sources.load_split(builder, split).take(max_scan)
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


def _caption(ex: Mapping[str, Any], head: Head) -> str:
    labels = ex.get("labels", {})
    idx = int(labels.get(head.name, ex.get(head.name, -1)))
    text = head.classes[idx]
    m = ex.get("m_mask", {}).get(head.name)
    if m is not None and np.any(m):
        text += " | m: " + ", ".join(head.classes[i] for i in np.flatnonzero(m))
    return text


def render_grid(
    examples: Mapping[str, Sequence[Mapping[str, Any]]],
    heads: Sequence[Head],
    margin: float = DEFAULT_BBOX_MARGIN,
) -> Image.Image:
    """One row per head: its examples with box, crop and class drawn."""
    font = ImageFont.load_default()
    columns = max([len(v) for v in examples.values()] + [1])
    rows = [h for h in heads if h.name in examples]
    grid = Image.new(
        "RGB", (LABEL_WIDTH + columns * CELL, max(1, len(rows)) * (CELL + CAPTION)), "white"
    )
    draw = ImageDraw.Draw(grid)
    for r, head in enumerate(rows):
        top = r * (CELL + CAPTION)
        draw.text((6, top + CELL // 2), head.name, fill="black", font=font)
        if not examples[head.name]:
            draw.text((LABEL_WIDTH + 6, top + CELL // 2), "(no labelled examples)", fill="gray")
        for c, ex in enumerate(examples[head.name]):
            img = Image.open(io.BytesIO(ex["image"])).convert("RGB")
            w, h = img.size
            scale = (CELL - 4) / max(w, h)  # small images are enlarged, large ones shrunk
            img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))))
            pen = ImageDraw.Draw(img)
            bbox = ex.get("bbox", (0.0, 0.0, 1.0, 1.0))
            x0, y0, x1, y1 = (v * scale for v in crop_box(bbox, w, h, margin))
            pen.rectangle((x0, y0, x1 - 1, y1 - 1), outline=CROP_COLOUR, width=2)
            ymin, xmin, ymax, xmax = (float(v) for v in bbox)
            bx0, by0 = xmin * img.width, ymin * img.height
            pen.rectangle(
                (bx0, by0, max(bx0, xmax * img.width - 1), max(by0, ymax * img.height - 1)),
                outline=BOX_COLOUR,
                width=2,
            )
            left = LABEL_WIDTH + c * CELL
            grid.paste(img, (left + (CELL - img.width) // 2, top + (CELL - img.height) // 2))
            caption = _caption(ex, head)
            draw.text((left + 2, top + CELL + 2), caption[:26], fill="black", font=font)
            if len(caption) > 26:
                draw.text((left + 2, top + CELL + 14), caption[26:52], fill="black", font=font)
    return grid


def inspect(
    data: DataConfig,
    *,
    heads: str | None = None,
    split: str = "train",
    per_head: int = 4,
    output: str = "inspect.png",
    bbox_margin: float = DEFAULT_BBOX_MARGIN,
) -> tuple[str, str]:
    """Prepares the dataset of ``data`` if needed and writes the grid; returns
    ``(report text, png path)``.

    Args:
      heads: a head spec (as ``--heads``); default: every head the dataset labels.
    """
    spec = get_heads(heads) if heads else None
    builder = sources.builders_for(data, spec)[0][0]
    available = pipeline.label_features(builder.info.features)
    if spec is None:
        spec = tuple(Head(name, tuple(f.names)) for name, f in available.items())
    else:
        pipeline.check_heads(spec, builder.info.features, builder.name)
        spec = tuple(h for h in spec if h.name in available)
    examples = collect_examples(builder, spec, split, per_head)
    grid = render_grid(examples, spec, bbox_margin)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    grid.save(output, format="PNG")
    return format_report(builder), output


#: DataConfig fields inspect does not take (one dataset; --split picks the split).
DATA_EXCLUDE = ("sources", "source_weights", "train_split", "val_split")


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.command_parser(
        "python -m fashion_keras.data",
        "Dataset tools. inspect: print a dataset's build report and write a PNG grid of "
        "examples per head with their labels and crop boxes.",
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
