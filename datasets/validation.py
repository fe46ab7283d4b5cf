"""Shared row validation for every dataset builder, with one error type and one skip report.

Policy (the same for all builders):

- A *structural* problem in an annotation file (wrong column count, a value that is not an
  integer, not exactly one 1 in a one-hot group, an inverted bbox, split files whose row counts
  differ, an image path that leaves the dataset folder) raises :class:`AnnotationError`, whose
  message names the file, the 1-based line, the field, the offending value and what was expected.
- A missing or undecodable *image* is not an error: the row is skipped and counted in a
  :class:`SkipReport` (reason, count, the first few ``file:line`` examples). The report is logged
  at the end of each split and returned as a dict, so a skip is never silent.
- Rows kept but changed (a bbox clamped to the image, an image re-encoded) are counted in the same
  report under ``adjusted``.

Files are read through ``etils.epath`` so builders also work on GCS paths.
"""

from __future__ import annotations

import dataclasses
import io
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from absl import logging
from etils import epath

__all__ = [
    "AnnotationError",
    "ImageInfo",
    "ImageProblem",
    "MissingFilesError",
    "Row",
    "SkipReport",
    "check_image",
    "check_image_bytes",
    "check_row_counts",
    "describe_dir",
    "expect_num_fields",
    "find_missing",
    "normalize_bbox",
    "parse_bbox",
    "parse_int",
    "parse_label_string",
    "parse_one_hot_groups",
    "read_counted_rows",
    "read_image",
    "read_rows",
    "resolve_image_path",
]

# Reasons used by the image checks (SkipReport keys).
MISSING_IMAGE = "missing_image"
UNREADABLE_IMAGE = "unreadable_image"


class AnnotationError(ValueError):
    """A structural error in an annotation file.

    The message reads ``<file>:<line>: <field> = <value>: expected <expected>``.
    """

    def __init__(
        self,
        path: str | epath.PathLike,
        line: int | None,
        field: str,
        value: Any,
        expected: str,
        note: str = "",
    ) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        self.value = value
        self.expected = expected
        self.note = note
        where = self.path if line is None else f"{self.path}:{line}"
        message = f"{where}: {field} = {value!r}: expected {expected}"
        if note:
            message += f" ({note})"
        super().__init__(message)

    def __reduce__(self):  # keep the structured fields when pickled (multiprocessing, Beam)
        return (
            type(self),
            (self.path, self.line, self.field, self.value, self.expected, self.note),
        )


class MissingFilesError(FileNotFoundError):
    """Required files of a manual download are missing; lists every one of them at once."""

    def __init__(
        self, dataset: str, root: str | epath.PathLike, missing: Sequence[str], hint: str = ""
    ) -> None:
        self.dataset = dataset
        self.root = describe_dir(root)
        self.missing = list(missing)
        lines = [
            f"{dataset}: {len(self.missing)} required path(s) missing from the manual folder",
            f"  manual folder: {self.root}",
            "  missing:",
            *(f"    - {m}" for m in self.missing),
        ]
        if hint:
            lines.append(hint.rstrip())
        self.hint = hint
        super().__init__("\n".join(lines))

    def __reduce__(self):
        return (type(self), (self.dataset, self.root, self.missing, self.hint))


class ImageProblem(Exception):
    """An image cannot be used; ``reason`` is a :class:`SkipReport` key."""

    def __init__(self, reason: str, path: str | epath.PathLike, detail: str) -> None:
        self.reason = reason
        self.path = str(path)
        self.detail = detail
        super().__init__(f"{self.path}: {detail}")

    def __reduce__(self):
        return (type(self), (self.reason, self.path, self.detail))


def describe_dir(path: str | epath.PathLike) -> str:
    """The folder as the user should see it: absolute and resolved when local."""
    p = epath.Path(path)
    try:
        return str(p.resolve())
    except (OSError, NotImplementedError, ValueError):
        return str(p)


def find_missing(
    root: str | epath.PathLike, relative_paths: Iterable[str], *, dirs: Iterable[str] = ()
) -> list[str]:
    """The entries of ``relative_paths`` (files) and ``dirs`` (folders) absent under ``root``."""
    root = epath.Path(root)
    missing = [r for r in relative_paths if not (root / r).is_file()]
    missing += [f"{d}/" for d in dirs if not (root / d).is_dir()]
    return missing


# --- reading annotation files -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Row:
    """One non-empty line of an annotation file: its whitespace-separated fields."""

    path: str
    line: int  # 1-based
    fields: tuple[str, ...]

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def text(self) -> str:
        return " ".join(self.fields)

    def error(self, field: str, value: Any, expected: str, note: str = "") -> AnnotationError:
        """An :class:`AnnotationError` located at this row."""
        return AnnotationError(self.path, self.line, field, value, expected, note)


def _read_lines(path: str | epath.PathLike) -> list[str]:
    data = epath.Path(path).read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise AnnotationError(
            path, line, "text", data[e.start : e.start + 8], "UTF-8 text", note=e.reason
        ) from None
    return text.splitlines()


def read_rows(
    path: str | epath.PathLike,
    *,
    header_lines: int = 0,
    num_fields: int | None = None,
    what: str = "",
) -> list[Row]:
    """Reads a whitespace-separated annotation file into :class:`Row` objects with line numbers.

    Trailing blank lines are ignored; a blank line before the last row is an error, because the
    rows of a split's files line up by row number.

    Args:
      path: the file.
      header_lines: lines to skip at the top (count and header lines).
      num_fields: if given, every row must have exactly this many fields.
      what: what one row holds, for error messages (e.g. ``"x1 y1 x2 y2"``).
    """
    lines = _read_lines(path)
    while lines and not lines[-1].strip():
        lines.pop()
    rows = []
    for i, line in enumerate(lines[header_lines:], start=header_lines + 1):
        fields = tuple(line.split())
        if not fields:
            raise AnnotationError(
                path, i, "row", "", what or "a non-empty row", note="blank line inside the file"
            )
        row = Row(str(path), i, fields)
        if num_fields is not None:
            expect_num_fields(row, num_fields, what)
        rows.append(row)
    return rows


def expect_num_fields(row: Row, num_fields: int, what: str = "") -> None:
    """Raises unless ``row`` has exactly ``num_fields`` whitespace-separated fields."""
    if len(row.fields) != num_fields:
        expected = f"{num_fields} whitespace-separated field(s)"
        if what:
            expected += f" ({what})"
        raise row.error("number of fields", len(row.fields), expected, note=f"row: {row.text!r}")


def read_counted_rows(
    path: str | epath.PathLike, *, min_fields: int = 1
) -> tuple[tuple[str, ...], list[Row]]:
    """Reads a ``count`` line, a header line, then rows (the DeepFashion ``list_*.txt`` style).

    Returns:
      The header fields and the rows; the count line must equal the number of rows.
    """
    lines = _read_lines(path)
    while lines and not lines[-1].strip():
        lines.pop()
    if len(lines) < 2:
        raise AnnotationError(path, len(lines) + 1, "header", "", "a count line then a header line")
    count_row = Row(str(path), 1, tuple(lines[0].split()))
    if len(count_row.fields) != 1:
        raise count_row.error("count line", lines[0], "a single integer (the number of rows)")
    count = parse_int(count_row, 0, "count line", lo=0)
    rows = read_rows(path, header_lines=2)
    for row in rows:
        if len(row.fields) < min_fields:
            raise row.error("number of fields", len(row.fields), f"at least {min_fields}")
    if count != len(rows):
        raise count_row.error("count line", count, f"{len(rows)}, the number of rows below it")
    return tuple(lines[1].split()), rows


def check_row_counts(counts: Mapping[str, int], reference: str) -> None:
    """Checks that every file has as many rows as ``reference`` (files that line up by row).

    Args:
      counts: ``{file: number of rows}``; must include ``reference``.
      reference: the file the others must match (e.g. the split's image list).
    """
    n_ref = counts[reference]
    for path, n in counts.items():
        if n != n_ref:
            raise AnnotationError(
                path,
                min(n, n_ref) + 1,
                "row count",
                n,
                f"{n_ref} rows, one per row of {reference} ({n_ref} rows)",
                note="the rows of a split's files line up by row number",
            )


# --- parsing fields -----------------------------------------------------------------------------


def parse_int(
    row: Row, index: int, field: str, *, lo: int | None = None, hi: int | None = None
) -> int:
    """Field ``index`` of ``row`` as an integer in ``[lo, hi]``."""
    token = row.fields[index]
    bounds = (
        f" in [{lo}, {hi}]"
        if lo is not None and hi is not None
        else (f" >= {lo}" if lo is not None else (f" <= {hi}" if hi is not None else ""))
    )
    try:
        value = int(token)
    except ValueError:
        raise row.error(field, token, f"an integer{bounds}") from None
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise row.error(field, token, f"an integer{bounds}")
    return value


def parse_one_hot_groups(
    row: Row, groups: Sequence[tuple[str, Sequence[str]]], *, start: int = 0
) -> dict[str, int]:
    """Parses consecutive one-hot groups of ``0``/``1`` columns (exactly one 1 per group).

    Args:
      row: the row.
      groups: ``(group_name, class_names)`` in column order, e.g. one per head.
      start: index of the first column in ``row.fields``.

    Returns:
      ``{group_name: index of the 1 within the group}``.
    """
    total = sum(len(c) for _, c in groups)
    sizes = ", ".join(f"{g} {len(c)}" for g, c in groups)
    if len(row.fields) - start != total:
        raise row.error(
            "number of columns",
            len(row.fields) - start,
            f"{total} space-separated 0/1 values ({sizes})",
        )
    out = {}
    col = start
    for name, classes in groups:
        values = row.fields[col : col + len(classes)]
        for k, token in enumerate(values):
            if token not in ("0", "1"):
                raise row.error(f"column {col + k + 1} ({name}/{classes[k]})", token, "0 or 1")
        ones = [k for k, t in enumerate(values) if t == "1"]
        if len(ones) != 1:
            raise row.error(
                f"{name} (columns {col + 1}-{col + len(classes)})",
                " ".join(values),
                f"exactly one 1 among {list(classes)}",
                note=f"found {len(ones)}",
            )
        out[name] = ones[0]
        col += len(classes)
    return out


def parse_label_string(
    row: Row, index: int, classes: Sequence[str], field: str = "label"
) -> tuple[int, tuple[int, ...]]:
    """Parses a FashionAI-style ``y``/``m``/``n`` label string (one character per class).

    Returns:
      The index of the single ``y`` and the indices of the ``m`` ("maybe") classes.
    """
    token = row.fields[index]
    expected = f"{len(classes)} characters from y/m/n with exactly one y (classes {list(classes)})"
    if len(token) != len(classes) or set(token) - set("ymn") or token.count("y") != 1:
        raise row.error(field, token, expected)
    return token.index("y"), tuple(i for i, ch in enumerate(token) if ch == "m")


def parse_bbox(row: Row, start: int = 0, field: str = "bbox") -> tuple[float, float, float, float]:
    """Parses ``x1 y1 x2 y2`` pixel coordinates (top-left, bottom-right) with x1 < x2, y1 < y2."""
    tokens = row.fields[start : start + 4]
    text = " ".join(tokens)
    if len(tokens) != 4:
        raise row.error(field, text, "4 numbers x1 y1 x2 y2 (pixels)")
    try:
        x1, y1, x2, y2 = (float(t) for t in tokens)
    except ValueError:
        raise row.error(field, text, "4 numbers x1 y1 x2 y2 (pixels)") from None
    if not all(v == v and abs(v) != float("inf") for v in (x1, y1, x2, y2)):
        raise row.error(field, text, "finite numbers x1 y1 x2 y2 (pixels)")
    if not (x1 < x2 and y1 < y2):
        raise row.error(
            field,
            text,
            "x1 < x2 and y1 < y2 (top-left then bottom-right, in pixels)",
            note="the box is inverted or empty",
        )
    return x1, y1, x2, y2


def normalize_bbox(
    box: tuple[float, float, float, float], width: int, height: int
) -> tuple[tuple[float, float, float, float] | None, bool]:
    """Pixel ``(x1, y1, x2, y2)`` to normalised ``(ymin, xmin, ymax, xmax)`` clamped to [0, 1].

    Returns:
      ``(box, clamped)``: ``box`` is None when nothing of it lies inside the image; ``clamped``
      says whether the box reached outside the image.
    """
    x1, y1, x2, y2 = box
    raw = (y1 / height, x1 / width, y2 / height, x2 / width)
    ymin, xmin, ymax, xmax = (min(1.0, max(0.0, v)) for v in raw)
    clamped = (ymin, xmin, ymax, xmax) != raw
    if not (ymin < ymax and xmin < xmax):
        return None, clamped
    return (ymin, xmin, ymax, xmax), clamped


# --- paths and images ---------------------------------------------------------------------------

_DRIVE_OR_SCHEME = re.compile(r"^([A-Za-z]:|[A-Za-z][A-Za-z0-9+.-]*://)")


def resolve_image_path(
    root: str | epath.PathLike, relative: str, row: Row, field: str = "image path"
) -> epath.Path:
    """``root / relative`` after checking that ``relative`` stays inside ``root``.

    The check is lexical (no ``..``, not absolute, ``/`` separators): symlinked folders inside
    ``root`` are allowed.
    """
    expected = "a relative path with '/' separators inside the dataset folder (no '..')"
    if not relative or "\\" in relative or "\x00" in relative:
        raise row.error(field, relative, expected)
    if relative.startswith("/") or _DRIVE_OR_SCHEME.match(relative):
        raise row.error(field, relative, expected, note="absolute path")
    if ".." in relative.split("/") or posixpath.normpath(relative).startswith(".."):
        raise row.error(field, relative, expected, note="leaves the dataset folder")
    return epath.Path(root) / relative


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """What the image header says."""

    width: int
    height: int
    format: str  # PIL format name, e.g. "JPEG", "PNG"
    mode: str  # PIL mode, e.g. "RGB", "L", "CMYK"


def read_image(path: str | epath.PathLike, *, decode: bool = True) -> tuple[bytes, ImageInfo]:
    """Reads an image's bytes once and checks them with PIL.

    Args:
      path: the image file.
      decode: also decode the pixels, which catches truncated or corrupt files whose header is
        fine (JPEGs are decoded at reduced scale, which still reads every byte).

    Returns:
      The file's bytes, unchanged, and its :class:`ImageInfo`.

    Raises:
      ImageProblem: ``missing_image`` or ``unreadable_image``.
    """
    p = epath.Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ImageProblem(MISSING_IMAGE, p, "image file not found") from None
    except IsADirectoryError:
        raise ImageProblem(MISSING_IMAGE, p, "is a folder, not an image file") from None
    except OSError as e:
        raise ImageProblem(UNREADABLE_IMAGE, p, f"cannot read: {e}") from None
    return data, check_image_bytes(data, p, decode=decode)


def check_image(path: str | epath.PathLike, *, decode: bool = True) -> ImageInfo:
    """Checks that ``path`` is a readable image and returns its size (see :func:`read_image`)."""
    return read_image(path, decode=decode)[1]


def check_image_bytes(
    data: bytes, path: str | epath.PathLike = "<bytes>", *, decode: bool = True
) -> ImageInfo:
    """Checks encoded image bytes with PIL; raises :class:`ImageProblem` if unusable."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ImageProblem(UNREADABLE_IMAGE, path, "empty file")
    try:
        with Image.open(io.BytesIO(data)) as img:
            info = ImageInfo(int(img.width), int(img.height), str(img.format), str(img.mode))
            if info.width <= 0 or info.height <= 0:
                raise ImageProblem(UNREADABLE_IMAGE, path, f"image size {img.size}")
            if decode:
                if info.format == "JPEG":
                    img.draft(img.mode, (max(1, img.width // 8), max(1, img.height // 8)))
                img.load()
    except UnidentifiedImageError:
        raise ImageProblem(UNREADABLE_IMAGE, path, "not a recognised image format") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageProblem(UNREADABLE_IMAGE, path, f"cannot decode: {e}") from None
    return info


# --- the skip report ----------------------------------------------------------------------------


class SkipReport:
    """Counts skipped (and adjusted) rows of one split by reason, with a few examples each.

    ``as_dict()`` is the one report format of all builders::

        {"dataset": ..., "split": ..., "rows": total, "kept": n,
         "skipped": {reason: count}, "adjusted": {reason: count},
         "examples": {reason: ["file:line: detail", ...]}}
    """

    def __init__(self, dataset: str, split: str, *, max_examples: int = 5) -> None:
        self.dataset = dataset
        self.split = split
        self.max_examples = max_examples
        self.num_kept = 0
        self.skipped: dict[str, int] = {}
        self.adjusted: dict[str, int] = {}
        self.examples: dict[str, list[str]] = {}

    def _example(self, reason: str, where: str, detail: str) -> None:
        ex = self.examples.setdefault(reason, [])
        if len(ex) < self.max_examples:
            ex.append(f"{where}: {detail}" if detail else where)

    def keep(self) -> None:
        """Counts one row that was kept."""
        self.num_kept += 1

    def skip(self, reason: str, where: str, detail: str = "") -> None:
        """Counts one skipped row (``where`` is ``file:line``)."""
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        self._example(reason, where, detail)

    def adjust(self, reason: str, where: str, detail: str = "") -> None:
        """Counts one kept row whose data was changed (e.g. a clamped bbox)."""
        self.adjusted[reason] = self.adjusted.get(reason, 0) + 1
        self._example(reason, where, detail)

    @property
    def num_skipped(self) -> int:
        return sum(self.skipped.values())

    @property
    def num_rows(self) -> int:
        return self.num_kept + self.num_skipped

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "split": self.split,
            "rows": self.num_rows,
            "kept": self.num_kept,
            "skipped": dict(sorted(self.skipped.items())),
            "adjusted": dict(sorted(self.adjusted.items())),
            "examples": {k: list(v) for k, v in sorted(self.examples.items())},
        }

    def format(self) -> str:
        """A human-readable multi-line summary."""

        def counts(d: Mapping[str, int]) -> str:
            return ", ".join(f"{k}: {v}" for k, v in sorted(d.items()))

        head = f"{self.dataset}/{self.split}: kept {self.num_kept} of {self.num_rows} rows"
        if self.skipped:
            head += f"; skipped {self.num_skipped} ({counts(self.skipped)})"
        else:
            head += "; skipped 0"
        if self.adjusted:
            head += f"; adjusted {sum(self.adjusted.values())} ({counts(self.adjusted)})"
        lines = [head]
        for reason, examples in sorted(self.examples.items()):
            n = self.skipped.get(reason, 0) + self.adjusted.get(reason, 0)
            more = f" (first {len(examples)} of {n})" if n > len(examples) else ""
            lines.append(f"  {reason}{more}:")
            lines.extend(f"    {e}" for e in examples)
        return "\n".join(lines)

    def log(self) -> dict[str, Any]:
        """Logs the summary (a warning when rows were skipped) and returns :meth:`as_dict`."""
        (logging.warning if self.skipped else logging.info)("%s", self.format())
        return self.as_dict()

    def raise_if_nothing_kept(self, hint: str = "") -> None:
        """Raises when every row was skipped: the folder is almost certainly wrong."""
        if self.num_rows and not self.num_kept:
            raise FileNotFoundError(
                f"{self.dataset}/{self.split}: all {self.num_rows} rows were skipped; "
                f"{hint}\n{self.format()}"
            )
