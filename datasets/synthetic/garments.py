"""Drawing synthetic garments: one garment on a cluttered background per image.

Every DeepFashion-6 head is drawn visibly:

- texture: the pattern on the cloth (small flowers, one big central motif, horizontal stripes,
  stitch marks along the edges, fine vertical pleat lines, none, a grid);
- sleeve: how much of the (skin-coloured) arm the sleeve covers;
- length: a dress with a belt and a skirt down to the ankles (maxi) or above the knee (mini), or a
  top that ends at the waist (no_dress);
- neckline: the opening cut at the top (round, V, square, or a closed collar band), small as in a
  photo of a whole garment (about 1/7 of its width): a crop of the collar region shows it best;
- fabric: the colour and grain of the cloth (blue twill denim, pale see-through chiffon, plain
  mid-colour cotton, dark leather with a sheen, noisy fuzzy-edged faux fur, ribbed knit);
- fit: the silhouette (narrow and tapered, wide and flared, straight).

:func:`render_garment_keypoints` also draws the other FashionAI keypoint categories (a skirt,
trousers, an open jacket over a top) and returns the garment's 24 FashionAI keypoints in pixels.
The shapes, in garment units, come from :mod:`fashion_keras_datasets.synthetic.garment_geometry`
(tops and dresses) and :mod:`fashion_keras_datasets.synthetic.category_geometry` (the others).

Drawing is deterministic: the same random generator state gives the same pixels. Only numpy and
PIL are used. :mod:`fashion_keras_datasets.synthetic.demo` and ``keypoints_demo`` write the
drawings as releases.
"""

from __future__ import annotations

import colorsys
import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from fashion_keras.heads import DEEPFASHION6, FASHIONAI_KEYPOINTS, Head
from fashion_keras_datasets.synthetic.category_geometry import (
    outwear_geometry,
    skirt_geometry,
    trousers_geometry,
)
from fashion_keras_datasets.synthetic.drawing import (
    Canvas,
    box_blur,
    extent,
    grid,
    mask,
    noise,
    pattern_mask,
)
from fashion_keras_datasets.synthetic.garment_geometry import garment_geometry

MAX_SIDE = 200  # default long side; images are 0.6-0.75 x (0.8-1.0) of it
_WIDTH_RANGE = (0.6, 0.75)
_HEIGHT_RANGE = (0.8, 1.0)

_HEADS: dict[str, Head] = {h.name: h for h in DEEPFASHION6}
_EXPECTED_HEADS = ("texture", "sleeve", "length", "neckline", "fabric", "fit")
if tuple(_HEADS) != _EXPECTED_HEADS:  # the drawing code below knows these six heads
    raise ImportError(
        f"fashion_keras_datasets.synthetic.garments draws the heads {_EXPECTED_HEADS}, "
        f"got {tuple(_HEADS)}"
    )


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


# --- rendering ----------------------------------------------------------------------------------


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    base = _hsv(rng.random(), rng.uniform(0.0, 0.35), rng.uniform(0.35, 0.9))
    yy, xx = grid(height, width)
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
    return out + 7.0 * noise(rng, (height, width, 1))


_Geometry = Callable[[np.random.Generator, dict[str, str]], dict[str, Any]]


def _layout(
    rng: np.random.Generator,
    labels: dict[str, str],
    max_side: int,
    geometry: _Geometry = garment_geometry,
) -> tuple[Canvas, dict[str, Any]]:
    """The image size, the garment's geometry and where it sits: ``(canvas, geometry)``."""
    width = int(
        rng.integers(round(_WIDTH_RANGE[0] * max_side), round(_WIDTH_RANGE[1] * max_side) + 1)
    )
    height = int(
        rng.integers(round(_HEIGHT_RANGE[0] * max_side), round(_HEIGHT_RANGE[1] * max_side) + 1)
    )
    geom = geometry(rng, labels)
    ex0, ey0, ex1, ey1 = extent(geom["parts"])
    ey0 = min(ey0, -0.1)  # keep a bit of neck in the picture
    fill = rng.uniform(0.55, 0.9)
    unit = min(
        fill * (height - 4) / (ey1 - ey0), rng.uniform(0.6, 0.92) * (width - 4) / (ex1 - ex0)
    )
    cx = rng.uniform(2 - ex0 * unit, width - 2 - ex1 * unit)
    y0 = rng.uniform(2 - ey0 * unit, height - 2 - ey1 * unit)
    return Canvas(width, height, cx, y0, unit), geom


def _garment_mask(
    rng: np.random.Generator, canvas: Canvas, geom: dict[str, Any], fabric: str
) -> np.ndarray:
    """Where the cloth is: the garment's parts less the neckline opening."""
    garment_img = canvas.polys(geom["parts"])
    if geom["cut"]:
        canvas.polys([geom["cut"]], value=0, img=garment_img)
    garment = mask(garment_img)
    if fabric == "faux":  # fuzzy, furry edges
        soft = box_blur(garment.astype(np.float32))
        garment = soft + 0.9 * rng.random(soft.shape, dtype=np.float32) > 0.95
    if not garment.any():  # cannot happen with the sizes above; keep the bbox well defined
        garment[canvas.height // 2, canvas.width // 2] = True
    return garment


def _cloth(rng: np.random.Generator, canvas: Canvas, fabric: str) -> tuple[np.ndarray, np.ndarray]:
    """The fabric's base colour and the cloth's colour at every pixel (grain and noise)."""
    height, width, unit = canvas.height, canvas.width, canvas.unit
    base = _fabric_colour(rng, fabric)
    yy, xx = grid(height, width)
    gx, gy = (xx - canvas.cx) / unit, (yy - canvas.y0) / unit
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
    grain = noise_sigma * noise(rng, (height, width, 1))
    if fabric == "faux":  # fur strands: noise smeared vertically
        grain = (grain + np.roll(grain, 1, axis=0) + np.roll(grain, 2, axis=0)) / 1.5
    return base, cloth + grain


def _seam_mask(canvas: Canvas, geom: dict[str, Any]) -> np.ndarray:
    """Seams: sleeve attachment lines and, for dresses, a belt at the waist."""
    seam_img, draw = canvas.new()
    w = canvas.width_px(0.025)
    for sleeve in geom["sleeves"]:
        draw.line([canvas.pt(*sleeve[0]), canvas.pt(*sleeve[-1])], fill=255, width=w)
        draw.line([canvas.pt(*sleeve[4]), canvas.pt(*sleeve[3])], fill=255, width=w)
    if geom["is_dress"]:
        ww = geom["waist"] * 1.05
        draw.line([canvas.pt(-ww, 1.0), canvas.pt(ww, 1.0)], fill=255, width=canvas.width_px(0.06))
    if "band" in geom:  # the lower edge of a waistband
        bw, by = geom["band"]
        draw.line([canvas.pt(-bw, by), canvas.pt(bw, by)], fill=255, width=w)
    return mask(seam_img)


def _padded_bbox(rng: np.random.Generator, garment: np.ndarray) -> tuple[int, int, int, int]:
    """The garment's pixel box ``(x1, y1, x2, y2)`` (x2/y2 exclusive), padded by 0-2 pixels."""
    height, width = garment.shape
    rows, cols = np.nonzero(garment)
    pad = rng.integers(0, 3, size=4)
    return (
        max(0, int(cols.min()) - int(pad[0])),
        max(0, int(rows.min()) - int(pad[1])),
        min(width, int(cols.max()) + 1 + int(pad[2])),
        min(height, int(rows.max()) + 1 + int(pad[3])),
    )


def _render(
    rng: np.random.Generator, labels: dict[str, str], max_side: int, geometry: _Geometry
) -> tuple[Image.Image, tuple[int, int, int, int], Canvas, dict[str, Any], np.ndarray]:
    """Draws one garment: ``(image, bbox, canvas, geometry, garment mask)``."""
    if max_side < 24:
        raise ValueError(f"max_side = {max_side}: expected >= 24 pixels")
    canvas, geom = _layout(rng, labels, max_side, geometry)
    width, height = canvas.width, canvas.height
    img = _background(rng, width, height)
    fabric, texture = labels["fabric"], labels["texture"]

    skin = _skin_colour(rng)
    # arms (legs), neck and the skin showing through the neckline opening
    skin_mask = mask(canvas.polys(geom["skin"]))
    img[skin_mask] = skin
    if geom.get("inner"):  # a second garment under or above this one (a plain cotton top)
        inner = mask(canvas.polys(geom["inner"]))
        img[inner] = _fabric_colour(rng, "cotton") + 4.0 * noise(rng, (int(inner.sum()), 1))

    garment = _garment_mask(rng, canvas, geom, fabric)
    base, cloth = _cloth(rng, canvas, fabric)
    seams = _seam_mask(canvas, geom) & garment
    cloth[seams] *= 0.6

    alpha = 0.78 if fabric == "chiffon" else 1.0
    img[garment] = alpha * cloth[garment] + (1.0 - alpha) * img[garment]

    pattern = pattern_mask(rng, texture, canvas, geom)
    if pattern is not None:
        pattern &= garment
        colour = base * 0.42 if texture == "pleated" else _contrast_colour(rng, base)
        img[pattern] = colour + 3.0 * noise(rng, (int(pattern.sum()), 3))

    # lighting
    _, xx = grid(height, width)
    light = rng.uniform(0.92, 1.08) + rng.uniform(-0.08, 0.08) * (xx / width - 0.5)
    img = img * light[..., None]
    out = Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8), "RGB")
    return out, _padded_bbox(rng, garment), canvas, geom, garment


def render_garment(
    rng: np.random.Generator, labels: dict[str, str], max_side: int = MAX_SIDE
) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """Draws one garment with the given class names per head.

    Returns:
      The RGB image and its pixel bounding box ``(x1, y1, x2, y2)`` (x2/y2 exclusive).
    """
    image, bbox, *_ = _render(rng, labels, max_side, garment_geometry)
    return image, bbox


# --- FashionAI keypoints ------------------------------------------------------------------------

#: How each FashionAI keypoint category is drawn (blouse and dress: as :func:`render_garment`).
_CATEGORY_GEOMETRY: dict[str, _Geometry] = {
    "blouse": garment_geometry,
    "outwear": outwear_geometry,
    "trousers": trousers_geometry,
    "skirt": skirt_geometry,
    "dress": garment_geometry,
}
if set(_CATEGORY_GEOMETRY) != set(FASHIONAI_KEYPOINTS.category_names):
    raise ImportError(
        f"fashion_keras_datasets.synthetic.garments draws the FashionAI categories "
        f"{sorted(_CATEGORY_GEOMETRY)}, got {sorted(FASHIONAI_KEYPOINTS.category_names)}"
    )
#: The keypoint categories in the taxonomy's order (all of them can be drawn).
KEYPOINT_CATEGORIES: tuple[str, ...] = FASHIONAI_KEYPOINTS.category_names


@dataclasses.dataclass(frozen=True, eq=False)
class GarmentDrawing:
    """One drawn garment with its FashionAI keypoints.

    Attributes:
      image: the RGB image.
      bbox: the garment's padded pixel box ``(x1, y1, x2, y2)`` (x2/y2 exclusive).
      category: its FashionAI keypoint category.
      keypoints: float32 ``[24, 3]`` rows ``(x, y, v)`` in the order of
        ``FASHIONAI_KEYPOINTS.keypoints``: the pixel index (x right, y down; whole numbers, as
        PIL truncates polygon vertices to pixels before drawing), v = 1 (visible; nothing in the drawing hides a point), and ``(-1, -1, -1)`` for a
        keypoint the category does not define or the garment lacks (the cuffs of a sleeveless
        top). ``_left`` points are on the image's left, as in the FashionAI annotations.
      mask: bool ``[H, W]``, where the garment's cloth is.
      neckline: bool ``[H, W]``, the drawn neckline detail (the opening, or the closed collar
        band of ``no_neckline``), or None for a category without one (outwear, skirt, trousers).
    """

    image: Image.Image
    bbox: tuple[int, int, int, int]
    category: str
    keypoints: np.ndarray
    mask: np.ndarray
    neckline: np.ndarray | None = None


def keypoint_category(labels: dict[str, str]) -> str:
    """The FashionAI category of what :func:`render_garment` draws: a dress or a blouse (a top)."""
    return "blouse" if labels["length"] == "no_dress" else "dress"


def render_garment_keypoints(
    rng: np.random.Generator,
    labels: dict[str, str],
    max_side: int = MAX_SIDE,
    *,
    category: str | None = None,
) -> GarmentDrawing:
    """Draws one garment of a FashionAI ``category`` and returns it with its keypoints.

    ``category`` None draws what :func:`render_garment` draws (the same pixels from the same
    generator state), a blouse or a dress by ``labels["length"]``. ``"blouse"`` and ``"dress"``
    must agree with that length; ``"skirt"`` (mini, knee for ``no_dress``, maxi) and
    ``"trousers"`` (shorts for ``mini_length``) use ``length``, ``fit``, ``fabric`` and
    ``texture``; ``"outwear"`` is an open jacket over a plain top, its sleeves by ``sleeve``.
    """
    drawn = keypoint_category(labels)
    category = drawn if category is None else category
    if category not in _CATEGORY_GEOMETRY:
        raise ValueError(f"category {category!r}: expected one of {list(KEYPOINT_CATEGORIES)}")
    if category in ("blouse", "dress") and category != drawn:
        raise ValueError(
            f"category {category!r} with length {labels['length']!r}: a blouse is drawn for "
            "length 'no_dress', a dress for the other lengths"
        )
    image, bbox, canvas, geom, garment = _render(
        rng, labels, max_side, _CATEGORY_GEOMETRY[category]
    )
    neckline = geom.get("neckline")
    return GarmentDrawing(
        image,
        bbox,
        category,
        _keypoint_rows(canvas, geom, category),
        garment,
        None if neckline is None else mask(canvas.polys([neckline])),
    )


def _keypoint_rows(canvas: Canvas, geom: dict[str, Any], category: str) -> np.ndarray:
    """The ``[24, 3]`` ``(x, y, v)`` rows of the geometry's keypoints, in pixels."""
    names = FASHIONAI_KEYPOINTS.keypoints
    defined = FASHIONAI_KEYPOINTS.defined_mask(category)
    points: dict[str, tuple[float, float]] = geom["keypoints"]
    extra = sorted(set(points) - {k for k, d in zip(names, defined, strict=True) if d})
    if geom["category"] != category or extra:  # a drawing bug, never the caller's input
        raise RuntimeError(f"{geom['category']} geometry drawn as {category}: extra {extra}")
    rows = np.full((len(names), 3), -1.0, np.float32)
    for k, name in enumerate(names):
        if name in points:
            x, y = canvas.pt(*points[name])
            rows[k] = (math.floor(x), math.floor(y), 1.0)  # the pixel PIL draws the corner at
    return rows
