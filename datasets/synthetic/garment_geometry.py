"""The geometry of the synthetic tops and dresses: their outline, sleeves, arms, neckline opening
and FashionAI keypoints, in garment units.

Garment units: origin at the neck centre, y down, 1 unit = top-to-waist. :func:`garment_geometry`
is what :func:`fashion_keras_datasets.synthetic.garments.render_garment` draws; the other
FashionAI categories (:mod:`fashion_keras_datasets.synthetic.category_geometry`) build on it.
Deterministic: the same random generator state gives the same geometry.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fashion_keras_datasets.synthetic.drawing import Poly

_FIT_SHAPE = {  # shoulder half-width, armpit half-width, waist half-width, skirt flare per unit
    "tight": (0.30, 0.27, 0.2, 0.06),
    "conventional": (0.36, 0.35, 0.34, 0.18),
    "loose": (0.45, 0.48, 0.56, 0.42),
}
_SKIRT_LENGTH = {"maxi_length": 1.45, "mini_length": 0.55, "no_dress": 0.0}
_SLEEVE_LENGTH = {"long_sleeve": 0.95, "short_sleeve": 0.3, "sleeveless": 0.0}
#: Half the neckline's width: the opening is about 1/7 of the garment box's width (a real neck
#: in a photo of a whole garment); a crop of the collar region shows it far larger.
_NECK_HALF_WIDTH = 0.11
#: How deep each opening reaches below the neck (its lowest point, center_front).
_NECK_DEPTH = {"crew_neckline": 0.1, "v_neckline": 0.26, "square_neckline": 0.2}
_SQUARE_HALF_WIDTH = 0.125
_COLLAR_BAND = (-0.06, 0.02)  # the no_neckline band's top and bottom
_ARMPIT_Y = 0.36
_SHOULDER_Y = 0.08

Points = dict[str, tuple[float, float]]


def garment_geometry(rng: np.random.Generator, labels: dict[str, str]) -> dict[str, Any]:
    """A top or a dress by ``labels`` (``fit``, ``length``, ``sleeve``, ``neckline``): its
    ``parts``, ``sleeves``, ``arms``, neckline ``cut``, ``neckline`` (the polygon that shows the
    neckline class: the cut, or the collar band of ``no_neckline``), ``neck_stub``, ``skin``,
    ``hem_y``, ``waist``, ``is_dress``, FashionAI ``category`` and ``keypoints`` (garment units)."""
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
    points: Points = {}  # FashionAI keypoints, garment units
    if skirt_len > 0:
        hem_y = 1.0 + skirt_len
        hem = waist + flare * skirt_len
        parts.append([(-waist, 1.0), (waist, 1.0), (hem, hem_y), (-hem, hem_y)])
        points |= pair("waistline", waist, 1.0) | pair("hemline", hem, hem_y)
    else:  # a top: a slightly wider hem band ending at the waist
        parts.append([(-waist, 0.9), (waist, 0.9), (waist * 1.04, 1.08), (-waist * 1.04, 1.08)])
        hem_y = 1.08
        points |= pair("top_hem", waist * 1.04, hem_y)
    # the armpits of a sleeveless garment; a sleeve moves them to where it meets the body
    points |= pair("shoulder", shoulder, _SHOULDER_Y) | pair("armpit", armpit, _ARMPIT_Y)
    sleeves, arms = _sleeves_and_arms(rng, labels, (shoulder, armpit, waist), points)
    parts.extend(sleeves)
    cut, collar = _neckline(labels["neckline"], shoulder, points)
    if collar is not None:
        parts.append(collar)
    neck_stub = [(-0.065, -0.3), (0.065, -0.3), (0.065, 0.05), (-0.065, 0.05)]
    return {
        "parts": parts,
        "sleeves": sleeves,
        "arms": arms,
        "cut": cut,
        "neckline": cut or collar,  # never empty: one of the two is drawn
        "neck_stub": neck_stub,
        "skin": arms + [neck_stub] + ([cut] if cut else []),
        "hem_y": hem_y,
        "waist": waist,
        "is_dress": skirt_len > 0,
        "category": "dress" if skirt_len > 0 else "blouse",
        "keypoints": points,
    }


def _sleeves_and_arms(
    rng: np.random.Generator,
    labels: dict[str, str],
    body: tuple[float, float, float],
    points: Points,
) -> tuple[list[Poly], list[Poly]]:
    """Both arms and the sleeves over them (none when sleeveless) of a body with half-widths
    ``(shoulder, armpit, waist)``; adds the cuff and underarm keypoints to ``points``."""
    shoulder, armpit, waist = body
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
            # the sleeve's end: its outer edge (vertex 2, away from the body) and inner edge
            name = "left" if side < 0 else "right"  # FashionAI's left is the image's left
            points[f"cuff_{name}_out"], points[f"cuff_{name}_in"] = sleeves[-1][2], sleeves[-1][3]
            body_side = [(side * shoulder, _SHOULDER_Y), (side * armpit, _ARMPIT_Y)]
            points[f"armpit_{name}"] = _underarm(sleeves[-1], body_side + [(side * waist, 1.0)])
    return sleeves, arms


def _neckline(neck: str, shoulder: float, points: Points) -> tuple[Poly, Poly | None]:
    """The neckline opening ``cut`` (empty for ``no_neckline``) and the collar band drawn above
    the shoulder line instead (or None); adds the neckline keypoints to ``points``."""
    nw = _NECK_HALF_WIDTH
    # The openings are small (about 1/7 of the garment's width) and differ in outline and depth
    # so that a 64 px crop of the collar region tells them apart: crew = shallow half-disc,
    # V = deep point, square = slightly wider rectangle of middle depth, none = a closed band.
    # neckline_left/right: where the opening meets the top edge; center_front: its lowest point
    if neck == "crew_neckline":
        depth = _NECK_DEPTH["crew_neckline"]
        cut: Poly = [(nw * math.cos(t), depth * math.sin(t)) for t in np.linspace(0.0, math.pi, 13)]
        points |= pair("neckline", nw, 0.0) | {"center_front": (0.0, depth)}
    elif neck == "v_neckline":
        depth = _NECK_DEPTH["v_neckline"]
        cut = [(-nw, 0.0), (nw, 0.0), (0.0, depth)]
        points |= pair("neckline", nw, 0.0) | {"center_front": (0.0, depth)}
    elif neck == "square_neckline":
        depth = _NECK_DEPTH["square_neckline"]
        sq = min(_SQUARE_HALF_WIDTH, shoulder - 0.06)
        cut = [(-sq, 0.0), (sq, 0.0), (sq, depth), (-sq, depth)]
        # the opening's side meets the slope from the neck (nw, 0) to the shoulder
        corner_y = _SHOULDER_Y * max(0.0, sq - nw) / (shoulder - nw)
        points |= pair("neckline", sq, corner_y) | {"center_front": (0.0, depth)}
    else:  # no_neckline: a closed collar band above the shoulder line
        top, bottom = _COLLAR_BAND
        points |= pair("neckline", nw, top) | {"center_front": (0.0, top)}
        return [], [(-nw, top), (nw, top), (nw, bottom), (-nw, bottom)]
    return cut, None


def pair(name: str, half_width: float, y: float) -> Points:
    """``{name_left: (-half_width, y), name_right: (half_width, y)}`` (left = the image's left)."""
    return {f"{name}_left": (-half_width, y), f"{name}_right": (half_width, y)}


def _underarm(sleeve: Poly, body_side: Poly) -> tuple[float, float]:
    """Where the sleeve's underside meets the body's side in the outline: the crossing of the
    sleeve's inner edge (vertex 3 to 4) with the side, else of its end (2 to 3: a wide sleeve
    whose inner corner lies on the body), else the body's armpit corner."""
    for a, b in ((sleeve[3], sleeve[4]), (sleeve[2], sleeve[3])):
        for c, d in zip(body_side[:-1], body_side[1:], strict=True):
            hit = _crossing(a, b, c, d)
            if hit is not None:
                return hit
    return body_side[1]


def _crossing(
    a: tuple[float, float], b: tuple[float, float], c: tuple[float, float], d: tuple[float, float]
) -> tuple[float, float] | None:
    """The crossing point of the segments ``ab`` and ``cd``, or None."""
    rx, ry, sx, sy = b[0] - a[0], b[1] - a[1], d[0] - c[0], d[1] - c[1]
    den = rx * sy - ry * sx
    if abs(den) < 1e-12:
        return None
    t = ((c[0] - a[0]) * sy - (c[1] - a[1]) * sx) / den
    u = ((c[0] - a[0]) * ry - (c[1] - a[1]) * rx) / den
    if 0.0 <= t <= 1.0 and 0.0 <= u <= 1.0:
        return a[0] + t * rx, a[1] + t * ry
    return None


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
