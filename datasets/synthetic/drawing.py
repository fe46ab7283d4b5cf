"""Drawing primitives of the synthetic garments: the canvas, masks and the texture patterns.

Shapes are given in garment units (origin at the neck centre, y down, 1 unit = top-to-waist);
:class:`Canvas` maps them to pixels and rasterises them into boolean masks. Only numpy and PIL
are used, and the same random generator state gives the same pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

Poly = list[tuple[float, float]]


def extent(polys: Sequence[Poly]) -> tuple[float, float, float, float]:
    """The bounding box ``(x0, y0, x1, y1)`` of ``polys``."""
    xs = [x for p in polys for x, _ in p]
    ys = [y for p in polys for _, y in p]
    return min(xs), min(ys), max(xs), max(ys)


class Canvas:
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


def mask(img: Image.Image) -> np.ndarray:
    """The drawn pixels of a grayscale image as a boolean mask."""
    return np.asarray(img, dtype=np.uint8) > 127


def grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column coordinates as broadcastable ``(H, 1)`` and ``(1, W)`` arrays."""
    return (
        np.arange(height, dtype=np.float32)[:, None],
        np.arange(width, dtype=np.float32)[None, :],
    )


def noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal float32 noise of ``shape``."""
    return rng.standard_normal(shape, dtype=np.float32)


def box_blur(a: np.ndarray) -> np.ndarray:
    """The 3x3 mean of a 2-D array (edges repeated)."""
    p = np.pad(a, 1, mode="edge")
    return (
        p[:-2, :-2] + p[:-2, 1:-1] + p[:-2, 2:]
        + p[1:-1, :-2] + p[1:-1, 1:-1] + p[1:-1, 2:]
        + p[2:, :-2] + p[2:, 1:-1] + p[2:, 2:]
    ) / 9.0  # fmt: skip


# --- texture patterns ----------------------------------------------------------------------------


def _draw_floral(
    rng: np.random.Generator, draw: ImageDraw.ImageDraw, canvas: Canvas, box: tuple
) -> None:
    """Small five-petal flowers on a staggered grid over ``box`` (the garment's extent)."""
    x0, y0, x1, y1 = box
    step = 0.27
    r = 0.045
    phase = rng.uniform(0, step, size=2)
    for gy in np.arange(y0 - step + phase[1], y1 + step, step):
        for gx in np.arange(x0 - step + phase[0], x1 + step, step):
            fx = gx + (step / 2 if int(round((gy - y0) / step)) % 2 else 0.0)
            fx += rng.uniform(-0.04, 0.04)
            fy = gy + rng.uniform(-0.04, 0.04)
            rot = rng.uniform(0, math.pi)
            for k in range(5):
                a = rot + k * 2 * math.pi / 5
                px, py = canvas.pt(fx + r * math.cos(a), fy + r * math.sin(a))
                rr = r * 0.75 * canvas.unit
                draw.ellipse([px - rr, py - rr, px + rr, py + rr], fill=255)


def _draw_graphic(rng: np.random.Generator, draw: ImageDraw.ImageDraw, canvas: Canvas) -> None:
    """One big central motif: a disc, a five-pointed star or a diamond."""
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


def _draw_lines(
    rng: np.random.Generator,
    draw: ImageDraw.ImageDraw,
    canvas: Canvas,
    box: tuple,
    texture: str,
) -> None:
    """Horizontal stripes (striped), a grid (lattice) or fine vertical pleat lines (pleated)."""
    x0, y0, x1, y1 = box
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


def _draw_stitches(draw: ImageDraw.ImageDraw, canvas: Canvas, poly: Poly, w: int) -> None:
    """Dashed stitches just inside every edge of ``poly``."""
    dash, gap = 0.05, 0.04
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


def _draw_embroidery(draw: ImageDraw.ImageDraw, canvas: Canvas, geom: dict[str, Any]) -> None:
    """Stitch marks along the garment's edges and a row of cross-stitches across the chest
    (below the deepest neckline opening, so they never blur the neckline's shape)."""
    w = canvas.width_px(0.035)
    outlines = list(geom["parts"]) + ([geom["cut"]] if geom["cut"] else [])
    for poly in outlines:
        _draw_stitches(draw, canvas, poly, w)
    for k in range(7):
        gx = (k - 3) * 0.06
        px, py = canvas.pt(gx, 0.32)
        s = 0.025 * canvas.unit
        draw.line([(px - s, py - s), (px + s, py + s)], fill=255, width=max(1, w - 1))
        draw.line([(px - s, py + s), (px + s, py - s)], fill=255, width=max(1, w - 1))


def pattern_mask(
    rng: np.random.Generator, texture: str, canvas: Canvas, geom: dict[str, Any]
) -> np.ndarray | None:
    """Boolean mask of the texture pattern (before clipping to the garment), or None."""
    if texture == "solid":
        return None
    img, draw = canvas.new()
    box = extent(geom["parts"])
    if texture == "floral":
        _draw_floral(rng, draw, canvas, box)
    elif texture == "graphic":
        _draw_graphic(rng, draw, canvas)
    elif texture in ("striped", "lattice", "pleated"):
        _draw_lines(rng, draw, canvas, box, texture)
    elif texture == "embroidered":
        _draw_embroidery(draw, canvas, geom)
    else:
        raise ValueError(f"unknown texture {texture!r}")
    return mask(img)
