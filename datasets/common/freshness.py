"""Whether a prepared dataset still matches its manual folder: a fingerprint and what changed.

:class:`~fashion_keras_datasets.common.builder.ValidatingBuilder` stores :func:`fingerprint` of
the manual folder in ``info.metadata["source"]`` when it prepares a dataset, and compares the
folder with it (:func:`compare`) before reusing the prepared data: any change prepares it again.

Annotation files (``.txt``, ``.csv``, ``.tsv``, ``.json``, ``.yaml``, ``.yml``) are compared by
content (sha256). Every other file (images, and anything else the folder holds) is compared by
size and modification time, cheap for hundreds of thousands of images; they are stored as one
short entry each (a hash of the path, a hash of size and time), so the metadata stays small and
a change can still be counted as files added, removed or replaced. Hidden files and folders
(``.DS_Store``, ``.git/``), ``Thumbs.db``/``desktop.ini`` and the given ``exclude`` folders
(the TFDS data folder, when it sits inside the manual folder) are not part of the source.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import posixpath
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from etils import epath

SOURCE_KEY = "source"  # the key in info.metadata
FORMAT = 1
ANNOTATION_SUFFIXES = frozenset({".txt", ".csv", ".tsv", ".json", ".yaml", ".yml"})
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
)
IGNORED_NAMES = frozenset({"Thumbs.db", "desktop.ini"})
#: An entry of the file table: a kind letter, then hashes of the path and of size + time.
KINDS = {"i": "images", "o": "other files"}
PATH_HASH, STATE_HASH = 12, 8
ENTRY = 1 + PATH_HASH + STATE_HASH
MAX_NAMED = 5


def _ignored(name: str) -> bool:
    return name.startswith(".") or name in IGNORED_NAMES


def _is_local(root: epath.Path) -> bool:
    return "://" not in os.fspath(root)


def _local_files(root: str, exclude: set[str]) -> Iterator[tuple[str, int, int]]:
    """``(relative path, size, mtime in ns)`` of the files under a local ``root`` (symlinks
    followed, each folder once)."""
    visited: set[tuple[int, int]] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        stat = os.stat(folder)
        if (stat.st_dev, stat.st_ino) in visited:
            dirs[:] = []
            continue
        visited.add((stat.st_dev, stat.st_ino))
        dirs[:] = [
            d
            for d in dirs
            if not _ignored(d) and os.path.realpath(os.path.join(folder, d)) not in exclude
        ]
        prefix = os.path.relpath(folder, root).replace(os.sep, "/")
        for name in files:
            if _ignored(name):
                continue
            try:
                stat = os.stat(os.path.join(folder, name))
                size, mtime = stat.st_size, stat.st_mtime_ns
            except OSError:  # a broken link, no permission: listed, so fixing it is a change
                size, mtime = -1, 0
            yield posixpath.normpath(f"{prefix}/{name}"), size, mtime


def _remote_files(root: epath.Path, exclude: set[str]) -> Iterator[tuple[str, int, int]]:
    """The same for a remote ``root`` (e.g. ``gs://``), whose times are in seconds."""
    for folder, _, files in root.walk():
        rel_folder = os.fspath(folder)[len(os.fspath(root)) :].strip("/")
        parts = [p for p in rel_folder.split("/") if p]
        if any(_ignored(p) for p in parts) or any(
            rel_folder == e or rel_folder.startswith(e + "/") for e in exclude
        ):
            continue
        for name in files:
            if not _ignored(name):
                stat = (folder / name).stat()
                yield "/".join([*parts, name]), stat.length, int(stat.mtime) * 10**9


def list_files(
    root: epath.PathLike, exclude: Iterable[epath.PathLike] = ()
) -> list[tuple[str, int, int]]:
    """``(relative path, size, mtime in ns)`` of every file of the source under ``root``, sorted."""
    root = epath.Path(root)
    if _is_local(root):
        skip = {os.path.realpath(os.fspath(e)) for e in exclude}
        return sorted(_local_files(os.fspath(root), skip))
    prefix = os.fspath(root).rstrip("/") + "/"
    skip = {os.fspath(e)[len(prefix) :] for e in exclude if os.fspath(e).startswith(prefix)}
    return sorted(_remote_files(root, skip))


def _sha256(path: epath.Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as e:
        return f"unreadable: {e.strerror or e}"
    return digest.hexdigest()


def _short(text: str, size: int) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=size // 2).hexdigest()


def fingerprint(root: epath.PathLike, exclude: Iterable[epath.PathLike] = ()) -> dict[str, Any]:
    """The fingerprint of the manual folder ``root`` (JSON-serialisable, for the metadata)."""
    root = epath.Path(root)
    annotations: dict[str, str] = {}
    entries: list[str] = []
    listing = hashlib.sha256()
    for rel, size, mtime in list_files(root, exclude):
        suffix = posixpath.splitext(rel)[1].lower()
        if suffix in ANNOTATION_SUFFIXES:
            annotations[rel] = _sha256(root / rel)
            continue
        kind = "i" if suffix in IMAGE_SUFFIXES else "o"
        entries.append(kind + _short(rel, PATH_HASH) + _short(f"{size}:{mtime}", STATE_HASH))
        listing.update(f"{rel}\0{size}\0{mtime}\n".encode())
    return {
        "format": FORMAT,
        "manual_dir": os.fspath(root),
        "annotations": annotations,
        "files": len(entries),
        "listing": listing.hexdigest(),
        "table": "".join(sorted(entries)),
    }


@dataclasses.dataclass
class SourceChanges:
    """What differs between two fingerprints of a manual folder."""

    annotations: dict[str, str]  # relative path -> "changed", "added" or "removed"
    files: dict[str, dict[str, int]]  # KINDS name -> {"added": n, "removed": n, "replaced": n}
    listing_changed: bool
    moved_from: str | None = None  # the folder it was prepared from, when another

    def __bool__(self) -> bool:
        return bool(self.annotations or self.listing_changed)

    def describe(self) -> str:
        """One line, e.g. ``labels.csv changed; images: 1 added, 2 replaced``."""
        names = [f"{path} {how}" for path, how in self.annotations.items()]
        if len(names) > MAX_NAMED:
            names[MAX_NAMED:] = [f"and {len(names) - MAX_NAMED} more annotation files"]
        parts = [", ".join(names)] if names else []
        for kind, counts in self.files.items():
            counted = ", ".join(f"{n} {how}" for how, n in counts.items() if n)
            if counted:
                parts.append(f"{kind}: {counted}")
        if self.listing_changed and not any(any(c.values()) for c in self.files.values()):
            parts.append("the list of files changed")
        if self.moved_from:
            parts.append(f"prepared from {self.moved_from}")
        return "; ".join(parts)


def _table(fp: Mapping[str, Any]) -> dict[str, str]:
    text = fp.get("table", "")
    entries = (text[i : i + ENTRY] for i in range(0, len(text), ENTRY))
    return {e[: 1 + PATH_HASH]: e[1 + PATH_HASH :] for e in entries}


def compare(stored: Mapping[str, Any], current: Mapping[str, Any]) -> SourceChanges:
    """What changed from the ``stored`` fingerprint to the ``current`` one."""
    before, now = dict(stored.get("annotations", {})), dict(current.get("annotations", {}))
    annotations = {p: "changed" for p in now if p in before and before[p] != now[p]}
    annotations.update({p: "added" for p in now if p not in before})
    annotations.update({p: "removed" for p in before if p not in now})
    old, new = _table(stored), _table(current)
    files = {}
    for letter, kind in KINDS.items():
        mine = {k for k in new if k[0] == letter}
        theirs = {k for k in old if k[0] == letter}
        files[kind] = {
            "added": len(mine - theirs),
            "removed": len(theirs - mine),
            "replaced": sum(old[k] != new[k] for k in mine & theirs),
        }
    listing_changed = stored.get("listing") != current.get("listing")
    changes = SourceChanges(dict(sorted(annotations.items())), files, listing_changed)
    if changes and stored.get("manual_dir") != current.get("manual_dir"):
        changes.moved_from = stored.get("manual_dir")
    return changes
