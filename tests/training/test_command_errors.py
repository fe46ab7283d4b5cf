"""A training command given bad input ends with one line naming the file, line, field and value
(exit status 1); ``--debug`` shows the traceback."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from fashion_keras import train as cli
from fashion_keras_datasets.common.errors import AnnotationError

DUMMY = "datasets/custom_csv/dummy_data"


def _broken_release(tmp_path):
    folder = tmp_path / "shop"
    shutil.copytree(DUMMY, folder)
    labels = folder / "labels.csv"
    text = labels.read_text(encoding="utf-8")
    labels.write_text(text.replace("shirt_001.jpg,long_sleeve,", "shirt_001.jpg,long,"))
    return folder


def _argv(folder, tmp_path):
    return [
        "--dataset", "custom_csv", "--data-dir", str(folder),
        "--heads", str(folder / "heads.yaml"), "--tfds-data-dir", str(tmp_path / "tfds"),
        "--output-dir", str(tmp_path / "run"), "--epochs", "1",
    ]  # fmt: skip


def test_a_bad_annotation_row_is_one_line(tmp_path):
    folder = _broken_release(tmp_path)
    with pytest.raises(SystemExit) as e:
        cli.main(_argv(folder, tmp_path))
    message = str(e.value)
    assert message.startswith(f"error: {folder / 'labels.csv'}:")
    assert "sleeve = 'long'" in message and "\n" not in message
    with pytest.raises(AnnotationError):
        cli.main([*_argv(folder, tmp_path), "--debug"])


@pytest.mark.slow
def test_the_command_prints_no_traceback(tmp_path):
    folder = _broken_release(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "fashion_keras.train", *_argv(folder, tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "sleeve = 'long'" in last


def test_a_view_the_accelerator_cannot_make_stops_before_any_data_is_read(tmp_path, capsys):
    # the flags are checked before any data is read (--data-dir does not exist)
    argv = ["--heads", "deepfashion6", "--augment-on", "accelerator", "--augment-rotation", "5"]
    argv += ["--output-dir", str(tmp_path / "run"), "--data-dir", str(tmp_path / "nowhere")]
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2  # a usage error, as every flag the config refuses
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "error: augment_on = 'accelerator' makes the garment view" in last
    assert "augment_rotation = 5.0" in last and "use augment_on = 'cpu'" in last
