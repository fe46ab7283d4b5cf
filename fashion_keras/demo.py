"""Synthetic DeepFashion-6 demo data, written in the real ``Anno_fine/`` + ``img/`` layout.

The demo goes through the same TFDS builder (``deepfashion_attributes``) as the real release, so
the whole pipeline (build, train, evaluate, export) can run offline in minutes. Each image shows
one garment on a cluttered background; every DeepFashion-6 head is drawn visibly:

- texture: the pattern on the cloth (small flowers, one big central motif, horizontal stripes,
  stitch marks along the edges, fine vertical pleat lines, none, a grid);
- sleeve: how much of the (skin-coloured) arm the sleeve covers;
- length: a dress with a belt and a skirt down to the ankles (maxi) or above the knee (mini), or a
  top that ends at the waist (no_dress);
- neckline: the opening cut at the top (round, V, square, or a closed collar band);
- fabric: the colour and grain of the cloth (blue twill denim, pale see-through chiffon, plain
  mid-colour cotton, dark leather with a sheen, noisy fuzzy-edged faux fur, ribbed knit);
- fit: the silhouette (narrow and tapered, wide and flared, straight).

Labels are drawn independently and uniformly per head. Generation is deterministic: the same seed
gives byte-identical files. Only numpy and PIL are used.

CLI: ``python -m fashion_keras.demo OUT_DIR [--num-train N] [--num-val N] [--num-test N]``.
"""

from __future__ import annotations

import argparse
import colorsys
import json
import math
import os
import shutil
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from fashion_keras.heads import (
    DEEPFASHION6,
    DEEPFASHION_CATEGORIES,
    DEEPFASHION_CATEGORY_TYPES,
    Head,
)

# Bump when the images or files change, so cached demo folders are regenerated.
GENERATOR_VERSION = 2
MARKER_NAME = ".fashion_keras_demo.json"
README_NAME = "README_SYNTHETIC.txt"
SPLITS = ("train", "val", "test")
JPEG_QUALITY = 90
_SPLIT_SEED_IDS = {"train": 1, "val": 2, "test": 3}
_IMAGES_PER_ITEM = 8
MAX_SIDE = 200  # default long side; images are 0.6-0.75 x (0.8-1.0) of it
_WIDTH_RANGE = (0.6, 0.75)
_HEIGHT_RANGE = (0.8, 1.0)

_HEADS: dict[str, Head] = {h.name: h for h in DEEPFASHION6}
_EXPECTED_HEADS = ("texture", "sleeve", "length", "neckline", "fabric", "fit")
if tuple(_HEADS) != _EXPECTED_HEADS:  # the drawing code below knows these six heads
    raise ImportError(f"fashion_keras.demo draws the heads {_EXPECTED_HEADS}, got {tuple(_HEADS)}")


def attribute_columns() -> list[tuple[str, int]]:
    """The 26 ``(attribute_name, attribute_type)`` columns of ``<split>_attr.txt``, in order."""
    return [(c, t) for t, head in enumerate(DEEPFASHION6, start=1) for c in head.classes]


def category_id(name: str) -> int:
    """The 1-based DeepFashion category id of ``name``."""
    return DEEPFASHION_CATEGORIES.index(name) + 1


# --- colours ------------------------------------------------------------------------------------


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32) * 255.0


def _fabric_colour(rng: np.random.Generator, fabric: str) -> np.ndarray:
    if fabric == "denim":
        return _hsv(rng.uniform(0.57, 0.63), rng.uniform(0.45, 0.7), rng.uniform(0.38, 0.6))
    if fabric == "chiffon":
        return _hsv(rng.random(), rng.uniform(0.08, 0.2), rng.uniform(0.86, 0.97))
    if fabric == "cotton":
        return _hsv(rng.random(), rng.uniform(0.45, 0.8), rng.uniform(0.68, 0.9))
    if fabric == "leather":
        return _hsv(rng.uniform(0.02, 0.1), rng.uniform(0.0, 0.6), rng.uniform(0.1, 0.24))
    if fabric == "faux":
        return _hsv(rng.uniform(0.05, 0.14), rng.uniform(0.2, 0.45), rng.uniform(0.5, 0.75))
    if fabric == "knit":
        return _hsv(rng.random(), rng.uniform(0.3, 0.6), rng.uniform(0.42, 0.65))
    raise ValueError(f"unknown fabric {fabric!r}")


def _contrast_colour(rng: np.random.Generator, base: np.ndarray) -> np.ndarray:
    luminance = float(base @ np.array([0.299, 0.587, 0.114], dtype=np.float32)) / 255.0
    if luminance > 0.5:
        return _hsv(rng.random(), rng.uniform(0.3, 0.9), rng.uniform(0.08, 0.28))
    return _hsv(rng.random(), rng.uniform(0.1, 0.5), rng.uniform(0.88, 1.0))


def _skin_colour(rng: np.random.Generator) -> np.ndarray:
    return _hsv(rng.uniform(0.03, 0.09), rng.uniform(0.25, 0.6), rng.uniform(0.45, 0.95))


# --- geometry (garment units: origin at the neck centre, y down, 1 unit = top-to-waist) ---------

_FIT_SHAPE = {  # shoulder half-width, armpit half-width, waist half-width, skirt flare per unit
    "tight": (0.30, 0.27, 0.2, 0.06),
    "conventional": (0.36, 0.35, 0.34, 0.18),
    "loose": (0.45, 0.48, 0.56, 0.42),
}
_SKIRT_LENGTH = {"maxi_length": 1.45, "mini_length": 0.55, "no_dress": 0.0}
_SLEEVE_LENGTH = {"long_sleeve": 0.95, "short_sleeve": 0.3, "sleeveless": 0.0}
_NECK_HALF_WIDTH = 0.14
_ARMPIT_Y = 0.36
_SHOULDER_Y = 0.08

Poly = list[tuple[float, float]]


def _garment_geometry(rng: np.random.Generator, labels: dict[str, str]) -> dict[str, Any]:
    shoulder, armpit, waist, flare = _FIT_SHAPE[labels["fit"]]
    jitter = rng.uniform(0.95, 1.05)
    shoulder, armpit, waist = shoulder * jitter, armpit * jitter, waist * jitter
    nw = _NECK_HALF_WIDTH
    torso = [
        (-nw, 0.0),
        (nw, 0.0),
        (shoulder, _SHOULDER_Y),
        (armpit, _ARMPIT_Y),
        (waist, 1.0),
        (-waist, 1.0),
        (-armpit, _ARMPIT_Y),
        (-shoulder, _SHOULDER_Y),
    ]
    parts: list[Poly] = [torso]
    skirt_len = _SKIRT_LENGTH[labels["length"]] * rng.uniform(0.93, 1.07)
    hem_y = 1.0
    if skirt_len > 0:
        hem_y = 1.0 + skirt_len
        hem = waist + flare * skirt_len
        parts.append([(-waist, 1.0), (waist, 1.0), (hem, hem_y), (-hem, hem_y)])
    else:  # a top: a slightly wider hem band ending at the waist
        parts.append([(-waist, 0.9), (waist, 0.9), (waist * 1.04, 1.08), (-waist * 1.04, 1.08)])
        hem_y = 1.08

    angle = math.radians(rng.uniform(20.0, 32.0))
    sleeves: list[Poly] = []
    arms: list[Poly] = []
    sleeve_len = _SLEEVE_LENGTH[labels["sleeve"]] * rng.uniform(0.94, 1.06)
    half = 0.14 if labels["fit"] == "loose" else 0.11
    cuff = 0.08 if labels["sleeve"] == "long_sleeve" else half
    for side in (-1.0, 1.0):
        arms.append(_arm_band(side, shoulder, armpit, angle, 1.05, 0.075, 0.06))
        if sleeve_len > 0:
            sleeves.append(_arm_band(side, shoulder, armpit, angle, sleeve_len, half, cuff))
    parts.extend(sleeves)

    neck = labels["neckline"]
    # The three openings differ in outline, width and depth so they survive a 64 px input:
    # crew = small shallow half-disc, V = deep narrow point, square = wide deep rectangle.
    if neck == "crew_neckline":
        cut: Poly = [(nw * math.cos(t), 0.16 * math.sin(t)) for t in np.linspace(0.0, math.pi, 13)]
    elif neck == "v_neckline":
        cut = [(-nw, 0.0), (nw, 0.0), (0.0, 0.46)]
    elif neck == "square_neckline":
        sq = min(0.2, shoulder - 0.06)
        cut = [(-sq, 0.0), (sq, 0.0), (sq, 0.27), (-sq, 0.27)]
    else:  # no_neckline: a closed collar band above the shoulder line
        cut = []
        parts.append([(-nw, -0.07), (nw, -0.07), (nw, 0.02), (-nw, 0.02)])
    neck_stub = [(-0.085, -0.3), (0.085, -0.3), (0.085, 0.05), (-0.085, 0.05)]
    return {
        "parts": parts,
        "sleeves": sleeves,
        "arms": arms,
        "cut": cut,
        "neck_stub": neck_stub,
        "hem_y": hem_y,
        "waist": waist,
        "is_dress": skirt_len > 0,
    }


def _arm_band(
    side: float, shoulder: float, armpit: float, angle: float, length: float, w0: float, w1: float
) -> Poly:
    """An arm or sleeve: a band along the arm's axis, joined to the torso at shoulder and armpit."""
    jx, jy = side * (shoulder + 0.01), 0.17  # the shoulder joint, where the arm's axis starts
    dx, dy = side * math.sin(angle), math.cos(angle)  # down and outwards
    px, py = side * math.cos(angle), -math.sin(angle)  # perpendicular, outwards and up
    ex, ey = jx + dx * length, jy + dy * length
    return [
        (side * (shoulder - 0.02), _SHOULDER_Y - 0.01),
        (jx + px * w0, jy + py * w0),
        (ex + px * w1, ey + py * w1),
        (ex - px * w1, ey - py * w1),
        (jx - px * w0, jy - py * w0),
        (side * armpit * 0.97, _ARMPIT_Y),
    ]


def _extent(polys: Sequence[Poly]) -> tuple[float, float, float, float]:
    xs = [x for p in polys for x, _ in p]
    ys = [y for p in polys for _, y in p]
    return min(xs), min(ys), max(xs), max(ys)


# --- rendering ----------------------------------------------------------------------------------


class _Canvas:
    """Maps garment units to pixels and rasterises polygons/lines into boolean masks."""

    def __init__(self, width: int, height: int, cx: float, y0: float, unit: float) -> None:
        self.width, self.height, self.cx, self.y0, self.unit = width, height, cx, y0, unit

    def pt(self, x: float, y: float) -> tuple[float, float]:
        return self.cx + x * self.unit, self.y0 + y * self.unit

    def new(self) -> tuple[Image.Image, ImageDraw.ImageDraw]:
        img = Image.new("L", (self.width, self.height), 0)
        return img, ImageDraw.Draw(img)

    def polys(self, polys: Sequence[Poly], value: int = 255, img: Image.Image | None = None):
        if img is None:
            img, _ = self.new()
        draw = ImageDraw.Draw(img)
        for p in polys:
            if len(p) >= 3:
                draw.polygon([self.pt(x, y) for x, y in p], fill=value)
        return img

    def width_px(self, w: float) -> int:
        return max(1, int(round(w * self.unit)))


def _mask(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.uint8) > 127


def _pattern_mask(
    rng: np.random.Generator, texture: str, canvas: _Canvas, geom: dict[str, Any]
) -> np.ndarray | None:
    """Boolean mask of the texture pattern (before clipping to the garment), or None."""
    if texture == "solid":
        return None
    img, draw = canvas.new()
    x0, y0, x1, y1 = _extent(geom["parts"])
    if texture == "floral":
        step = 0.27
        r = 0.045
        phase = rng.uniform(0, step, size=2)
        for gy in np.arange(y0 - step + phase[1], y1 + step, step):
            for i, gx in enumerate(np.arange(x0 - step + phase[0], x1 + step, step)):
                fx = gx + (step / 2 if int(round((gy - y0) / step)) % 2 else 0.0)
                fx += rng.uniform(-0.04, 0.04)
                fy = gy + rng.uniform(-0.04, 0.04)
                rot = rng.uniform(0, math.pi)
                for k in range(5):
                    a = rot + k * 2 * math.pi / 5
                    px, py = canvas.pt(fx + r * math.cos(a), fy + r * math.sin(a))
                    rr = r * 0.75 * canvas.unit
                    draw.ellipse([px - rr, py - rr, px + rr, py + rr], fill=255)
                del i
    elif texture == "graphic":
        cx, cy = rng.uniform(-0.03, 0.03), rng.uniform(0.62, 0.7)
        rad = rng.uniform(0.2, 0.25)
        kind = int(rng.integers(3))
        if kind == 0:  # disc
            (px, py), rr = canvas.pt(cx, cy), rad * canvas.unit
            draw.ellipse([px - rr, py - rr, px + rr, py + rr], fill=255)
        elif kind == 1:  # five-pointed star
            pts = []
            for k in range(10):
                a = -math.pi / 2 + k * math.pi / 5
                rk = rad if k % 2 == 0 else rad * 0.45
                pts.append(canvas.pt(cx + rk * math.cos(a), cy + rk * math.sin(a)))
            draw.polygon(pts, fill=255)
        else:  # diamond
            pts = [(cx, cy - rad), (cx + rad * 0.8, cy), (cx, cy + rad), (cx - rad * 0.8, cy)]
            draw.polygon([canvas.pt(x, y) for x, y in pts], fill=255)
    elif texture in ("striped", "lattice", "pleated"):
        horizontal = texture in ("striped", "lattice")
        vertical = texture in ("lattice", "pleated")
        period = {"striped": 0.17, "lattice": 0.16, "pleated": 0.1}[texture]
        thick = {"striped": 0.075, "lattice": 0.03, "pleated": 0.032}[texture]
        w = canvas.width_px(thick)
        off = rng.uniform(0, period)
        if horizontal:
            for gy in np.arange(y0 + off, y1, period):
                draw.line([canvas.pt(x0, gy), canvas.pt(x1, gy)], fill=255, width=w)
        if vertical:
            for gx in np.arange(x0 + off, x1, period):
                draw.line([canvas.pt(gx, y0), canvas.pt(gx, y1)], fill=255, width=w)
    elif texture == "embroidered":
        w = canvas.width_px(0.035)
        dash, gap = 0.05, 0.04
        outlines = list(geom["parts"]) + ([geom["cut"]] if geom["cut"] else [])
        for poly in outlines:
            n = len(poly)
            for k in range(n):
                (ax, ay), (bx, by) = poly[k], poly[(k + 1) % n]
                length = math.hypot(bx - ax, by - ay)
                if length < 1e-6:
                    continue
                # stitches run just inside the edge: offset towards the polygon's centre
                mx = sum(x for x, _ in poly) / n
                my = sum(y for _, y in poly) / n
                nx, ny = -(by - ay) / length, (bx - ax) / length
                if (mx - ax) * nx + (my - ay) * ny < 0:
                    nx, ny = -nx, -ny
                inset = 0.05
                t = 0.0
                while t < length:
                    t2 = min(t + dash, length)
                    p = (
                        ax + (bx - ax) * t / length + nx * inset,
                        ay + (by - ay) * t / length + ny * inset,
                    )
                    q = (
                        ax + (bx - ax) * t2 / length + nx * inset,
                        ay + (by - ay) * t2 / length + ny * inset,
                    )
                    draw.line([canvas.pt(*p), canvas.pt(*q)], fill=255, width=w)
                    t += dash + gap
        # a few cross-stitches around the neck
        for k in range(7):
            gx = (k - 3) * 0.06
            px, py = canvas.pt(gx, 0.14 if geom["cut"] else 0.1)
            s = 0.025 * canvas.unit
            draw.line([(px - s, py - s), (px + s, py + s)], fill=255, width=max(1, w - 1))
            draw.line([(px - s, py + s), (px + s, py - s)], fill=255, width=max(1, w - 1))
    else:
        raise ValueError(f"unknown texture {texture!r}")
    return _mask(img)


def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column coordinates as broadcastable ``(H, 1)`` and ``(1, W)`` arrays."""
    return (
        np.arange(height, dtype=np.float32)[:, None],
        np.arange(width, dtype=np.float32)[None, :],
    )


def _noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape, dtype=np.float32)


def _box_blur(a: np.ndarray) -> np.ndarray:
    p = np.pad(a, 1, mode="edge")
    return (
        p[:-2, :-2] + p[:-2, 1:-1] + p[:-2, 2:]
        + p[1:-1, :-2] + p[1:-1, 1:-1] + p[1:-1, 2:]
        + p[2:, :-2] + p[2:, 1:-1] + p[2:, 2:]
    ) / 9.0  # fmt: skip


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    base = _hsv(rng.random(), rng.uniform(0.0, 0.35), rng.uniform(0.35, 0.9))
    yy, xx = _grid(height, width)
    grad = rng.uniform(-0.15, 0.15) * (yy / height - 0.5) + rng.uniform(-0.1, 0.1) * (
        xx / width - 0.5
    )
    bg = base[None, None, :] * (1.0 + grad[..., None])
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(4, 9))):
        colour = tuple(
            int(c) for c in _hsv(rng.random(), rng.uniform(0, 0.5), rng.uniform(0.2, 0.95))
        )
        x0, y0 = rng.uniform(-0.2, 1.0) * width, rng.uniform(-0.2, 1.0) * height
        x1, y1 = x0 + rng.uniform(0.1, 0.6) * width, y0 + rng.uniform(0.05, 0.5) * height
        kind = int(rng.integers(3))
        if kind == 0:
            draw.rectangle([x0, y0, x1, y1], fill=colour)
        elif kind == 1:
            draw.ellipse([x0, y0, x1, y1], fill=colour)
        else:
            draw.line([x0, y0, x1, y1], fill=colour, width=int(rng.integers(2, 7)))
    out = np.asarray(img, dtype=np.float32)
    return out + 7.0 * _noise(rng, (height, width, 1))


def render_garment(
    rng: np.random.Generator, labels: dict[str, str], max_side: int = MAX_SIDE
) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """Draws one garment with the given class names per head.

    Returns:
      The RGB image and its pixel bounding box ``(x1, y1, x2, y2)`` (x2/y2 exclusive).
    """
    if max_side < 24:
        raise ValueError(f"max_side = {max_side}: expected >= 24 pixels")
    width = int(
        rng.integers(round(_WIDTH_RANGE[0] * max_side), round(_WIDTH_RANGE[1] * max_side) + 1)
    )
    height = int(
        rng.integers(round(_HEIGHT_RANGE[0] * max_side), round(_HEIGHT_RANGE[1] * max_side) + 1)
    )
    geom = _garment_geometry(rng, labels)
    ex0, ey0, ex1, ey1 = _extent(geom["parts"])
    ey0 = min(ey0, -0.1)  # keep a bit of neck in the picture
    fill = rng.uniform(0.55, 0.9)
    unit = min(
        fill * (height - 4) / (ey1 - ey0), rng.uniform(0.6, 0.92) * (width - 4) / (ex1 - ex0)
    )
    cx = rng.uniform(2 - ex0 * unit, width - 2 - ex1 * unit)
    y0 = rng.uniform(2 - ey0 * unit, height - 2 - ey1 * unit)
    canvas = _Canvas(width, height, cx, y0, unit)

    img = _background(rng, width, height)
    fabric, texture = labels["fabric"], labels["texture"]

    skin = _skin_colour(rng)
    # arms, neck and the skin showing through the neckline opening
    skin_polys = geom["arms"] + [geom["neck_stub"]] + ([geom["cut"]] if geom["cut"] else [])
    skin_mask = _mask(canvas.polys(skin_polys))
    img[skin_mask] = skin

    garment_img = canvas.polys(geom["parts"])
    if geom["cut"]:
        canvas.polys([geom["cut"]], value=0, img=garment_img)
    garment = _mask(garment_img)
    if fabric == "faux":  # fuzzy, furry edges
        soft = _box_blur(garment.astype(np.float32))
        garment = soft + 0.9 * rng.random(soft.shape, dtype=np.float32) > 0.95
    if not garment.any():  # cannot happen with the sizes above; keep the bbox well defined
        garment[height // 2, width // 2] = True

    base = _fabric_colour(rng, fabric)
    yy, xx = _grid(height, width)
    gx, gy = (xx - cx) / unit, (yy - y0) / unit
    shade = np.ones((height, width), dtype=np.float32)
    noise_sigma = 4.0
    if fabric == "denim":  # diagonal twill
        shade += 0.1 * np.sign(np.sin(2 * math.pi * (gx + gy) / 0.05))
        noise_sigma = 9.0
    elif fabric == "chiffon":
        noise_sigma = 1.5
    elif fabric == "leather":  # smooth with a broad diagonal sheen
        pos = rng.uniform(-0.3, 0.3)
        shade += 1.6 * np.exp(-(((gx - 0.5 * gy - pos) / 0.09) ** 2))
        noise_sigma = 1.5
    elif fabric == "faux":
        noise_sigma = 32.0
    elif fabric == "knit":  # vertical ribs with faint stitch rows
        shade += 0.16 * np.sin(2 * math.pi * gx / 0.055) + 0.05 * np.sin(2 * math.pi * gy / 0.05)
    cloth = base[None, None, :] * shade[..., None]
    noise = noise_sigma * _noise(rng, (height, width, 1))
    if fabric == "faux":  # fur strands: noise smeared vertically
        noise = (noise + np.roll(noise, 1, axis=0) + np.roll(noise, 2, axis=0)) / 1.5
    cloth = cloth + noise
    # seams: sleeve attachment lines and, for dresses, a belt at the waist
    seam_img, draw = canvas.new()
    w = canvas.width_px(0.025)
    for sleeve in geom["sleeves"]:
        draw.line([canvas.pt(*sleeve[0]), canvas.pt(*sleeve[-1])], fill=255, width=w)
        draw.line([canvas.pt(*sleeve[4]), canvas.pt(*sleeve[3])], fill=255, width=w)
    if geom["is_dress"]:
        ww = geom["waist"] * 1.05
        draw.line([canvas.pt(-ww, 1.0), canvas.pt(ww, 1.0)], fill=255, width=canvas.width_px(0.06))
    seams = _mask(seam_img) & garment
    cloth[seams] *= 0.6

    alpha = 0.78 if fabric == "chiffon" else 1.0
    img[garment] = alpha * cloth[garment] + (1.0 - alpha) * img[garment]

    pattern = _pattern_mask(rng, texture, canvas, geom)
    if pattern is not None:
        pattern &= garment
        colour = base * 0.42 if texture == "pleated" else _contrast_colour(rng, base)
        img[pattern] = colour + 3.0 * _noise(rng, (int(pattern.sum()), 3))

    # lighting
    light = rng.uniform(0.92, 1.08) + rng.uniform(-0.08, 0.08) * (xx / width - 0.5)
    img = img * light[..., None]
    out = Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8), "RGB")

    rows, cols = np.nonzero(garment)
    pad = rng.integers(0, 3, size=4)
    bbox = (
        max(0, int(cols.min()) - int(pad[0])),
        max(0, int(rows.min()) - int(pad[1])),
        min(width, int(cols.max()) + 1 + int(pad[2])),
        min(height, int(rows.max()) + 1 + int(pad[3])),
    )
    return out, bbox


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
    """Draws example ``index`` of ``split``: labels (class index per head), category, image, bbox.

    Each example has its own random stream, so an example does not depend on the split sizes.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, _SPLIT_SEED_IDS[split], index]))
    label_idx = {h.name: int(rng.integers(h.num_classes)) for h in DEEPFASHION6}
    names = {h.name: h.classes[label_idx[h.name]] for h in DEEPFASHION6}
    image, bbox = render_garment(rng, names, max_side)
    return {
        "labels": label_idx,
        "category_id": _category_for(rng, names),
        "image": image,
        "bbox": bbox,
    }


# --- writing the release layout -----------------------------------------------------------------

_README = """\
SYNTHETIC DATA - NOT DeepFashion.

This folder was generated by fashion_keras.demo (generator version {version}, seed {seed}).
It imitates the layout of the DeepFashion "Category and Attribute Prediction" fine-grained
attribute release (Anno_fine/ + img/) so that the demo runs through the same TFDS builder as
the real data, but every image is a drawing of a garment on a random background. Each of the six
heads (texture, sleeve, length, neckline, fabric, fit) is drawn visibly and labelled at random.
Accuracies measured on this data say nothing about real photographs.

Images: train {train}, val {val}, test {test}.
"""


def _write_split(root: str, split: str, n: int, start: int, seed: int, max_side: int) -> None:
    anno = os.path.join(root, "Anno_fine")
    paths, attrs, cates, boxes = [], [], [], []
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
    for suffix, rows in (("", paths), ("_attr", attrs), ("_cate", cates), ("_bbox", boxes)):
        with open(os.path.join(anno, f"{split}{suffix}.txt"), "w", encoding="utf-8") as f:
            f.write("".join(r + "\n" for r in rows))


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
    tmp = _tmp_sibling(root)
    try:
        _write_demo_tree(tmp, counts, seed, max_side)
        _replace_dir(tmp, root)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return counts


def _tmp_sibling(root: str) -> str:
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
    for split in SPLITS:
        if counts[split]:
            _write_split(tmp, split, counts[split], start, seed, max_side)
            start += counts[split]
    _write_lists(tmp)
    with open(os.path.join(tmp, README_NAME), "w", encoding="utf-8") as f:
        f.write(_README.format(version=GENERATOR_VERSION, seed=seed, **counts))
    with open(os.path.join(tmp, MARKER_NAME), "w", encoding="utf-8") as f:
        json.dump(_marker(counts, seed, max_side), f, sort_keys=True)
        f.write("\n")


def _replace_dir(src: str, dst: str) -> None:
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


def read_marker(root: str | os.PathLike) -> dict[str, Any] | None:
    """The generator marker of a demo folder, or None if absent or unreadable."""
    try:
        with open(os.path.join(os.fspath(root), MARKER_NAME), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


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
    expected = _marker(counts, seed, MAX_SIDE)
    if read_marker(root) == expected:
        return root
    tmp = _tmp_sibling(root)
    try:
        _write_demo_tree(tmp, counts, seed, MAX_SIDE)
        # Another process may have installed a complete copy meanwhile: keep that one (it may
        # be in use) and drop ours. Otherwise replace the missing or stale folder.
        if read_marker(root) != expected:
            try:
                _replace_dir(tmp, root)
            except OSError:
                if read_marker(root) != expected:
                    raise
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fashion_keras.demo",
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
    start = time.perf_counter()
    try:
        counts = generate_demo(
            args.out_dir, args.num_train, args.num_val, args.num_test, args.seed,
            max_side=args.max_side, overwrite=args.overwrite,
        )  # fmt: skip
    except (FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    took = time.perf_counter() - start
    print(f"wrote {counts} to {os.path.abspath(args.out_dir)} in {took:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
