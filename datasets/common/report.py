"""The build report: kept, skipped and adjusted rows per split, and where the rows came from.

Each split's :class:`SkipReport` is logged at its end; the :class:`BuildReport` (all splits,
rows per annotation file, the splits left empty, ``rows_in == rows_written + rows_reported``) is
stored in the dataset's ``info.metadata["report"]``, so a skip is never silent.
:func:`format_build_report` prints it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from absl import logging
from etils import epath

from fashion_keras_datasets.common.errors import (
    BBOX_CLAMPED,
    BBOX_OUTSIDE_IMAGE,
    DUPLICATE_ACROSS_SPLITS,
    REENCODED_TO_JPEG,
    ImageProblem,
)
from fashion_keras_datasets.common.images import (
    ImageInfo,
    ImageLimits,
    PreparedImage,
    prepare_image,
)
from fashion_keras_datasets.common.rows import normalize_bbox


class SkipReport:
    """Counts the rows of one split: kept, skipped and adjusted by reason, labels per head.

    ``as_dict()`` is the one per-split report format of all builders::

        {"dataset": ..., "split": ..., "rows": total, "kept": n,
         "skipped": {reason: count}, "adjusted": {reason: count},
         "examples": {reason: ["file:line: detail", ...]},
         "heads": {head: {"labelled": n, "classes": {class: n}}},
         "counts": {name: n}}   # only when something was counted with count()

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
        self.counts: dict[str, int] = {}  # facts about kept rows that changed nothing
        self.files: dict[str, None] = {}  # the annotation files of the skipped rows, in order

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
        self.files.setdefault(file_of(where))
        self._example(reason, where, detail)

    def adjust(self, reason: str, where: str, detail: str = "") -> None:
        """Counts one kept row whose data was changed (e.g. a clamped bbox)."""
        self.adjusted[reason] = self.adjusted.get(reason, 0) + 1
        self._example(reason, where, detail)

    def count(self, name: str, where: str = "", detail: str = "") -> None:
        """Counts one kept row under ``name`` (e.g. rows with landmarks); the row's data is not
        changed, so it is neither skipped nor adjusted. With ``where``, keeps it as an example."""
        self.counts[name] = self.counts.get(name, 0) + 1
        if where:
            self._example(name, where, detail)

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

    def admit_box(
        self,
        box: tuple[float, float, float, float],
        info: ImageInfo,
        where: str,
        text: str | None = None,
    ) -> tuple[float, float, float, float] | None:
        """A row's pixel box ``(x1, y1, x2, y2)`` normalised to its image, or None (skipped).

        A box fully outside the image is counted as skipped, one reaching outside it is clamped
        and counted as adjusted; ``text`` is the box as the row wrote it (default: the numbers).
        """
        normalized, clamped = normalize_bbox(box, info.width, info.height)
        if text is None:
            text = " ".join(f"{v:g}" for v in box)
        detail = f"box {text} vs image {info.width}x{info.height}"
        if normalized is None:
            self.skip(BBOX_OUTSIDE_IMAGE, where, detail)
            return None
        if clamped:
            self.adjust(BBOX_CLAMPED, where, detail)
        return normalized

    def merge(self, other: SkipReport) -> None:
        """Adds the counts of ``other`` (the same split, counted apart) to this report."""
        self.num_kept += other.num_kept
        pairs = (
            (self.skipped, other.skipped),
            (self.adjusted, other.adjusted),
            (self.counts, other.counts),
        )
        for counts, more in pairs:
            for reason, n in more.items():
                counts[reason] = counts.get(reason, 0) + n
        for reason, examples in other.examples.items():
            kept = self.examples.setdefault(reason, [])
            kept.extend(examples[: max(0, self.max_examples - len(kept))])
        for head, more in other.heads.items():
            classes = self.heads.setdefault(head, {})
            for name, n in more.items():
                classes[name] = classes.get(name, 0) + n
        self.files.update(other.files)

    @property
    def num_skipped(self) -> int:
        return sum(self.skipped.values())

    @property
    def num_rows(self) -> int:
        return self.num_kept + self.num_skipped

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
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
        if self.counts:
            out["counts"] = dict(sorted(self.counts.items()))
        return out

    def format(self) -> str:
        """A human-readable multi-line summary."""
        return format_split_report(self.as_dict())

    def log(self) -> dict[str, Any]:
        """Logs the summary (a warning when rows were skipped) and returns :meth:`as_dict`."""
        (logging.warning if self.skipped else logging.info)("%s", self.format())
        return self.as_dict()


def file_of(where: str) -> str:
    """The file of a ``file:line`` location (``where`` itself when it has no line)."""
    path, sep, line = where.rpartition(":")
    return path if sep and line.isdigit() else where


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
    counts = d.get("counts", {})
    if counts:
        lines.append(f"  counted: {_counts(counts)}")
    for reason, examples in sorted(d.get("examples", {}).items()):
        n = skipped.get(reason, 0) + adjusted.get(reason, 0) + counts.get(reason, 0)
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
    ``empty_splits`` lists the splits that kept no row and are therefore not written (an empty
    training split stops the build instead, see :meth:`empty_split`).
    """

    def __init__(self, dataset: str, config: str | None = None, *, max_examples: int = 5):
        self.dataset = dataset
        self.config = config
        self.max_examples = max_examples
        self.splits: dict[str, SkipReport] = {}
        self.files: dict[str, int] = {}
        self.notes: list[str] = []
        self.empty_splits: list[str] = []
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

    def empty_split(self, name: str) -> None:
        """Records that split ``name`` kept no row and is not written, and logs one line why."""
        report = self.split(name)
        if report.num_rows:
            why = f"all {report.num_rows} rows were skipped ({_counts(report.skipped)})"
        else:
            why = "its annotation files list no row"
        line = f"{self.dataset}/{name}: empty, {why}; the split is not written"
        self.empty_splits.append(name)
        logging.warning("%s", line)

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
            "empty_splits": list(self.empty_splits),
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
    for split in d.get("empty_splits", []):
        lines.append(f"  empty split: {split} (no row kept; not written)")
    for note in d.get("notes", []):
        lines.append(f"  note: {note}")
    return "\n".join(lines)
