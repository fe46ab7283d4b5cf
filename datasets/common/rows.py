"""Annotation rows: reading files into :class:`Row` objects with line numbers, and parsing fields.

Every parse error is an :class:`~fashion_keras_datasets.common.errors.AnnotationError` located
at its row (file, line, field, value, what was expected). Files are read through ``etils.epath``
so builders also work on GCS paths.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from etils import epath

from fashion_keras_datasets.common.errors import AnnotationError

# --- reading annotation files -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of an annotation file: its fields (whitespace- or comma-separated)."""

    path: str
    line: int  # 1-based
    fields: tuple[str, ...]
    sep: str = " "  # how :attr:`text` joins the fields back

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def text(self) -> str:
        return self.sep.join(self.fields)

    def error(
        self, field: str, value: Any, expected: str, note: str = "", reason: str = "bad_row"
    ) -> AnnotationError:
        """An :class:`AnnotationError` located at this row."""
        return AnnotationError(self.path, self.line, field, value, expected, note, reason)


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
    keep_blank: bool = False,
) -> list[Row]:
    """Reads a whitespace-separated annotation file into :class:`Row` objects with line numbers.

    Trailing blank lines are ignored; a blank line before the last row is an error, because the
    rows of a split's files line up by row number.

    Args:
      path: the file.
      header_lines: lines to skip at the top (count and header lines).
      num_fields: if given, every row must have exactly this many fields.
      what: what one row holds, for error messages (e.g. ``"x1 y1 x2 y2"``).
      keep_blank: return inner blank lines as rows without fields instead of raising (for
        builders that check each row themselves, see :class:`RowPolicy`).
    """
    lines = _read_lines(path)
    while lines and not lines[-1].strip():
        lines.pop()
    rows = []
    for i, line in enumerate(lines[header_lines:], start=header_lines + 1):
        fields = tuple(line.split())
        if not fields:
            if keep_blank:
                rows.append(Row(str(path), i, ()))
                continue
            raise AnnotationError(
                path,
                i,
                "row",
                "",
                what or "a non-empty row",
                note="blank line inside the file",
                reason="blank_line",
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
        raise row.error(
            "number of fields",
            len(row.fields),
            expected,
            note=f"row: {row.text!r}",
            reason="wrong_column_count",
        )


def read_counted_rows(
    path: str | epath.PathLike,
    *,
    min_fields: int = 1,
    keep_blank: bool = False,
    on_count_mismatch: Callable[[AnnotationError], None] | None = None,
) -> tuple[tuple[str, ...], list[Row]]:
    """Reads a ``count`` line, a header line, then rows (the DeepFashion ``list_*.txt`` style).

    Args:
      path: the file.
      min_fields: rows with fewer fields raise (not checked for blank rows kept by
        ``keep_blank``, which the caller checks).
      keep_blank: see :func:`read_rows`.
      on_count_mismatch: called with the error instead of raising it when the count line
        differs from the number of rows (e.g. :meth:`RowPolicy.file_problem`).

    Returns:
      The header fields and the rows; the count line must equal the number of rows.
    """
    lines = _read_lines(path)
    while lines and not lines[-1].strip():
        lines.pop()
    if len(lines) < 2:
        raise AnnotationError(
            path,
            len(lines) + 1,
            "header",
            "",
            "a count line then a header line",
            reason="missing_header",
        )
    count_row = Row(str(path), 1, tuple(lines[0].split()))
    if len(count_row.fields) != 1:
        raise count_row.error(
            "count line", lines[0], "a single integer (the number of rows)", reason="bad_count"
        )
    count = parse_int(count_row, 0, "count line", lo=0, reason="bad_count")
    rows = read_rows(path, header_lines=2, keep_blank=keep_blank)
    for row in rows:
        if row.fields and len(row.fields) < min_fields:
            raise row.error(
                "number of fields",
                len(row.fields),
                f"at least {min_fields}",
                reason="wrong_column_count",
            )
    if count != len(rows):
        error = count_row.error(
            "count line",
            count,
            f"{len(rows)}, the number of rows below it",
            reason="count_mismatch",
        )
        if on_count_mismatch is None:
            raise error
        on_count_mismatch(error)
    return tuple(lines[1].split()), rows


def read_csv_rows(
    path: str | epath.PathLike, *, header: bool
) -> tuple[tuple[str, ...] | None, list[Row]]:
    """Reads a comma-separated file (RFC 4180 quoting, UTF-8 with or without BOM, any newline).

    Every row keeps the 1-based line it starts on; blank lines come back as rows without fields
    (trailing blank lines are dropped), so the caller can report them with their line.

    Returns:
      The header fields (stripped; None when ``header`` is False) and the data rows, each field
      stripped of surrounding spaces.
    """
    text = "\n".join(_read_lines(path))
    reader = csv.reader(io.StringIO(text), skipinitialspace=False, strict=False)
    rows: list[Row] = []
    line = 1
    try:
        for record in reader:
            fields = tuple(f.strip() for f in record)
            if not any(fields):
                fields = ()
            rows.append(Row(str(path), line, fields, sep=","))
            line = reader.line_num + 1
    except csv.Error as e:
        raise AnnotationError(
            path, line, "row", "", "valid CSV", note=str(e), reason="bad_csv"
        ) from None
    while rows and not rows[-1].fields:
        rows.pop()
    head = None
    if header:
        if not rows or not rows[0].fields:
            raise AnnotationError(
                path, 1, "header", "", "a header line naming the columns", reason="missing_header"
            )
        head, rows = rows[0].fields, rows[1:]
    return head, rows


def check_header(
    path: str | epath.PathLike,
    header: Sequence[str],
    expected: Sequence[str],
    what: str,
    note: str = "",
) -> None:
    """Raises a ``bad_header`` :class:`AnnotationError` (line 1) unless ``header`` names the
    ``expected`` columns in order and no more (``what`` describes the columns in the message)."""
    for i, want in enumerate(expected):
        got = header[i] if i < len(header) else ""
        if got != want:
            raise AnnotationError(
                path,
                1,
                f"header column {i + 1}",
                got,
                f"{want!r} (columns: {what})",
                note=note,
                reason="bad_header",
            )
    if len(header) > len(expected):
        raise AnnotationError(
            path,
            1,
            "number of header columns",
            len(header),
            f"{len(expected)} ({what})",
            note=note,
            reason="bad_header",
        )


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
                reason="row_count_mismatch",
            )


# --- parsing fields -----------------------------------------------------------------------------


def parse_int(
    row: Row,
    index: int,
    field: str,
    *,
    lo: int | None = None,
    hi: int | None = None,
    reason: str = "out_of_range",
) -> int:
    """Field ``index`` of ``row`` as an integer in ``[lo, hi]`` (``reason`` names a range miss)."""
    token = row.fields[index]
    bounds = (
        f" in [{lo}, {hi}]"
        if lo is not None and hi is not None
        else (f" >= {lo}" if lo is not None else (f" <= {hi}" if hi is not None else ""))
    )
    try:
        value = int(token)
    except ValueError:
        raise row.error(field, token, f"an integer{bounds}", reason="not_an_integer") from None
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise row.error(field, token, f"an integer{bounds}", reason=reason)
    return value


def parse_number(row: Row, index: int, field: str, expected: str = "a finite number") -> float:
    """Field ``index`` of ``row`` as a finite float (``not_a_number`` naming ``expected``)."""
    token = row.fields[index]
    try:
        value = float(token)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise row.error(field, token, expected, reason="not_a_number")
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
            reason="wrong_column_count",
        )
    out = {}
    col = start
    for name, classes in groups:
        values = row.fields[col : col + len(classes)]
        for k, token in enumerate(values):
            if token not in ("0", "1"):
                raise row.error(
                    f"column {col + k + 1} ({name}/{classes[k]})",
                    token,
                    "0 or 1",
                    reason="bad_value",
                )
        ones = [k for k, t in enumerate(values) if t == "1"]
        if len(ones) != 1:
            raise row.error(
                f"{name} (columns {col + 1}-{col + len(classes)})",
                " ".join(values),
                f"exactly one 1 among {list(classes)}",
                note=f"found {len(ones)}",
                reason="not_one_hot",
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
    if len(token) != len(classes):
        raise row.error(
            field,
            token,
            expected,
            note=f"{len(token)} characters for {len(classes)} classes",
            reason="label_length",
        )
    bad = sorted(set(token) - set("ymn"))
    if bad:
        raise row.error(
            field, token, expected, note=f"characters {bad!r}", reason="label_characters"
        )
    if token.count("y") != 1:
        raise row.error(
            field, token, expected, note=f"{token.count('y')} y", reason="label_y_count"
        )
    return token.index("y"), tuple(i for i, ch in enumerate(token) if ch == "m")


def parse_bbox(row: Row, start: int = 0, field: str = "bbox") -> tuple[float, float, float, float]:
    """Parses ``x1 y1 x2 y2`` pixel coordinates (top-left, bottom-right) with x1 < x2, y1 < y2."""
    tokens = row.fields[start : start + 4]
    text = row.sep.join(tokens)
    if len(tokens) != 4:
        raise row.error(field, text, "4 numbers x1 y1 x2 y2 (pixels)", reason="bad_bbox")
    try:
        x1, y1, x2, y2 = (float(t) for t in tokens)
    except ValueError:
        raise row.error(field, text, "4 numbers x1 y1 x2 y2 (pixels)", reason="bad_bbox") from None
    if not all(v == v and abs(v) != float("inf") for v in (x1, y1, x2, y2)):
        raise row.error(field, text, "finite numbers x1 y1 x2 y2 (pixels)", reason="bad_bbox")
    if not (x1 < x2 and y1 < y2):
        raise row.error(
            field,
            text,
            "x1 < x2 and y1 < y2 (top-left then bottom-right, in pixels)",
            note="the box is inverted or empty",
            reason="bbox_inverted",
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


# --- image paths -------------------------------------------------------------------------------

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
        raise row.error(field, relative, expected, reason="bad_path")
    if relative.startswith("/") or _DRIVE_OR_SCHEME.match(relative):
        raise row.error(field, relative, expected, note="absolute path", reason="path_outside_root")
    if ".." in relative.split("/") or posixpath.normpath(relative).startswith(".."):
        raise row.error(
            field, relative, expected, note="leaves the dataset folder", reason="path_outside_root"
        )
    return epath.Path(root) / relative


def normalize_image_path(relative: str) -> str:
    """The image path as compared for duplicates: ``./a.jpg``, ``a//b.jpg`` and ``a/./b.jpg``
    name the same file as ``a.jpg`` and ``a/b.jpg`` (lexically, ``/`` separators; an empty
    path stays empty)."""
    return posixpath.normpath(relative) if relative else relative
