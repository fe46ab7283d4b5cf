"""The head taxonomy: the single source of truth for heads, class names and loss weights.

A *head* is one softmax output of the model: a name, its ordered class names, a default loss
weight and optional per-class weights (for imbalanced classes). A *head spec* is an ordered tuple of heads. Datasets, the model builder, losses,
metrics, export and clients all ask this module for class counts and names.

Presets (class lists and orders as in the dataset releases, see the README):

- ``deepfashion6``: the six DeepFashion fine-grained attribute types, in ``Anno_fine`` order.
- ``fashionai8``: the eight FashionAI 2018 attribute tasks (54 classes).
- ``deepfashion_category``: the 50-entry DeepFashion category list (1-based ids in the files).

A user's own heads load from a YAML or JSON file::

    heads:
      - name: sleeve
        classes: [long, short, none]
        loss_weight: 0.9        # optional, default 1.0
        class_weights: [1, 1, 4]  # optional: per-class weights of the loss (none = equal)
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class HeadSpecError(ValueError):
    """A head spec (preset name, YAML/JSON file or dict) is malformed."""


@dataclasses.dataclass(frozen=True)
class Head:
    """One softmax output: a name, ordered class names, a default loss weight and optional
    per-class loss weights (``None``: equal, or computed by ``--class-weights``)."""

    name: str
    classes: tuple[str, ...]
    loss_weight: float = 1.0
    class_weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise HeadSpecError(
                f"head name {self.name!r} is invalid: expected letters, digits and "
                "underscores, starting with a letter (it names model outputs and files)"
            )
        if len(self.classes) < 2:
            raise HeadSpecError(
                f"head {self.name!r}: 'classes' has {len(self.classes)} entries "
                f"{list(self.classes)!r}; a softmax head needs at least 2"
            )
        for i, c in enumerate(self.classes):
            if not isinstance(c, str) or not c.strip():
                raise HeadSpecError(
                    f"head {self.name!r}: classes[{i}] = {c!r} is not a non-empty string"
                )
        dupes = sorted({c for c in self.classes if self.classes.count(c) > 1})
        if dupes:
            raise HeadSpecError(f"head {self.name!r}: duplicate class names {dupes!r}")
        if isinstance(self.loss_weight, bool) or not isinstance(self.loss_weight, (int, float)):
            raise HeadSpecError(
                f"head {self.name!r}: loss_weight = {self.loss_weight!r} is not a number"
            )
        if not self.loss_weight >= 0:
            raise HeadSpecError(
                f"head {self.name!r}: loss_weight = {self.loss_weight!r} must be >= 0"
            )
        object.__setattr__(self, "loss_weight", float(self.loss_weight))
        self._check_class_weights()

    def _check_class_weights(self) -> None:
        if self.class_weights is None:
            return
        weights = self.class_weights
        if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence):
            raise HeadSpecError(
                f"head {self.name!r}: class_weights = {weights!r} is not a list of numbers"
            )
        if len(weights) != self.num_classes:
            raise HeadSpecError(
                f"head {self.name!r}: class_weights has {len(weights)} entries, expected one per "
                f"class ({self.num_classes}: {list(self.classes)})"
            )
        for i, w in enumerate(weights):
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not w > 0:
                raise HeadSpecError(
                    f"head {self.name!r}: class_weights[{i}] = {w!r} must be a number > 0"
                )
        object.__setattr__(self, "class_weights", tuple(float(w) for w in weights))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def index(self, class_name: str) -> int:
        """Index of ``class_name`` in this head, with an error that lists the valid names."""
        try:
            return self.classes.index(class_name)
        except ValueError:
            raise KeyError(
                f"head {self.name!r} has no class {class_name!r}; "
                f"expected one of {list(self.classes)!r}"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "classes": list(self.classes), "loss_weight": self.loss_weight}
        if self.class_weights is not None:
            out["class_weights"] = list(self.class_weights)
        return out


HeadSpec = tuple[Head, ...]

# --- DeepFashion fine-grained attributes ("DeepFashion-6", Anno_fine/) -------------------------
# Attribute types 1..6 in the file order of <split>_attr.txt (26 columns). Default loss weights
# are the per-head focal-loss weights of the DeepFashion-6 challenge report (82.65% mean acc).
DEEPFASHION6: HeadSpec = (
    Head(
        "texture",
        ("floral", "graphic", "striped", "embroidered", "pleated", "solid", "lattice"),
        0.95,
    ),
    Head("sleeve", ("long_sleeve", "short_sleeve", "sleeveless"), 0.85),
    Head("length", ("maxi_length", "mini_length", "no_dress"), 0.85),
    Head("neckline", ("crew_neckline", "v_neckline", "square_neckline", "no_neckline"), 0.9),
    Head("fabric", ("denim", "chiffon", "cotton", "leather", "faux", "knit"), 1.0),
    Head("fit", ("tight", "loose", "conventional"), 0.9),
)

# --- FashionAI 2018 attribute tasks -----------------------------------------------------------
# Head names are the task names used in label.csv / question.csv.
FASHIONAI8: HeadSpec = (
    Head(
        "coat_length_labels",
        (
            "Invisible",
            "High Waist Length",
            "Regular Length",
            "Long Length",
            "Micro Length",
            "Knee Length",
            "Midi Length",
            "Ankle&Floor Length",
        ),
    ),
    Head(
        "collar_design_labels",
        ("Invisible", "Shirt Collar", "Peter Pan", "Puritan Collar", "Rib Collar"),
    ),
    Head(
        "lapel_design_labels",
        ("Invisible", "Notched", "Collarless", "Shawl Collar", "Plus Size Shawl"),
    ),
    Head(
        "neck_design_labels",
        (
            "Invisible",
            "Turtle Neck",
            "Ruffle Semi-High Collar",
            "Low Turtle Neck",
            "Draped Collar",
        ),
    ),
    Head(
        "neckline_design_labels",
        (
            "Invisible",
            "Strapless Neck",
            "Deep V Neckline",
            "Straight Neck",
            "V Neckline",
            "Square Neckline",
            "Off Shoulder",
            "Round Neckline",
            "Sweat Heart Neck",
            "One Shoulder Neckline",
        ),
    ),
    Head(
        "pant_length_labels",
        ("Invisible", "Short Pant", "Mid Length", "3/4 Length", "Cropped Pant", "Full Length"),
    ),
    Head(
        "skirt_length_labels",
        ("Invisible", "Short Length", "Knee Length", "Midi Length", "Ankle Length", "Floor Length"),
    ),
    Head(
        "sleeve_length_labels",
        (
            "Invisible",
            "Sleeveless",
            "Cup Sleeves",
            "Short Sleeves",
            "Elbow Sleeves",
            "3/4 Sleeves",
            "Wrist Length",
            "Long Sleeves",
            "Extra Long Sleeves",
        ),
    ),
)

# --- DeepFashion category benchmark (Anno/list_category_cloth.txt) ----------------------------
# 50 entries; file ids are 1-based (id 1 = index 0). Types: 1 upper (1-20), 2 lower (21-36),
# 3 full body (37-50). Cape, Nightdress, Shirtdress and Sundress have no images.
DEEPFASHION_CATEGORIES: tuple[str, ...] = (
    # upper body, ids 1-20
    "Anorak", "Blazer", "Blouse", "Bomber", "Button-Down", "Cardigan", "Flannel", "Halter",
    "Henley", "Hoodie", "Jacket", "Jersey", "Parka", "Peacoat", "Poncho", "Sweater", "Tank",
    "Tee", "Top", "Turtleneck",
    # lower body, ids 21-36
    "Capris", "Chinos", "Culottes", "Cutoffs", "Gauchos", "Jeans", "Jeggings", "Jodhpurs",
    "Joggers", "Leggings", "Sarong", "Shorts", "Skirt", "Sweatpants", "Sweatshorts", "Trunks",
    # full body, ids 37-50
    "Caftan", "Cape", "Coat", "Coverup", "Dress", "Jumpsuit", "Kaftan", "Kimono", "Nightdress",
    "Onesie", "Robe", "Romper", "Shirtdress", "Sundress",
)  # fmt: skip
DEEPFASHION_CATEGORY_TYPES: tuple[int, ...] = (1,) * 20 + (2,) * 16 + (3,) * 14
DEEPFASHION_CATEGORY: HeadSpec = (Head("category", DEEPFASHION_CATEGORIES),)

PRESETS: dict[str, HeadSpec] = {
    "deepfashion6": DEEPFASHION6,
    "fashionai8": FASHIONAI8,
    "deepfashion_category": DEEPFASHION_CATEGORY,
}


def head_from_dict(d: Mapping[str, Any], where: str = "head") -> Head:
    """Builds a :class:`Head` from ``{"name", "classes", "loss_weight"?}``."""
    if not isinstance(d, Mapping):
        raise HeadSpecError(f"{where}: expected a mapping with 'name' and 'classes', got {d!r}")
    unknown = sorted(set(d) - {"name", "classes", "loss_weight", "class_weights"})
    if unknown:
        raise HeadSpecError(
            f"{where}: unknown field(s) {unknown!r}; allowed: name, classes, loss_weight, "
            "class_weights"
        )
    for field in ("name", "classes"):
        if field not in d:
            raise HeadSpecError(f"{where}: missing field {field!r}")
    classes = d["classes"]
    if isinstance(classes, str) or not isinstance(classes, Sequence):
        raise HeadSpecError(f"{where}: field 'classes' = {classes!r} is not a list of names")
    try:
        return Head(d["name"], tuple(classes), d.get("loss_weight", 1.0), d.get("class_weights"))
    except HeadSpecError as e:
        raise HeadSpecError(f"{where}: {e}") from None


def heads_from_dict(spec: Any, where: str = "heads spec") -> HeadSpec:
    """Builds a head spec from ``{"heads": [...]}`` or a bare list of head mappings."""
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - {"heads"})
        if unknown:
            raise HeadSpecError(
                f"{where}: unknown top-level field(s) {unknown!r}; expected 'heads'"
            )
        if "heads" not in spec:
            raise HeadSpecError(f"{where}: missing top-level field 'heads'")
        spec = spec["heads"]
    if isinstance(spec, (str, bytes)) or not isinstance(spec, Sequence) or not spec:
        raise HeadSpecError(f"{where}: field 'heads' must be a non-empty list, got {spec!r}")
    heads = tuple(head_from_dict(h, f"{where}: heads[{i}]") for i, h in enumerate(spec))
    return _check_unique(heads, where)


def load_heads_file(path: str | os.PathLike) -> HeadSpec:
    """Loads a head spec from a ``.yaml``/``.yml`` or ``.json`` file."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise HeadSpecError(f"cannot read heads file {path!r}: {e.strerror}") from None
    if path.endswith(".json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise HeadSpecError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            raise HeadSpecError(f"{path}{line}: invalid YAML: {e}") from None
    return heads_from_dict(data, where=path)


def get_heads(spec: str | os.PathLike | Iterable[Head]) -> HeadSpec:
    """Resolves a head spec.

    Args:
      spec: a preset name (``"deepfashion6"``), a comma-separated list of presets and/or files
        (``"fashionai8,deepfashion6"``), a path to a YAML/JSON file, or an iterable of heads.

    Returns:
      The ordered tuple of heads. Head names must be unique across the combined spec.
    """
    if not isinstance(spec, (str, os.PathLike)):
        heads = tuple(spec)
        for h in heads:
            if not isinstance(h, Head):
                raise HeadSpecError(f"expected Head objects, got {h!r}")
        return _check_unique(heads, "heads")
    text = os.fspath(spec).strip()
    heads: list[Head] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            raise HeadSpecError(f"empty entry in heads list {text!r}")
        if part in PRESETS:
            heads.extend(PRESETS[part])
        elif os.path.splitext(part)[1].lower() in (".yaml", ".yml", ".json"):
            heads.extend(load_heads_file(part))
        else:
            raise HeadSpecError(
                f"unknown heads {part!r}: expected a preset ({', '.join(PRESETS)}) "
                "or a path to a .yaml/.yml/.json head spec"
            )
    return _check_unique(tuple(heads), text)


def heads_to_dict(heads: Iterable[Head]) -> dict[str, Any]:
    """The JSON/YAML form of a head spec, as read back by :func:`heads_from_dict`."""
    return {"heads": [h.to_dict() for h in heads]}


def _check_unique(heads: HeadSpec, where: str) -> HeadSpec:
    names = [h.name for h in heads]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise HeadSpecError(f"{where}: duplicate head names {dupes!r}")
    return heads
