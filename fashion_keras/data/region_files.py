"""Region files: one pixel box per image and region, from our keypoint model or any detector.

A region file is a CSV with the header ``image,region,x1,y1,x2,y2`` and an optional ``score``
column::

    image,region,x1,y1,x2,y2,score
    img/Dress/x.jpg,collar,120,40,260,150,0.93
    img/Dress/x.jpg,lower,80,300,330,620,

``image`` is the image path as the dataset names it (its ``image/filename`` feature), compared
after :func:`~fashion_keras_datasets.common.rows.normalize_image_path` (``./a.jpg`` is
``a.jpg``); ``region`` is one of the region names the caller allows; ``x1, y1, x2, y2`` is the
box in the photo's pixels (top-left, then the exclusive bottom-right edges; floats allowed);
``score`` is a confidence in [0, 1], or empty.

:func:`read_region_file` checks every row: a malformed one raises the project's
``file:line: field = 'value': expected ...`` :class:`AnnotationError`, or with
``skip_bad_rows`` is skipped and counted by reason. When the photo sizes are known, a box
reaching outside its photo is clamped (and counted) and one wholly outside is a bad row.
:func:`write_region_file` writes the same format atomically; :func:`append_region_rows` appends
rows to one (with the score column) so that the file is valid at every moment.

:mod:`fashion_keras.data.region_lookup` joins a ``tf.data`` dataset with a region file.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from etils import epath

from fashion_keras_datasets.common.errors import (
    BAD_ROW_PREFIX,
    BBOX_CLAMPED,
    AnnotationError,
)
from fashion_keras_datasets.common.rows import (
    Row,
    check_header,
    normalize_image_path,
    parse_number,
    read_csv_rows,
)

#: The columns of a region file; ``score`` is optional.
COLUMNS = ("image", "region", "x1", "y1", "x2", "y2")
SCORE_COLUMN = "score"
_WHAT = "image,region,x1,y1,x2,y2[,score]"
#: Separates image path and region in the lookup table's keys (region names never hold it).
KEY_SEPARATOR = "|"


class RegionBox(NamedTuple):
    """One row's box in photo pixels (``x2``/``y2`` exclusive) and its score (None: none)."""

    x1: float
    y1: float
    x2: float
    y2: float
    score: float | None = None


@dataclasses.dataclass(frozen=True)
class RegionFile:
    """The boxes of a region file, keyed by ``(normalised image path, region)``.

    Attributes:
      path: the file read.
      regions: the region names allowed in it.
      boxes: ``{(image, region): RegionBox}`` in file order.
      rows: the data rows read (kept or skipped).
      skipped: rows skipped by ``skip_bad_rows``, ``{"bad_row:<reason>": count}``.
      clamped: kept boxes clamped to their photo.
      examples: the first few skipped and clamped rows, ``file:line: detail``.
    """

    path: str
    regions: tuple[str, ...]
    boxes: Mapping[tuple[str, str], RegionBox]
    rows: int = 0
    skipped: Mapping[str, int] = dataclasses.field(default_factory=dict)
    clamped: int = 0
    examples: tuple[str, ...] = ()

    def box(self, image: str, region: str) -> RegionBox | None:
        """The box of ``image`` (any spelling of its path) for ``region``, or None."""
        check_region_names([region], self.regions, "region")
        return self.boxes.get((normalize_image_path(image), region))

    @property
    def num_skipped(self) -> int:
        return sum(self.skipped.values())

    def format(self) -> str:
        """One summary line plus the example rows (for logs)."""
        line = f"{self.path}: kept {len(self.boxes)} of {self.rows} rows"
        if self.skipped:
            counts = ", ".join(f"{k}: {v}" for k, v in sorted(self.skipped.items()))
            line += f"; skipped {self.num_skipped} ({counts})"
        else:
            line += "; skipped 0"
        line += f"; clamped {self.clamped}"
        return "\n".join([line, *(f"  {e}" for e in self.examples)])


# --- reading -----------------------------------------------------------------------------------


def read_region_file(
    path: str | os.PathLike,
    regions: Sequence[str],
    image_sizes: Mapping[str, tuple[int, int]] | None = None,
    skip_bad_rows: bool = False,
    *,
    max_examples: int = 5,
) -> RegionFile:
    """Reads and checks a region file (see the module docstring).

    Args:
      path: the CSV.
      regions: the region names a row may use.
      image_sizes: ``{image path: (width, height)}`` of the photos, where known: boxes reaching
        outside their photo are clamped, boxes wholly outside it are bad rows.
      skip_bad_rows: skip and count malformed rows instead of raising.
      max_examples: how many skipped/clamped rows :attr:`RegionFile.examples` keeps.

    Raises:
      AnnotationError: a bad header, or (without ``skip_bad_rows``) the first malformed row.
    """
    regions = check_region_names(regions, None, "regions")
    sizes = {normalize_image_path(k): v for k, v in (image_sizes or {}).items()}
    header, rows = read_csv_rows(path, header=True)
    assert header is not None
    with_score = len(header) > len(COLUMNS)
    check_header(path, header, (*COLUMNS, SCORE_COLUMN) if with_score else COLUMNS, _WHAT)
    num_columns = len(header)

    boxes: dict[tuple[str, str], RegionBox] = {}
    first_line: dict[tuple[str, str], int] = {}
    skipped: dict[str, int] = {}
    examples: list[str] = []
    clamped = 0
    for row in rows:
        try:
            image, region, box = _parse_row(row, num_columns, regions)
            key = (image, region)
            if key in first_line:
                raise row.error(
                    "(image, region)",
                    f"{image},{region}",
                    "one row per image and region",
                    note=f"line {first_line[key]} already has this image's {region!r} box",
                    reason="duplicate_row",
                )
            size = sizes.get(image)
            if size is not None:
                box, was_clamped = _clamp(row, box, size)
                if was_clamped:
                    clamped += 1
                    if len(examples) < max_examples:
                        examples.append(
                            f"{row.where}: {BBOX_CLAMPED}: box {_box_text(row)} clamped to the "
                            f"{size[0]}x{size[1]} photo"
                        )
        except AnnotationError as e:
            if not skip_bad_rows:
                raise
            reason = BAD_ROW_PREFIX + e.reason
            skipped[reason] = skipped.get(reason, 0) + 1
            if len(examples) < max_examples:
                examples.append(f"{e.where}: {reason}: {e.detail}")
            continue
        boxes[key] = box
        first_line[key] = row.line
    return RegionFile(
        path=str(path),
        regions=regions,
        boxes=boxes,
        rows=len(rows),
        skipped=skipped,
        clamped=clamped,
        examples=tuple(examples),
    )


def check_region_names(
    names: Iterable[str], allowed: Sequence[str] | None, what: str
) -> tuple[str, ...]:
    """``names`` as a tuple after checking them (against ``allowed`` when given)."""
    out = tuple(names)
    for name in out:
        if not isinstance(name, str) or not name or KEY_SEPARATOR in name or "," in name:
            raise ValueError(
                f"{what}: region name {name!r}: expected a non-empty name without ',' or '|'"
            )
        if allowed is not None and name not in allowed:
            raise ValueError(f"{what}: unknown region {name!r}; expected one of {list(allowed)}")
    if len(set(out)) != len(out):
        raise ValueError(f"{what}: region names {list(out)} repeat a name")
    return out


def _parse_row(row: Row, num_columns: int, regions: Sequence[str]) -> tuple[str, str, RegionBox]:
    """A data row's normalised image path, region and box (not yet clamped)."""
    if not row.fields:
        raise row.error("row", "", "a non-empty row", note="blank line", reason="blank_line")
    if len(row.fields) != num_columns:
        raise row.error(
            "number of columns",
            len(row.fields),
            f"{num_columns} ({','.join(_header_names(num_columns))}, as in the header)",
            reason="wrong_column_count",
        )
    image = normalize_image_path(row.fields[0])
    if not image or image == ".":
        raise row.error(
            "image",
            row.fields[0],
            "the image path as the dataset names it (image/filename)",
            reason="bad_path",
        )
    region = row.fields[1]
    if region not in regions:
        raise row.error("region", region, f"one of {list(regions)}", reason="unknown_region")
    x1, y1, x2, y2 = (
        parse_number(row, i, COLUMNS[i], "a finite number (pixels)") for i in range(2, 6)
    )
    for low, high, lo_name, hi_name in ((x1, x2, "x1", "x2"), (y1, y2, "y1", "y2")):
        if not high > low:
            col = COLUMNS.index(hi_name)
            raise row.error(
                hi_name,
                row.fields[col],
                f"a number > {lo_name} = {low:g} (the box's exclusive far edge, in pixels)",
                note="the box is inverted or empty",
                reason="bbox_inverted",
            )
    score = None
    if num_columns > len(COLUMNS) and row.fields[6] != "":
        token = row.fields[6]
        try:
            score = float(token)
        except ValueError:
            score = math.nan
        if not 0.0 <= score <= 1.0:
            raise row.error(
                SCORE_COLUMN, token, "a number in [0, 1] or an empty cell", reason="bad_score"
            )
    return image, region, RegionBox(x1, y1, x2, y2, score)


def _header_names(num_columns: int) -> tuple[str, ...]:
    return (*COLUMNS, SCORE_COLUMN)[:num_columns]


def _box_text(row: Row) -> str:
    return ",".join(row.fields[2:6])


def _clamp(row: Row, box: RegionBox, size: tuple[int, int]) -> tuple[RegionBox, bool]:
    """``box`` clamped to a ``(width, height)`` photo, and whether that changed it."""
    width, height = size
    x1, x2 = (min(float(width), max(0.0, v)) for v in (box.x1, box.x2))
    y1, y2 = (min(float(height), max(0.0, v)) for v in (box.y1, box.y2))
    if not (x1 < x2 and y1 < y2):
        raise row.error(
            "x1,y1,x2,y2",
            _box_text(row),
            f"a box overlapping its {width}x{height} photo (x in [0, {width}], y in [0, {height}])",
            note="the box lies wholly outside the photo",
            reason="bbox_outside_image",
        )
    out = RegionBox(x1, y1, x2, y2, box.score)
    return out, out != box


# --- writing -----------------------------------------------------------------------------------


RegionRows = RegionFile | Mapping[tuple[str, str], Sequence[Any]] | Iterable[Sequence[Any]]


def write_region_file(path: str | os.PathLike, rows: RegionRows) -> str:
    """Writes a region file at ``path`` atomically (via a temporary file); returns the path.

    Args:
      rows: a :class:`RegionFile`, a ``{(image, region): (x1, y1, x2, y2[, score])}`` mapping,
        or ``(image, region, x1, y1, x2, y2[, score])`` rows; a score may be None. The
        ``score`` column is written when any row has a score.

    Raises:
      ValueError: a row :func:`read_region_file` would reject (its index says which), other
        than an unknown region, which the reader judges.
    """
    if isinstance(rows, RegionFile):
        rows = rows.boxes
    if isinstance(rows, Mapping):
        items = [(*key, *value) for key, value in rows.items()]
    else:
        items = [tuple(r) for r in rows]
    checked: list[tuple[str, str, RegionBox]] = []
    seen: set[tuple[str, str]] = set()
    for i, item in enumerate(items):
        checked.append(_check_written_row(i, item, seen))
    with_score = any(box.score is not None for _, _, box in checked)
    header = (*COLUMNS, SCORE_COLUMN) if with_score else COLUMNS
    out = []
    for image, region, box in checked:
        cells = [image, region, *(_format_number(v) for v in box[:4])]
        if with_score:
            cells.append("" if box.score is None else _format_number(box.score))
        out.append(cells)
    return _write_csv_atomically(os.fspath(path), header, out)


def append_region_rows(
    path: str | os.PathLike,
    rows: Iterable[Sequence[Any]],
    seen: set[tuple[str, str]] | None = None,
) -> int:
    """Appends ``(image, region, x1, y1, x2, y2, score)`` rows (a score may be None) to the
    region file at ``path``, which has the ``score`` column; returns the rows written.

    A missing or empty file gets its header first (written atomically). The rows are checked
    as :func:`write_region_file` checks them, then written in one write, flushed and synced, so
    a reader (or an interruption) finds the header and whole rows only; a torn last line that a
    killed process left is dropped before appending.

    Args:
      seen: the ``(image, region)`` keys already in the file; a row repeating one is an error.
        The written rows' keys are added to it.

    Raises:
      ValueError: a bad row (nothing is written), or a file whose header is not
        ``image,region,x1,y1,x2,y2,score``.
    """
    path = os.fspath(path)
    seen = set() if seen is None else seen
    keys = set(seen)
    checked = [_check_written_row(i, tuple(item), keys) for i, item in enumerate(rows)]
    header = ",".join((*COLUMNS, SCORE_COLUMN))
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        _write_csv_atomically(path, header.split(","), [])
    else:
        drop_torn_line(path)
        with open(path, encoding="utf-8-sig", newline="") as f:
            got = f.readline().rstrip("\r\n")
        if got != header:
            raise ValueError(
                f"{path}: header {got!r}: expected {header!r} (a region file with a score "
                "column) to append to; give another path or delete the file"
            )
    if not checked:
        return 0
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for image, region, box in checked:
        score = "" if box.score is None else _format_number(box.score)
        writer.writerow([image, region, *(_format_number(v) for v in box[:4]), score])
    with open(path, "a", encoding="utf-8", newline="") as f:
        f.write(buffer.getvalue())
        f.flush()
        os.fsync(f.fileno())
    seen.update(keys)
    return len(checked)


def drop_torn_line(path: str | os.PathLike) -> bool:
    """Truncates the file at ``path`` after its last newline (the partial line a killed write
    left; the files this module writes end every line with one); returns whether it did.
    :func:`append_region_rows` calls it before appending."""
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return False
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return False
        start = size
        while start > 0:
            step = min(start, 1 << 16)
            start -= step
            f.seek(start)
            cut = f.read(step).rfind(b"\n")
            if cut >= 0:
                f.truncate(start + cut + 1)
                return True
        raise ValueError(
            f"{path}: no complete line (not even the header): expected a region file; "
            "delete it and run again"
        )


def _check_written_row(
    index: int, item: Sequence[Any], seen: set[tuple[str, str]]
) -> tuple[str, str, RegionBox]:
    def bad(expected: str) -> ValueError:
        return ValueError(f"region row {index} = {tuple(item)!r}: expected {expected}")

    if len(item) not in (6, 7):
        raise bad("(image, region, x1, y1, x2, y2[, score])")
    image = normalize_image_path(str(item[0]))
    region = str(item[1])
    if not image or image == ".":
        raise bad("an image path")
    if not region or KEY_SEPARATOR in region:
        raise bad("a region name without '|'")
    try:
        x1, y1, x2, y2 = (float(v) for v in item[2:6])
        score = None if len(item) == 6 or item[6] is None else float(item[6])
    except (TypeError, ValueError):
        raise bad("numbers x1, y1, x2, y2 and a score or None") from None
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)) or not (x1 < x2 and y1 < y2):
        raise bad("finite x1 < x2 and y1 < y2")
    if score is not None and not 0.0 <= score <= 1.0:
        raise bad("a score in [0, 1] or None")
    if (image, region) in seen:
        raise bad(f"one row per image and region ({image!r}, {region!r} repeats)")
    seen.add((image, region))
    return image, region, RegionBox(x1, y1, x2, y2, score)


def _format_number(value: float) -> str:
    """Integral values without ``.0``; others with all the digits that round-trip."""
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _write_csv_atomically(path: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    target = epath.Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = epath.Path(f"{path}.tmp-{os.getpid()}")
    try:
        with tmp.open("w") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)
        tmp.replace(target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
