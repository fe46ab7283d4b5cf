"""Head specs: from and to their dict / YAML / JSON form, by preset name, and selection by kind."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fashion_keras.heads.keypoints import AnyHead, HeadSpec, KeypointHead
from fashion_keras.heads.names import HeadSpecError
from fashion_keras.heads.presets import KEYPOINT_PRESETS, PRESETS
from fashion_keras.heads.softmax import Head

_HEAD_TYPES = ("softmax", "keypoints")


def head_from_dict(d: Mapping[str, Any], where: str = "head") -> AnyHead:
    """Builds a :class:`Head` from ``{"name", "classes", "loss_weight"?, "class_weights"?,
    "region"?}``, or a :class:`KeypointHead` when ``type: keypoints`` (``type`` defaults to
    ``softmax``)."""
    if not isinstance(d, Mapping):
        raise HeadSpecError(f"{where}: expected a mapping with 'name' and 'classes', got {d!r}")
    kind = d.get("type", "softmax")
    if kind not in _HEAD_TYPES:
        raise HeadSpecError(
            f"{where}: type = {kind!r} is unknown; expected one of {list(_HEAD_TYPES)!r} "
            "(omit it for a softmax head)"
        )
    if kind == "keypoints":
        return keypoint_head_from_dict(d, where)
    allowed = ("name", "type", "classes", "loss_weight", "class_weights", "region")
    unknown = sorted(set(d) - set(allowed))
    if unknown:
        raise HeadSpecError(f"{where}: unknown field(s) {unknown!r}; allowed: {', '.join(allowed)}")
    for field in ("name", "classes"):
        if field not in d:
            raise HeadSpecError(f"{where}: missing field {field!r}")
    classes = d["classes"]
    if isinstance(classes, str) or not isinstance(classes, Sequence):
        raise HeadSpecError(f"{where}: field 'classes' = {classes!r} is not a list of names")
    try:
        return Head(
            d["name"],
            tuple(classes),
            d.get("loss_weight", 1.0),
            d.get("class_weights"),
            d.get("region"),
        )
    except HeadSpecError as e:
        raise HeadSpecError(f"{where}: {e}") from None


def keypoint_head_from_dict(d: Mapping[str, Any], where: str = "head") -> KeypointHead:
    """Builds a :class:`KeypointHead` from its dict form (``type: keypoints``, see the module
    docstring): ``name``, ``keypoints``, ``flip_pairs``?, ``categories``, ``loss_weight``?,
    ``skeleton``? (``[[a, b], ...]`` edges between keypoint names; none when absent)."""
    allowed = ("name", "type", "keypoints", "flip_pairs", "skeleton", "categories", "loss_weight")
    unknown = sorted(set(d) - set(allowed))
    if unknown:
        raise HeadSpecError(
            f"{where}: unknown field(s) {unknown!r} for a keypoint head; allowed: "
            f"{', '.join(allowed)}"
        )
    for field in ("name", "keypoints", "categories"):
        if field not in d:
            raise HeadSpecError(f"{where}: missing field {field!r} (keypoint head)")
    categories = d["categories"]
    if not isinstance(categories, Mapping):
        raise HeadSpecError(
            f"{where}: field 'categories' = {categories!r} must be a mapping "
            "{category: {keypoints: [...], normaliser: [a, b] or null}}"
        )
    for name, value in categories.items():
        if not isinstance(value, Mapping):
            raise HeadSpecError(
                f"{where}: categories[{name!r}] = {value!r} must be a mapping "
                "{keypoints: [...], normaliser: [a, b] or null}"
            )
    try:
        return KeypointHead(
            d["name"],
            d["keypoints"],
            d.get("flip_pairs") or (),
            categories,
            d.get("loss_weight", 1.0),
            () if d.get("skeleton") is None else d["skeleton"],
        )
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


def get_heads(spec: str | os.PathLike | Iterable[AnyHead]) -> HeadSpec:
    """Resolves a head spec.

    Args:
      spec: a preset name (``"deepfashion6"``, or a :data:`KEYPOINT_PRESETS` name such as
        ``"fashionai_keypoints"``), a comma-separated list of presets and/or files
        (``"fashionai8,deepfashion6"``), a path to a YAML/JSON file, or an iterable of heads.

    Returns:
      The ordered tuple of heads. Head names must be unique across the combined spec.
    """
    if not isinstance(spec, (str, os.PathLike)):
        heads = tuple(spec)
        for h in heads:
            if not isinstance(h, (Head, KeypointHead)):
                raise HeadSpecError(f"expected Head or KeypointHead objects, got {h!r}")
        return _check_unique(heads, "heads")
    text = os.fspath(spec).strip()
    heads: list[AnyHead] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            raise HeadSpecError(f"empty entry in heads list {text!r}")
        if part in PRESETS:
            heads.extend(PRESETS[part])
        elif part in KEYPOINT_PRESETS:
            heads.extend(KEYPOINT_PRESETS[part])
        elif os.path.splitext(part)[1].lower() in (".yaml", ".yml", ".json"):
            heads.extend(load_heads_file(part))
        else:
            raise HeadSpecError(
                f"unknown heads {part!r}: expected a preset "
                f"({', '.join([*PRESETS, *KEYPOINT_PRESETS])}) "
                "or a path to a .yaml/.yml/.json head spec"
            )
    return _check_unique(tuple(heads), text)


def heads_to_dict(heads: Iterable[AnyHead]) -> dict[str, Any]:
    """The JSON/YAML form of a head spec, as read back by :func:`heads_from_dict` (softmax heads
    without a ``type`` entry, as before keypoint heads existed)."""
    return {"heads": [h.to_dict() for h in heads]}


def softmax_heads(heads: Iterable[AnyHead]) -> tuple[Head, ...]:
    """The softmax heads of ``heads``, in order."""
    return tuple(h for h in heads if isinstance(h, Head))


def keypoint_heads(heads: Iterable[AnyHead]) -> tuple[KeypointHead, ...]:
    """The keypoint heads of ``heads``, in order."""
    return tuple(h for h in heads if isinstance(h, KeypointHead))


def require_softmax(heads: Iterable[AnyHead], what: str) -> tuple[Head, ...]:
    """``heads`` unchanged when all are softmax heads; else a :class:`HeadSpecError` saying that
    ``what`` (e.g. ``"export"``) does not support keypoint heads yet."""
    heads = tuple(heads)
    kp = [h.name for h in heads if isinstance(h, KeypointHead)]
    if kp:
        raise HeadSpecError(
            f"keypoint heads are not supported by {what} yet: {kp!r}; drop them from the head "
            "spec (--heads) for this step"
        )
    return softmax_heads(heads)


def _check_unique(heads: HeadSpec, where: str) -> HeadSpec:
    names = [h.name for h in heads]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise HeadSpecError(f"{where}: duplicate head names {dupes!r}")
    return heads
