"""A command's quiet start (``serving/startup.py``): TensorFlow's start-up lines once, no
spurious CUDA error, no TFDS config dump, real warnings kept; nothing changes in a process that
merely imports the packages."""

import os
import shutil
import subprocess
import sys

from serving_helpers import WAIT_S, assert_quiet_start, command_env

from serving import CONFIG_DIR, startup

ROOT = os.path.dirname(CONFIG_DIR)
DUMMY = os.path.join(ROOT, "datasets", "custom_csv", "dummy_data")


def test_a_command_prints_each_start_up_line_once_and_keeps_real_warnings(tmp_path):
    """``python -m fashion_keras.data inspect`` imports TensorFlow, creates its context (the
    device listing that calls cuInit) and prepares a custom_csv dataset from a manual folder."""
    shutil.copytree(DUMMY, tmp_path / "shop")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fashion_keras.data",
            "inspect",
            "--dataset",
            "custom_csv",
            "--data-dir",
            str(tmp_path / "shop"),
            "--tfds-data-dir",
            str(tmp_path / "tfds"),
            "--output",
            str(tmp_path / "inspect.png"),
        ],
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        cwd=ROOT,
        env=command_env(),
    )
    assert proc.returncode == 0, proc.stderr
    assert_quiet_start(proc.stderr)
    assert "Using custom data configuration" not in proc.stderr + proc.stdout
    assert "Unknown size" not in proc.stderr + proc.stdout  # nothing is downloaded
    # the dummy release has bad rows: the builder's own warnings still show
    assert "custom_csv/train: kept 8 of 9 rows" in proc.stderr
    assert (tmp_path / "inspect.png").exists()


def test_importing_the_packages_changes_nothing():
    assert startup.command_module() in (None, "pytest")  # this process is not a command
    assert not startup.is_project_command()
    assert startup.prepare_command_process() is False
    assert startup._finder not in sys.meta_path


def test_the_command_is_read_from_the_interpreter_arguments():
    python = "/usr/bin/python3"
    for argv, module in (
        ([python, "-m", "fashion_keras.train", "--epochs", "1"], "fashion_keras.train"),
        ([python, "-X", "importtime", "-u", "-m", "serving.server"], "serving.server"),
        ([python, "-mserving.client", "status"], "serving.client"),
        ([python, "-m", "pytest", "-m", "serving.x"], "pytest"),
        ([python, "script.py", "-m", "fashion_keras.train"], None),
        ([python, "-c", "import x", "-m", "serving.server"], None),
        ([python], None),
    ):
        assert startup.command_module(argv) == module, argv
    assert startup.is_project_command([python, "-m", "fashion_keras.data", "inspect"])
    assert not startup.is_project_command([python, "-m", "fashion_kerasx.train"])


def test_a_deferred_module_is_imported_on_first_use():
    name = "colorsys"  # a stdlib module nothing here imports
    if name in sys.modules:
        del sys.modules[name]
    startup.defer_import(name)
    try:
        import colorsys

        assert isinstance(colorsys, startup._DeferredModule)
        assert "rgb_to_hls" not in vars(colorsys), "not imported yet"
        assert colorsys.rgb_to_hls(1.0, 0.0, 0.0) == (0.0, 0.5, 1.0)
        assert not isinstance(sys.modules[name], startup._DeferredModule)
        assert startup._finder not in sys.meta_path, "the finder leaves once nothing is deferred"
    finally:
        startup._finder.names.discard(name)
        if startup._finder in sys.meta_path:
            sys.meta_path.remove(startup._finder)
        sys.modules.pop(name, None)


def test_only_the_no_driver_cuinit_line_is_dropped():
    text = (
        "I0000 port.cc:153] oneDNN custom operations are on.\n"
        "E0000 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: (303)\n"
        "E0000 other.cc:1] a real error\n"
    )
    assert startup.without_no_driver_error(text) == (
        "I0000 port.cc:153] oneDNN custom operations are on.\nE0000 other.cc:1] a real error\n"
    )
