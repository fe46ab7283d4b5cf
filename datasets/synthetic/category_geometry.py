"""The geometry of the FashionAI keypoint categories beyond the tops and dresses: the skirt, the
trousers and the outwear (an open jacket over a top), with their FashionAI keypoints.

The dicts and units are those of :func:`~fashion_keras_datasets.synthetic.garment_geometry.
garment_geometry`; :func:`~fashion_keras_datasets.synthetic.garments.render_garment_keypoints`
draws them. Deterministic: the same random generator state gives the same geometry.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fashion_keras_datasets.synthetic.drawing import Poly, extent
from fashion_keras_datasets.synthetic.garment_geometry import garment_geometry, pair

# Lower garments: origin at the waistband's top centre, y down, in the units of the tops.
_WAISTBAND_HALF_WIDTH = 0.34
_WAISTBAND_DEPTH = 0.12
_SKIRT_FLARE = {"tight": 0.05, "conventional": 0.2, "loose": 0.45}  # per unit of length
_LOWER_SKIRT_LENGTH = {"maxi_length": 1.45, "mini_length": 0.6, "no_dress": 0.95}
_LEG_HALF_WIDTH = {"tight": 0.07, "conventional": 0.11, "loose": 0.17}  # at the bottom
_TROUSER_LENGTH = {"maxi_length": 1.9, "mini_length": 0.85, "no_dress": 1.9}  # mini: shorts
_CROTCH_Y = 0.5
_JACKET_HEM_Y = 1.3


def outwear_geometry(rng: np.random.Generator, labels: dict[str, str]) -> dict[str, Any]:
    """An open jacket down to the hips over a top (drawn as ``inner``) that shows in the front
    opening; the sleeves follow ``labels["sleeve"]``."""
    geom = garment_geometry(rng, {**labels, "length": "no_dress", "neckline": "crew_neckline"})
    waist = geom["waist"]
    hip = waist * 1.08
    geom["parts"][1] = [(-waist, 0.95), (waist, 0.95), (hip, _JACKET_HEM_Y), (-hip, _JACKET_HEM_Y)]
    low = _JACKET_HEM_Y + 0.06  # past the hem: the front stays open to the bottom
    geom["cut"] = [(-0.075, 0.0), (0.075, 0.0), (0.13, low), (-0.13, low)]
    geom["neckline"] = None  # an open front, no neckline class
    geom["skin"] = geom["arms"] + [geom["neck_stub"]]
    geom["inner"] = [[(-0.16, 0.04), (0.16, 0.04), (0.16, _JACKET_HEM_Y), (-0.16, _JACKET_HEM_Y)]]
    geom["hem_y"] = _JACKET_HEM_Y
    points = {k: v for k, v in geom["keypoints"].items() if not k.startswith("top_hem")}
    points.pop("center_front")
    points |= pair("waistline", waist, 1.0) | pair("top_hem", hip, _JACKET_HEM_Y)
    return geom | {"category": "outwear", "keypoints": points}


def _lower_geometry(
    parts: list[Poly], legs: list[Poly], wb: float, points: dict[str, tuple[float, float]]
) -> dict[str, Any]:
    """The geometry dict of a skirt or trousers: ``parts`` below a waistband of half-width
    ``wb``, bare legs and a top tucked in above the waist (``inner``)."""
    d = _WAISTBAND_DEPTH
    band: Poly = [(-wb, 0.0), (wb, 0.0), (wb, d), (-wb, d)]
    top: Poly = [(-wb * 0.92, -0.45), (wb * 0.92, -0.45), (wb, 0.02), (-wb, 0.02)]
    return {
        "parts": [band, *parts],
        "sleeves": [],
        "arms": legs,
        "cut": [],
        "neckline": None,
        "neck_stub": top,
        "skin": legs,
        "inner": [top],
        "band": (wb, d),
        "hem_y": extent(parts)[3],
        "waist": wb,
        "is_dress": False,
        "keypoints": pair("waistband", wb, 0.0) | points,
    }


def skirt_geometry(rng: np.random.Generator, labels: dict[str, str]) -> dict[str, Any]:
    """A skirt flared by ``fit``, mini, knee (``no_dress``) or maxi long."""
    wb = _WAISTBAND_HALF_WIDTH * rng.uniform(0.92, 1.08)
    length = _LOWER_SKIRT_LENGTH[labels["length"]] * rng.uniform(0.93, 1.07)
    hem = wb + _SKIRT_FLARE[labels["fit"]] * length
    body: Poly = [(-wb, _WAISTBAND_DEPTH - 0.02), (wb, _WAISTBAND_DEPTH - 0.02), (hem, length)]
    body.append((-hem, length))
    legs = [_leg(side * 0.13, length - 0.3, length + 0.7) for side in (-1.0, 1.0)]
    geom = _lower_geometry([body], legs, wb, pair("hemline", hem, length))
    return geom | {"category": "skirt"}


def trousers_geometry(rng: np.random.Generator, labels: dict[str, str]) -> dict[str, Any]:
    """Trousers (shorts for ``mini_length``): two legs below the crotch, wide or narrow by ``fit``."""
    wb = _WAISTBAND_HALF_WIDTH * rng.uniform(0.92, 1.08)
    length = _TROUSER_LENGTH[labels["length"]] * rng.uniform(0.95, 1.05)
    bw = _LEG_HALF_WIDTH[labels["fit"]] * rng.uniform(0.9, 1.1)
    centre = max(wb * 0.5, bw + 0.05) + 0.03 * length  # each leg's centre at the bottom
    inner, outer = centre - bw, centre + bw
    top = _WAISTBAND_DEPTH - 0.02
    body: Poly = [(-wb, top), (wb, top), (outer, length), (inner, length), (0.0, _CROTCH_Y)]
    body += [(-inner, length), (-outer, length)]
    legs = [_leg(side * centre, _CROTCH_Y, length + 0.5) for side in (-1.0, 1.0)]
    points = (
        {"crotch": (0.0, _CROTCH_Y)}
        | {"bottom_left_in": (-inner, length), "bottom_left_out": (-outer, length)}
        | {"bottom_right_in": (inner, length), "bottom_right_out": (outer, length)}
    )
    return _lower_geometry([body], legs, wb, points) | {"category": "trousers"}


def _leg(x: float, y0: float, y1: float) -> Poly:
    """A bare leg: a slightly tapering band centred on ``x`` from ``y0`` down to ``y1``."""
    return [(x - 0.08, y0), (x + 0.08, y0), (x + 0.055, y1), (x - 0.055, y1)]
