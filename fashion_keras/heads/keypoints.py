"""Keypoint heads: ordered keypoint names, left/right pairs, an optional skeleton (the edges
drawn between keypoints in figures) and, per garment category, the keypoints it defines and the
pair that normalises the error.

In a head spec file the skeleton is a list of ``[a, b]`` keypoint-name pairs (optional; specs
without it load with no edges)::

      - name: shoe_keypoints
        type: keypoints
        keypoints: [toe, heel_left, heel_right]
        flip_pairs: [[heel_left, heel_right]]
        skeleton: [[toe, heel_left], [toe, heel_right], [heel_left, heel_right]]
        categories: ...
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from fashion_keras.heads.names import NAME_RE, HeadSpecError, name_list
from fashion_keras.heads.softmax import Head


@dataclasses.dataclass(frozen=True)
class KeypointCategory:
    """The keypoints one garment category defines (in the order its files list them) and the
    pair whose ground-truth distance normalises the error (``None``: the image size does)."""

    name: str
    keypoints: tuple[str, ...]
    normaliser: tuple[str, str] | None = None


@dataclasses.dataclass(frozen=True)
class KeypointHead:
    """One keypoint-regression output: ordered keypoint names, left/right ``flip_pairs`` and per
    garment category the keypoints it defines and its normalising pair.

    ``categories`` may be given as a mapping ``{category: (keypoints, normaliser)}`` (or
    ``{category: {"keypoints": [...], "normaliser": [a, b] | None}}``); it is stored as a tuple of
    :class:`KeypointCategory` in the given order. A category that defines one side of a flip pair
    must define the other side (a mirrored image moves the point to the other slot).

    ``skeleton``: undirected edges ``(a, b)`` between keypoint names, drawn in figures (an edge
    is drawn where the image has both of its points); each edge at most once, in either
    direction, and never from a keypoint to itself.
    """

    kind: ClassVar[str] = "keypoints"

    name: str
    keypoints: tuple[str, ...]
    flip_pairs: tuple[tuple[str, str], ...]
    categories: tuple[KeypointCategory, ...]
    loss_weight: float = 1.0
    skeleton: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        where = f"keypoint head {self.name!r}"
        if not isinstance(self.name, str) or not NAME_RE.match(self.name):
            raise HeadSpecError(
                f"head name {self.name!r} is invalid: expected letters, digits and "
                "underscores, starting with a letter (it names model outputs and files)"
            )
        keypoints = name_list(self.keypoints, f"{where}: 'keypoints'")
        if not keypoints:
            raise HeadSpecError(f"{where}: 'keypoints' is empty; list at least one keypoint name")
        for i, k in enumerate(keypoints):
            if not NAME_RE.match(k):
                raise HeadSpecError(
                    f"{where}: keypoints[{i}] = {k!r} is invalid: expected letters, digits and "
                    "underscores, starting with a letter"
                )
        object.__setattr__(self, "keypoints", keypoints)
        object.__setattr__(self, "flip_pairs", self._checked_flip_pairs(where))
        object.__setattr__(self, "skeleton", self._checked_skeleton(where))
        object.__setattr__(self, "categories", self._checked_categories(where))
        if isinstance(self.loss_weight, bool) or not isinstance(self.loss_weight, (int, float)):
            raise HeadSpecError(f"{where}: loss_weight = {self.loss_weight!r} is not a number")
        if not self.loss_weight >= 0:
            raise HeadSpecError(f"{where}: loss_weight = {self.loss_weight!r} must be >= 0")
        object.__setattr__(self, "loss_weight", float(self.loss_weight))

    def _checked_flip_pairs(self, where: str) -> tuple[tuple[str, str], ...]:
        pairs = self.flip_pairs
        if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Sequence):
            raise HeadSpecError(
                f"{where}: flip_pairs = {pairs!r} is not a list of [left, right] name pairs"
            )
        out: list[tuple[str, str]] = []
        seen: dict[str, int] = {}
        for i, pair in enumerate(pairs):
            pair = _name_pair(pair, f"{where}: flip_pairs[{i}]", self.keypoints)
            for k in pair:
                if k in seen:
                    raise HeadSpecError(
                        f"{where}: flip_pairs[{i}] = {list(pair)!r}: keypoint {k!r} is already "
                        f"in flip_pairs[{seen[k]}]; each keypoint has at most one mirror partner"
                    )
                seen[k] = i
            out.append(pair)
        return tuple(out)

    def _checked_skeleton(self, where: str) -> tuple[tuple[str, str], ...]:
        edges = self.skeleton
        if isinstance(edges, (str, bytes)) or not isinstance(edges, Sequence):
            raise HeadSpecError(f"{where}: skeleton = {edges!r} is not a list of [a, b] name pairs")
        out: list[tuple[str, str]] = []
        seen: dict[frozenset[str], int] = {}
        for i, edge in enumerate(edges):
            edge = _name_pair(edge, f"{where}: skeleton[{i}]", self.keypoints)
            key = frozenset(edge)
            if key in seen:
                raise HeadSpecError(
                    f"{where}: skeleton[{i}] = {list(edge)!r} is the same edge as "
                    f"skeleton[{seen[key]}]; list each edge once (edges have no direction)"
                )
            seen[key] = i
            out.append(edge)
        return tuple(out)

    def _checked_categories(self, where: str) -> tuple[KeypointCategory, ...]:
        cats = self.categories
        if isinstance(cats, Mapping):
            items = list(cats.items())
        elif isinstance(cats, Sequence) and all(isinstance(c, KeypointCategory) for c in cats):
            items = [(c.name, c) for c in cats]
        else:
            items = None
        if not items:
            raise HeadSpecError(
                f"{where}: 'categories' = {cats!r} must be a non-empty mapping "
                "{category: {keypoints: [...], normaliser: [a, b] or null}}"
            )
        partner = {a: b for a, b in self.flip_pairs} | {b: a for a, b in self.flip_pairs}
        out: list[KeypointCategory] = []
        for name, value in items:
            if isinstance(value, KeypointCategory):
                keypoints, normaliser = value.keypoints, value.normaliser
            elif isinstance(value, Mapping):
                unknown = sorted(set(value) - {"keypoints", "normaliser"})
                if unknown or "keypoints" not in value:
                    raise HeadSpecError(
                        f"{where}: category {name!r} = {dict(value)!r}: expected fields "
                        "'keypoints' (required) and 'normaliser' (optional), "
                        f"got {sorted(value)!r}"
                    )
                keypoints, normaliser = value["keypoints"], value.get("normaliser")
            elif isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
                keypoints, normaliser = value
            else:
                raise HeadSpecError(
                    f"{where}: category {name!r} = {value!r}: expected (keypoints, normaliser) "
                    "or {keypoints: [...], normaliser: [a, b] or null}"
                )
            if not isinstance(name, str) or not name.strip():
                raise HeadSpecError(f"{where}: category name {name!r} is not a non-empty string")
            cw = f"{where}: category {name!r}"
            keypoints = name_list(keypoints, f"{cw}: 'keypoints'")
            if not keypoints:
                raise HeadSpecError(f"{cw}: 'keypoints' is empty; list the keypoints it defines")
            unknown = [k for k in keypoints if k not in self.keypoints]
            if unknown:
                raise HeadSpecError(
                    f"{cw}: unknown keypoint(s) {unknown!r}; expected names from the head's "
                    f"'keypoints' {list(self.keypoints)!r}"
                )
            unpaired = [k for k in keypoints if k in partner and partner[k] not in keypoints]
            if unpaired:
                raise HeadSpecError(
                    f"{cw}: defines {unpaired!r} but not their flip partners "
                    f"{[partner[k] for k in unpaired]!r}; add them (a mirrored image moves each "
                    "point to its partner's slot) or drop the pair from 'flip_pairs'"
                )
            if normaliser is not None:
                normaliser = _name_pair(normaliser, f"{cw}: 'normaliser'", keypoints)
            out.append(KeypointCategory(name, keypoints, normaliser))
        names = [c.name for c in out]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise HeadSpecError(f"{where}: duplicate category names {dupes!r}")
        return tuple(out)

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)

    @property
    def category_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.categories)

    def index(self, keypoint: str) -> int:
        """Index of ``keypoint`` in this head, with an error that lists the valid names."""
        try:
            return self.keypoints.index(keypoint)
        except ValueError:
            raise KeyError(
                f"keypoint head {self.name!r} has no keypoint {keypoint!r}; "
                f"expected one of {list(self.keypoints)!r}"
            ) from None

    def category(self, name: str) -> KeypointCategory:
        """The category ``name``, with an error that lists the valid names."""
        for c in self.categories:
            if c.name == name:
                return c
        raise KeyError(
            f"keypoint head {self.name!r} has no category {name!r}; "
            f"expected one of {list(self.category_names)!r}"
        )

    def defined_mask(self, category: str) -> tuple[bool, ...]:
        """Per keypoint (head order), whether ``category`` defines it."""
        defined = set(self.category(category).keypoints)
        return tuple(k in defined for k in self.keypoints)

    def normaliser_indices(self, category: str) -> tuple[int, int] | None:
        """Head indices of ``category``'s normalising pair, ``None`` if it has none."""
        pair = self.category(category).normaliser
        return None if pair is None else (self.index(pair[0]), self.index(pair[1]))

    def flip_permutation(self) -> tuple[int, ...]:
        """``perm`` with ``mirrored[..., i, :] = points[..., perm[i], :]`` (x then becomes
        ``width - 1 - x`` for pixel-index coordinates, the convention of the annotations and of
        ``models.keypoint_layers``): swaps every left/right pair, keeps unpaired keypoints. An involution."""
        perm = list(range(self.num_keypoints))
        for a, b in self.flip_pairs:
            i, j = self.index(a), self.index(b)
            perm[i], perm[j] = j, i
        return tuple(perm)

    def skeleton_indices(self) -> tuple[tuple[int, int], ...]:
        """The skeleton's edges as head indices ``(i, j)``."""
        return tuple((self.index(a), self.index(b)) for a, b in self.skeleton)

    def to_dict(self) -> dict[str, Any]:
        """The dict / YAML / JSON form (``skeleton`` only when the head has edges, so the form
        of a head without one is unchanged)."""
        cats: dict[str, Any] = {}
        for c in self.categories:
            cats[c.name] = {
                "keypoints": list(c.keypoints),
                "normaliser": None if c.normaliser is None else list(c.normaliser),
            }
        out: dict[str, Any] = {
            "name": self.name,
            "type": "keypoints",
            "keypoints": list(self.keypoints),
            "flip_pairs": [list(p) for p in self.flip_pairs],
            "categories": cats,
            "loss_weight": self.loss_weight,
        }
        if self.skeleton:
            out["skeleton"] = [list(e) for e in self.skeleton]
        return out

    # Softmax-only attributes: code written for softmax heads fails here with a clear message.
    @property
    def classes(self) -> tuple[str, ...]:
        raise _softmax_only(self, "classes")

    @property
    def num_classes(self) -> int:
        raise _softmax_only(self, "num_classes")

    @property
    def class_weights(self) -> tuple[float, ...] | None:
        raise _softmax_only(self, "class_weights")


def _softmax_only(head: KeypointHead, attribute: str) -> AttributeError:
    return AttributeError(
        f"head {head.name!r} is a keypoint head ({head.num_keypoints} keypoints) and has no "
        f"{attribute!r}: keypoint heads are not supported by this code path yet (it handles "
        "softmax heads only); select the softmax heads with fashion_keras.heads.softmax_heads() "
        "or drop the keypoint head from --heads"
    )


def _name_pair(value: Any, where: str, allowed: Sequence[str]) -> tuple[str, str]:
    """``value`` as two distinct names from ``allowed``, or a :class:`HeadSpecError`."""
    if (
        isinstance(value, (str, bytes))
        or not isinstance(value, Sequence)
        or len(value) != 2
        or not all(isinstance(k, str) for k in value)
    ):
        raise HeadSpecError(f"{where} = {value!r} must be a pair of keypoint names [a, b]")
    a, b = value
    if a == b:
        raise HeadSpecError(f"{where} = {[a, b]!r} names the same keypoint twice")
    missing = [k for k in (a, b) if k not in allowed]
    if missing:
        raise HeadSpecError(
            f"{where} = {[a, b]!r}: {missing!r} not among the keypoints {list(allowed)!r}"
        )
    return (a, b)


AnyHead = Head | KeypointHead
HeadSpec = tuple[AnyHead, ...]


def visibility_output(head_name: str) -> str:
    """The model output of a keypoint head's visibility probabilities (``<head>_visibility``;
    the head's own name is its heatmap output)."""
    return f"{head_name}_visibility"
