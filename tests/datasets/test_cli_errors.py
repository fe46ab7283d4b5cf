"""Errors in the user's files read as errors under absl apps (the stock ``tfds build``): the
message alone, exit status 1; an unexpected error keeps its traceback."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import pytest

from fashion_keras_datasets.common.errors import AnnotationError, MissingFilesError
from fashion_keras_datasets.custom_csv import custom_csv_dataset_builder as ccb

ROOT = pathlib.Path(__file__).resolve().parents[2]
TFDS = pathlib.Path(sys.executable).with_name("tfds")
DUMMY = pathlib.Path(ccb.__file__).parent / "dummy_data"


def run(args, cwd=ROOT, timeout=300) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def last_line(text: str) -> str:
    return text.rstrip("\n").splitlines()[-1]


def test_tfds_build_prints_an_annotation_error_as_one_line(tmp_path):
    manual = tmp_path / "manual"
    shutil.copytree(DUMMY, manual)
    csv = manual / "labels.csv"
    csv.write_bytes(csv.read_bytes() + b"images/x.jpg,long,black,,,,,train,\r\n")
    result = run(
        [str(TFDS), "build", "datasets/custom_csv", "--manual_dir", str(manual),
         "--data_dir", str(tmp_path / "tfds"), "--config", "example"]
    )  # fmt: skip
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert last_line(result.stderr) == (
        f"{csv}:16: sleeve = 'long': expected one of "
        "['long_sleeve', 'short_sleeve', 'sleeveless'] or empty (unlabelled)"
    )


SCRIPT = """
import sys
from absl import app
from fashion_keras_datasets.common import errors

def main(argv):
    if argv[1] == "missing":
        raise errors.MissingFilesError("demo", "/nowhere", ["Anno/a.txt", "img/"])
    raise RuntimeError("a bug")

app.run(main)
"""


def test_absl_apps_print_input_errors_alone_and_keep_tracebacks_for_bugs(tmp_path):
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(SCRIPT))
    missing = run([sys.executable, str(script), "missing"], cwd=tmp_path, timeout=60)
    assert missing.returncode == 1
    assert "Traceback" not in missing.stderr
    expected = MissingFilesError("demo", "/nowhere", ["Anno/a.txt", "img/"])
    assert missing.stderr.endswith(f"{expected}\n"), missing.stderr
    bug = run([sys.executable, str(script), "bug"], cwd=tmp_path, timeout=60)
    assert bug.returncode == 1
    assert "Traceback" in bug.stderr and last_line(bug.stderr) == "RuntimeError: a bug"


def test_library_callers_still_get_the_exception():
    hook = sys.excepthook
    with pytest.raises(AnnotationError):
        raise AnnotationError("a.csv", 2, "f", "v", "w")
    assert sys.excepthook is hook
