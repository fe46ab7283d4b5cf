"""What every ``python -m fashion_keras...`` command shares: its parser, with ``--debug``, and
the rule that a known input error ends it with one line.

Known input errors are the ``ValueError`` and ``OSError`` families the library raises for a
user's input (a malformed annotation row ``file:line: field = 'value': expected ...``, a missing
file, a bad flag value, a model that does not fit the data): the command prints ``error: ...``
on stderr and exits with status 1. ``--debug`` shows the traceback instead; any other
exception keeps its traceback.

Every command imports this module before TensorFlow, so a process started as
``python -m fashion_keras.<command>`` gets a quiet start here (TensorFlow's start-up lines once,
no spurious CUDA error on a machine without a GPU driver; see :mod:`serving.startup`). Importing
it anywhere else (a test calling a command's ``main``) changes nothing.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator

from serving import startup

#: Exceptions that mean "the input is wrong", not "the program is wrong".
INPUT_ERRORS = (ValueError, OSError)

startup.prepare_command_process()  # before the command's modules import TensorFlow


def command_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The argument parser of a ``python -m`` command (its description kept as written), with
    ``--debug``."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="Show the full traceback of an input error (default: one line).",
    )
    return parser


@contextlib.contextmanager
def input_errors(debug: bool = False) -> Iterator[None]:
    """Ends the command with ``error: <message>`` (exit status 1) on a known input error,
    unless ``debug``."""
    try:
        yield
    except INPUT_ERRORS as e:
        if debug:
            raise
        raise SystemExit(f"error: {e}") from None  # Python prints it on stderr, status 1
