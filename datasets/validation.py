"""Shared row validation for every dataset builder, with one error type and one report format.

Policy (the same for all builders):

- A *structural* problem in an annotation row (wrong column count, unknown task or class, a
  malformed label string, a value that is not an integer, an inverted bbox, an image path that
  leaves the dataset folder) raises :class:`AnnotationError`, whose message names the file, the
  1-based line, the field, the offending value and what was expected. With ``skip_bad_rows``
  (:class:`RowPolicy`, a field of :class:`ValidatingConfig`) the row is skipped instead and
  counted as ``bad_row:<reason>``.
- An unusable *image* is not an error: the row is skipped and counted in a :class:`SkipReport`
  (reason, count, the first few ``file:line`` examples): missing, empty, undecodable, over the
  pixel cap (decompression bombs, checked before decoding) or under the minimum side (1x1).
  Images that TensorFlow's JPEG decoder cannot read as they are (PNG, 16-bit PNG, GIF, BMP,
  WebP, CMYK JPEG) are converted to RGB JPEG (:func:`prepare_image`) and counted as adjusted.
- Byte-identical images (md5) in two splits stay in the first split (train before val before
  test) and are skipped from the later, evaluation split (:class:`CrossSplitDuplicates`).
- Rows kept but changed (a bbox clamped to the image, an image re-encoded) are counted in the same
  report under ``adjusted``.
- Each split's :class:`SkipReport` is logged at its end; the :class:`BuildReport` (all splits,
  rows per annotation file, ``rows_in == rows_written + rows_reported``) is stored in the
  dataset's ``info.metadata["report"]``, so a skip is never silent.

Files are read through ``etils.epath`` so builders also work on GCS paths.
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import hashlib
import io
import posixpath
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import tensorflow_datasets.public_api as tfds
from absl import logging
from etils import epath

__all__ = [
    "AnnotationError",
    "BuildReport",
    "CrossSplitDuplicates",
    "ImageInfo",
    "ImageLimits",
    "ImageProblem",
    "MissingFilesError",
    "PreparedImage",
    "Row",
    "RowPolicy",
    "SkipBadRowsConfigs",
    "SkipReport",
    "ValidatingConfig",
    "check_image",
    "check_image_bytes",
    "check_row_counts",
    "describe_dir",
    "expect_num_fields",
    "file_md5",
    "find_missing",
    "format_build_report",
    "format_split_report",
    "hash_bucket",
    "hash_files",
    "normalize_bbox",
    "parse_bbox",
    "parse_int",
    "parse_label_string",
    "parse_one_hot_groups",
    "prepare_image",
    "read_counted_rows",
    "read_csv_rows",
    "read_image",
    "read_rows",
    "resolve_image_path",
    "skip_bad_rows_variant",
    "to_jpeg",
    "to_rgb",
]

# Reasons used by the image checks (SkipReport keys).
MISSING_IMAGE = "missing_image"
UNREADABLE_IMAGE = "unreadable_image"
EMPTY_IMAGE = "empty_image"
IMAGE_TOO_LARGE = "image_too_large"
IMAGE_TOO_SMALL = "image_too_small"
# Other SkipReport keys shared by the builders.
BBOX_OUTSIDE_IMAGE = "bbox_outside_image"
BBOX_CLAMPED = "bbox_clamped"
REENCODED_TO_JPEG = "reencoded_to_jpeg"
DUPLICATE_ACROSS_SPLITS = "duplicate_across_splits"
BAD_ROW_PREFIX = "bad_row:"  # + AnnotationError.reason, for rows skipped by --skip-bad-rows

#: Default image limits: 40 megapixels (a decompression-bomb guard far above any garment
#: photo) and a shorter side of at least 8 pixels (1x1 "images" carry nothing).
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
DEFAULT_MIN_IMAGE_SIDE = 8
JPEG_REENCODE_QUALITY = 95


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
        reason: str = "bad_row",
    ) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        self.value = value
        self.expected = expected
        self.note = note
        self.reason = reason  # a short slug; skipped rows are counted as ``bad_row:<reason>``
        where = self.path if line is None else f"{self.path}:{line}"
        message = f"{where}: {field} = {value!r}: expected {expected}"
        if note:
            message += f" ({note})"
        super().__init__(message)

    def __reduce__(self):  # keep the structured fields when pickled (multiprocessing, Beam)
        return (
            type(self),
            (self.path, self.line, self.field, self.value, self.expected, self.note, self.reason),
        )

    @property
    def where(self) -> str:
        """``file:line`` (or just the file when the line is unknown)."""
        return self.path if self.line is None else f"{self.path}:{self.line}"

    @property
    def detail(self) -> str:
        """The message without the location."""
        text = f"{self.field} = {self.value!r}: expected {self.expected}"
        return f"{text} ({self.note})" if self.note else text


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
        raise row.error(field, relative, expected, reason="bad_path")
    if relative.startswith("/") or _DRIVE_OR_SCHEME.match(relative):
        raise row.error(field, relative, expected, note="absolute path", reason="path_outside_root")
    if ".." in relative.split("/") or posixpath.normpath(relative).startswith(".."):
        raise row.error(
            field, relative, expected, note="leaves the dataset folder", reason="path_outside_root"
        )
    return epath.Path(root) / relative


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """What the image header says."""

    width: int
    height: int
    format: str  # PIL format name, e.g. "JPEG", "PNG"
    mode: str  # PIL mode, e.g. "RGB", "L", "CMYK"


@dataclasses.dataclass(frozen=True)
class ImageLimits:
    """Size limits an image must meet (checked from the header, before decoding)."""

    #: Images with more pixels are skipped (``image_too_large``): decompression bombs.
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    #: Images whose shorter side is below this are skipped (``image_too_small``), e.g. 1x1.
    min_side: int = DEFAULT_MIN_IMAGE_SIDE


def read_image(
    path: str | epath.PathLike, *, decode: bool = True, limits: ImageLimits | None = None
) -> tuple[bytes, ImageInfo]:
    """Reads an image's bytes once and checks them with PIL.

    Args:
      path: the image file.
      decode: also decode the pixels, which catches truncated or corrupt files whose header is
        fine (JPEGs are decoded at reduced scale, which still reads every byte).
      limits: size limits checked from the header (default :class:`ImageLimits`).

    Returns:
      The file's bytes, unchanged, and its :class:`ImageInfo`.

    Raises:
      ImageProblem: ``missing_image``, ``empty_image``, ``unreadable_image``,
        ``image_too_large`` or ``image_too_small``.
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
    return data, check_image_bytes(data, p, decode=decode, limits=limits)


def check_image(
    path: str | epath.PathLike, *, decode: bool = True, limits: ImageLimits | None = None
) -> ImageInfo:
    """Checks that ``path`` is a readable image and returns its size (see :func:`read_image`)."""
    return read_image(path, decode=decode, limits=limits)[1]


def check_image_bytes(
    data: bytes,
    path: str | epath.PathLike = "<bytes>",
    *,
    decode: bool = True,
    limits: ImageLimits | None = None,
) -> ImageInfo:
    """Checks encoded image bytes with PIL; raises :class:`ImageProblem` if unusable.

    The size limits are checked from the header, so an oversized image is never decoded.
    """
    from PIL import Image, UnidentifiedImageError

    limits = limits or ImageLimits()
    if not data:
        raise ImageProblem(EMPTY_IMAGE, path, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise ImageProblem(IMAGE_TOO_LARGE, path, f"{e}") from None
    except UnidentifiedImageError:
        raise ImageProblem(UNREADABLE_IMAGE, path, "not a recognised image format") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageProblem(UNREADABLE_IMAGE, path, f"cannot decode: {e}") from None
    with img:
        info = ImageInfo(int(img.width), int(img.height), str(img.format), str(img.mode))
        if info.width <= 0 or info.height <= 0:
            raise ImageProblem(UNREADABLE_IMAGE, path, f"image size {img.size}")
        if info.width * info.height > limits.max_pixels:
            raise ImageProblem(
                IMAGE_TOO_LARGE,
                path,
                f"{info.width}x{info.height} = {info.width * info.height} pixels, over the cap "
                f"of {limits.max_pixels} (possible decompression bomb)",
            )
        if min(info.width, info.height) < limits.min_side:
            raise ImageProblem(
                IMAGE_TOO_SMALL,
                path,
                f"{info.width}x{info.height} pixels, a side below {limits.min_side}",
            )
        if decode:
            try:
                if info.format == "JPEG":
                    img.draft(img.mode, (max(1, img.width // 8), max(1, img.height // 8)))
                img.load()
            except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
                raise ImageProblem(UNREADABLE_IMAGE, path, f"cannot decode: {e}") from None
    return info


@dataclasses.dataclass(frozen=True)
class PreparedImage:
    """An image ready to store: JPEG bytes TensorFlow decodes to RGB."""

    data: bytes  # the original bytes when already an RGB/grayscale JPEG, else a re-encoding
    info: ImageInfo  # of the original file
    md5: str  # of the original file's bytes
    reencoded: bool


def prepare_image(path: str | epath.PathLike, limits: ImageLimits | None = None) -> PreparedImage:
    """Reads, checks and (only when needed) converts an image for a ``jpeg`` TFDS Image feature.

    RGB and grayscale JPEGs are kept byte for byte. Anything else is converted to an RGB JPEG:
    PNG (including 16-bit and transparent ones), GIF (first frame), BMP, WebP, TIFF, and CMYK
    or YCCK JPEGs (which ``tf.io.decode_jpeg`` cannot read).

    Raises:
      ImageProblem: see :func:`read_image`.
    """
    data, info = read_image(path, limits=limits)
    md5 = hashlib.md5(data).hexdigest()
    if info.format == "JPEG" and info.mode in ("RGB", "L"):
        return PreparedImage(data, info, md5, reencoded=False)
    try:
        jpeg = to_jpeg(data)
    except (OSError, ValueError) as e:
        raise ImageProblem(UNREADABLE_IMAGE, path, f"cannot convert to JPEG: {e}") from None
    return PreparedImage(jpeg, info, md5, reencoded=True)


def to_rgb(img: Any) -> Any:
    """A PIL image in any mode as 8-bit RGB: 16/32-bit values rescaled (not clipped), alpha
    composited on white, palettes and CMYK converted."""
    import numpy as np
    from PIL import Image

    mode = img.mode
    if mode.startswith("I") or mode == "F":  # 16/32-bit integer or float grayscale
        a = np.asarray(img, dtype=np.float64)
        if mode.startswith("I;16") or (mode == "I" and a.max(initial=0) <= 65535):
            a = a / 257.0  # 0..65535 -> 0..255
        elif mode == "I":
            a = a / max(1.0, a.max(initial=0)) * 255.0
        gray = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if mode == "P":
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def to_jpeg(data: bytes, quality: int = JPEG_REENCODE_QUALITY) -> bytes:
    """Re-encodes any image PIL reads (first frame) as an RGB JPEG."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img.seek(0)
        out = io.BytesIO()
        to_rgb(img).save(out, format="JPEG", quality=quality)
    return out.getvalue()


def file_md5(path: str | epath.PathLike) -> str | None:
    """The md5 of a file's bytes, or None when it cannot be read (reported later)."""
    try:
        return hashlib.md5(epath.Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def hash_files(paths: Iterable[epath.Path], workers: int = 8) -> dict[str, str | None]:
    """``{str(path): md5 or None}`` for every distinct path, read in parallel threads."""
    unique = sorted({str(p) for p in paths})
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip(unique, pool.map(file_md5, unique), strict=True))


def hash_bucket(text: str, buckets: int = 100) -> int:
    """A stable bucket in ``[0, buckets)`` for ``text`` (e.g. an image path -> val or train)."""
    return int(hashlib.md5(text.encode("utf-8")).hexdigest(), 16) % buckets


# --- duplicates across splits -------------------------------------------------------------------


class CrossSplitDuplicates:
    """Finds byte-identical images (same md5) in more than one split.

    Splits are ranked by ``order`` (training first, then the evaluation splits): an image is
    kept in the first split it appears in and every row of a later split that holds the same
    bytes is a duplicate, so no evaluation split holds an image seen in training.
    """

    def __init__(self, order: Sequence[str]) -> None:
        self.order = tuple(order)
        self._first: dict[str, tuple[int, str]] = {}  # md5 -> (rank, where)
        self._rows: list[tuple[int, str, Any, str]] = []

    def add(self, split: str, key: Any, md5: str | None, where: str) -> None:
        """Registers one row (``where`` is its ``file:line``); unreadable images pass None."""
        if md5 is None:
            return
        rank = self.order.index(split) if split in self.order else len(self.order)
        self._rows.append((rank, split, key, md5))
        first = self._first.get(md5)
        if first is None or rank < first[0]:
            self._first[md5] = (rank, where)

    def duplicates(self) -> dict[tuple[str, Any], str]:
        """``{(split, key): where the image appears in an earlier split}``."""
        out = {}
        for rank, split, key, md5 in self._rows:
            first_rank, first_where = self._first[md5]
            if rank > first_rank:
                out[(split, key)] = first_where
        return out


# --- the skip report ----------------------------------------------------------------------------


class SkipReport:
    """Counts the rows of one split: kept, skipped and adjusted by reason, labels per head.

    ``as_dict()`` is the one per-split report format of all builders::

        {"dataset": ..., "split": ..., "rows": total, "kept": n,
         "skipped": {reason: count}, "adjusted": {reason: count},
         "examples": {reason: ["file:line: detail", ...]},
         "heads": {head: {"labelled": n, "classes": {class: n}}}}

    ``rows == kept + sum(skipped.values())``: every row read is either written or reported.
    Skip reasons starting with ``bad_row:`` are annotation problems tolerated by
    ``skip_bad_rows``; the others are image problems and cross-split duplicates.
    """

    def __init__(self, dataset: str, split: str, *, max_examples: int = 5) -> None:
        self.dataset = dataset
        self.split = split
        self.max_examples = max_examples
        self.num_kept = 0
        self.skipped: dict[str, int] = {}
        self.adjusted: dict[str, int] = {}
        self.examples: dict[str, list[str]] = {}
        self.heads: dict[str, dict[str, int]] = {}

    def _example(self, reason: str, where: str, detail: str) -> None:
        ex = self.examples.setdefault(reason, [])
        if len(ex) < self.max_examples:
            ex.append(f"{where}: {detail}" if detail else where)

    def keep(self, labels: Mapping[str, str | None] | None = None) -> None:
        """Counts one row that was kept, with its class name per head (None: unlabelled)."""
        self.num_kept += 1
        for head, name in (labels or {}).items():
            counts = self.heads.setdefault(head, {})
            if name is not None:
                counts[name] = counts.get(name, 0) + 1

    def declare_heads(self, heads: Mapping[str, Sequence[str]]) -> None:
        """Lists every head and class up front, so unlabelled ones show up with count 0."""
        for head, classes in heads.items():
            counts = self.heads.setdefault(head, {})
            for c in classes:
                counts.setdefault(c, 0)

    def skip(self, reason: str, where: str, detail: str = "") -> None:
        """Counts one skipped row (``where`` is ``file:line``)."""
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        self._example(reason, where, detail)

    def adjust(self, reason: str, where: str, detail: str = "") -> None:
        """Counts one kept row whose data was changed (e.g. a clamped bbox)."""
        self.adjusted[reason] = self.adjusted.get(reason, 0) + 1
        self._example(reason, where, detail)

    def admit_image(
        self,
        where: str,
        name: str,
        path: str | epath.PathLike,
        limits: ImageLimits | None,
        duplicate_of: str | None = None,
    ) -> PreparedImage | None:
        """Checks one row's image: the image to write, or None when the row was skipped.

        A cross-split duplicate (``duplicate_of`` names the first copy) and an image that
        :func:`prepare_image` rejects are counted as skipped; a re-encoded image as adjusted.
        """
        if duplicate_of is not None:
            self.skip(
                DUPLICATE_ACROSS_SPLITS,
                where,
                f"{name} has the same bytes as the image of {duplicate_of}",
            )
            return None
        try:
            image = prepare_image(path, limits)
        except ImageProblem as e:
            self.skip(e.reason, where, f"{e.detail} ({path})")
            return None
        if image.reencoded:
            self.adjust(REENCODED_TO_JPEG, where, f"{image.info.format} {image.info.mode} image")
        return image

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
            "heads": {
                h: {"labelled": sum(c.values()), "classes": dict(c)} for h, c in self.heads.items()
            },
        }

    def format(self) -> str:
        """A human-readable multi-line summary."""
        return format_split_report(self.as_dict())

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


def _counts(d: Mapping[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(d.items()))


def format_split_report(d: Mapping[str, Any], *, classes: bool = False) -> str:
    """Formats one :meth:`SkipReport.as_dict` (also when read back from dataset metadata).

    Args:
      classes: also list the count of every class per head.
    """
    skipped = d.get("skipped", {})
    adjusted = d.get("adjusted", {})
    head = f"{d['dataset']}/{d['split']}: kept {d['kept']} of {d['rows']} rows"
    if skipped:
        head += f"; skipped {sum(skipped.values())} ({_counts(skipped)})"
    else:
        head += "; skipped 0"
    if adjusted:
        head += f"; adjusted {sum(adjusted.values())} ({_counts(adjusted)})"
    lines = [head]
    heads = d.get("heads", {})
    if heads:
        lines.append(
            "  labelled per head: " + ", ".join(f"{h} {c['labelled']}" for h, c in heads.items())
        )
        if classes:
            for h, c in heads.items():
                lines.append(f"    {h}: " + ", ".join(f"{k} {v}" for k, v in c["classes"].items()))
    for reason, examples in sorted(d.get("examples", {}).items()):
        n = skipped.get(reason, 0) + adjusted.get(reason, 0)
        more = f" (first {len(examples)} of {n})" if n > len(examples) else ""
        lines.append(f"  {reason}{more}:")
        lines.extend(f"    {e}" for e in examples)
    return "\n".join(lines)


class BuildReport:
    """The report of one build: a :class:`SkipReport` per split plus where the rows came from.

    ``files`` maps each annotation file that defines rows (``label.csv``, ``question.csv``,
    ``list_eval_partition.txt``, the user CSV, ``<split>.txt``) to its number of data rows.
    Every such row lands in exactly one split report, as kept (written) or skipped (reported),
    so ``rows_in == rows_written + rows_reported``; :meth:`check_totals` enforces it once every
    split is generated. ``notes`` holds file-level problems tolerated by ``skip_bad_rows``
    (e.g. a wrong count line) and rows of secondary files that belong to no image.
    """

    def __init__(self, dataset: str, config: str | None = None, *, max_examples: int = 5):
        self.dataset = dataset
        self.config = config
        self.max_examples = max_examples
        self.splits: dict[str, SkipReport] = {}
        self.files: dict[str, int] = {}
        self.notes: list[str] = []
        self.finished: set[str] = set()

    def split(self, name: str) -> SkipReport:
        """The split's report (created on first use)."""
        if name not in self.splits:
            self.splits[name] = SkipReport(self.dataset, name, max_examples=self.max_examples)
        return self.splits[name]

    def add_file(self, path: str | epath.PathLike, rows: int) -> None:
        """Records an annotation file whose ``rows`` data rows are rows of the dataset."""
        self.files[str(path)] = self.files.get(str(path), 0) + rows

    def note(self, text: str) -> None:
        self.notes.append(text)

    @property
    def rows_in(self) -> int:
        return sum(self.files.values())

    @property
    def rows_written(self) -> int:
        return sum(r.num_kept for r in self.splits.values())

    @property
    def rows_reported(self) -> int:
        return sum(r.num_skipped for r in self.splits.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "config": self.config,
            "files": dict(self.files),
            "rows_in": self.rows_in,
            "rows_written": self.rows_written,
            "rows_reported": self.rows_reported,
            "splits": {name: r.as_dict() for name, r in self.splits.items()},
            "notes": list(self.notes),
        }

    def format(self, *, classes: bool = False) -> str:
        return format_build_report(self.as_dict(), classes=classes)

    def finish_split(self, name: str, metadata: Any = None) -> dict[str, Any]:
        """Logs the split's summary, stores the whole report in ``metadata["report"]`` (the
        dataset's ``info.metadata``) and, once every split is done, checks the totals."""
        report = self.split(name)
        report.log()
        self.finished.add(name)
        if self.finished >= set(self.splits):
            self.check_totals()
        summary = self.as_dict()
        if metadata is not None:
            metadata["report"] = summary
        return summary

    def check_totals(self) -> None:
        """Raises ``RuntimeError`` unless rows in == rows written + rows reported."""
        if self.rows_in != self.rows_written + self.rows_reported:
            raise RuntimeError(
                f"{self.dataset}: {self.rows_in} rows read from {sorted(self.files)} but "
                f"{self.rows_written} written + {self.rows_reported} reported; rows were lost"
            )


def format_build_report(d: Mapping[str, Any], *, classes: bool = False) -> str:
    """Formats a :meth:`BuildReport.as_dict` (e.g. ``builder.info.metadata["report"]``)."""
    name = d["dataset"] + (f"/{d['config']}" if d.get("config") else "")
    lines = [
        f"{name}: {d['rows_in']} rows in = {d['rows_written']} written + "
        f"{d['rows_reported']} reported"
    ]
    for path, n in d.get("files", {}).items():
        lines.append(f"  {path}: {n} rows")
    for split in d.get("splits", {}).values():
        lines.append(format_split_report(split, classes=classes))
    for note in d.get("notes", []):
        lines.append(f"  note: {note}")
    return "\n".join(lines)


# --- the bad-row policy and the shared builder config ------------------------------------------


class RowPolicy:
    """What to do with a malformed annotation row: raise (default) or skip and count it."""

    def __init__(self, skip_bad_rows: bool = False) -> None:
        self.skip_bad_rows = skip_bad_rows

    def bad_row(self, error: AnnotationError, report: SkipReport) -> None:
        """Raises ``error``, or (``skip_bad_rows``) counts the row as ``bad_row:<reason>``."""
        if not self.skip_bad_rows:
            raise error
        report.skip(BAD_ROW_PREFIX + error.reason, error.where, error.detail)

    def file_problem(self, error: AnnotationError, report: BuildReport) -> None:
        """A file-level problem (not one row): raises, or notes it in the build report."""
        if not self.skip_bad_rows:
            raise error
        logging.warning("skip_bad_rows: tolerating %s", error)
        report.note(str(error))


@dataclasses.dataclass(eq=False)
class ValidatingConfig(tfds.core.BuilderConfig):
    """Builder options shared by every builder here (fields of its ``BuilderConfig``).

    Attributes:
      skip_bad_rows: skip and report malformed annotation rows instead of stopping the build.
        A config named ``<config>_skip_bad_rows`` is ``<config>`` with this set (see
        :class:`SkipBadRowsConfigs`): ``tfds build ... --config m_half_skip_bad_rows``.
      max_image_pixels, min_image_side: see :class:`ImageLimits`.
    """

    skip_bad_rows: bool = False
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    min_image_side: int = DEFAULT_MIN_IMAGE_SIDE

    @property
    def image_limits(self) -> ImageLimits:
        return ImageLimits(self.max_image_pixels, self.min_image_side)

    @property
    def policy(self) -> RowPolicy:
        return RowPolicy(self.skip_bad_rows)


SKIP_BAD_ROWS_SUFFIX = "_skip_bad_rows"


def skip_bad_rows_variant(config: ValidatingConfig) -> ValidatingConfig:
    """``config`` with ``skip_bad_rows`` set, named ``<name>_skip_bad_rows``."""
    if config.skip_bad_rows:
        return config
    return dataclasses.replace(config, name=config.name + SKIP_BAD_ROWS_SUFFIX, skip_bad_rows=True)


class SkipBadRowsConfigs:
    """Builder mixin: ``<config>_skip_bad_rows`` names the lenient variant of every predefined
    config, so the stock CLI reaches it: ``tfds build <folder> --config <config>_skip_bad_rows``.
    """

    _variants: dict[tuple[type, str], ValidatingConfig] = {}

    @classmethod
    def get_builder_config(cls, name: str, version: Any = None) -> Any:
        config = super().get_builder_config(name, version)  # type: ignore[misc]
        if config is None and name.endswith(SKIP_BAD_ROWS_SUFFIX):
            base = super().get_builder_config(  # type: ignore[misc]
                name[: -len(SKIP_BAD_ROWS_SUFFIX)], version
            )
            if isinstance(base, ValidatingConfig) and not base.skip_bad_rows:
                key = (cls, name)
                if key not in SkipBadRowsConfigs._variants:
                    SkipBadRowsConfigs._variants[key] = skip_bad_rows_variant(base)
                config = SkipBadRowsConfigs._variants[key]
        return config
