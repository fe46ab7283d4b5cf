"""The errors of the dataset builders, and the reasons rows are skipped.

A structural problem in an annotation file raises :class:`AnnotationError`, whose message names
the file, the 1-based line, the field, the offending value and what was expected; required files
absent from the manual folder raise one :class:`MissingFilesError` listing all of them; a
training split left without a usable row raises :class:`EmptySplitError`. An unusable image
raises :class:`ImageProblem`, which the builders count as a skipped row.

The first three are :class:`InputError` s: problems in the user's files, not in the code. Under
an absl app (the stock ``tfds build`` CLI) an uncaught one prints its message alone, without a
traceback, and the program exits with status 1 (:class:`InputErrorHandler`, installed when this
module is imported); library callers get the exception as usual.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from absl import app
from etils import epath

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


class InputError(Exception):
    """A problem in the user's files (see the module docstring): its message says it all."""


class AnnotationError(InputError, ValueError):
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


class MissingFilesError(InputError, FileNotFoundError):
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


class EmptySplitError(InputError, FileNotFoundError):
    """The training split has no usable row: none in its files, or every one was skipped.

    The message reads ``<files>: train split = '0 of N rows kept': expected ...``.
    """

    def __init__(
        self,
        files: Sequence[str],
        split: str,
        rows: int,
        skipped: Mapping[str, int],
        hint: str = "",
    ) -> None:
        self.files = list(files)
        self.split = split
        self.rows = rows
        self.skipped = dict(skipped)
        self.hint = hint
        where = ", ".join(self.files) or "(no annotation file)"
        if rows:
            counts = ", ".join(f"{k}: {v}" for k, v in sorted(self.skipped.items()))
            value = f"0 of {rows} rows kept"
            expected = f"at least one usable row (all {rows} rows were skipped: {counts}"
            expected += f"; {hint})" if hint else ")"
        else:
            value = "0 rows"
            expected = f"at least one row for the {split} split (a training split is required)"
        super().__init__(f"{where}: {split} split = {value!r}: expected {expected}")

    def __reduce__(self):
        return (type(self), (self.files, self.split, self.rows, self.skipped, self.hint))


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


class InputErrorHandler(app.ExceptionHandler):
    """Under ``absl.app.run``: an uncaught :class:`InputError` prints its message alone.

    absl calls :meth:`handle` just before it re-raises the exception (and logs any exception
    :meth:`handle` raises, ``SystemExit`` included, with a traceback), so the handler does not
    exit itself: it has Python's last-resort hook print the message of that very exception
    instead of its traceback. The program then exits with status 1, as for any uncaught error.
    """

    def wants(self, exception: BaseException) -> bool:
        return isinstance(exception, InputError)

    def handle(self, exception: BaseException) -> None:
        previous = sys.excepthook

        def print_message(kind, value, traceback) -> None:
            if value is exception:
                print(value, file=sys.stderr)
            else:
                previous(kind, value, traceback)

        sys.excepthook = print_message


def install_input_error_handler() -> None:
    """Installs one :class:`InputErrorHandler` in absl (a no-op outside ``absl.app.run``)."""
    if not any(isinstance(h, InputErrorHandler) for h in app.EXCEPTION_HANDLERS):
        app.install_exception_handler(InputErrorHandler())


install_input_error_handler()
