"""scripts/tfx_root.sh (the Debian 13 root of the TFX tier) stops with a reason, not a
traceback: without root, and without a reachable Debian mirror."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest

SCRIPT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "tfx_root.sh"
)


def _run(args, env_extra, tmp_path, user=None, script=SCRIPT):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "FASHION_KERAS_TFX_MODE": "chroot",
        "FASHION_KERAS_TFX_ROOT": str(tmp_path / "cache" / "root"),
        **env_extra,
    }
    cmd = [script, *args]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def test_help_and_unknown_command(tmp_path):
    out = _run(["--help"], {}, tmp_path)
    assert out.returncode == 0 and "build" in out.stdout and "Debian 13" in out.stdout
    out = _run(["frobnicate"], {}, tmp_path)
    assert out.returncode == 1
    assert "unknown command frobnicate" in out.stderr and "Traceback" not in out.stderr


@pytest.fixture
def public_script():
    """A copy of the script another user can execute: the checkout (and pytest's tmp_path)
    may sit in folders only root can enter, as in a clean clone under ``mktemp -d``."""
    folder = tempfile.mkdtemp(prefix="tfx_root_test_")
    try:
        os.chmod(folder, 0o755)
        os.makedirs(os.path.join(folder, "scripts"))
        os.chmod(os.path.join(folder, "scripts"), 0o755)
        copy = os.path.join(folder, "scripts", "tfx_root.sh")
        shutil.copy(SCRIPT, copy)
        os.chmod(copy, 0o755)
        yield copy
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root")
def test_without_root_it_says_why(tmp_path, public_script):
    os.chmod(tmp_path, 0o777)
    out = _run(["test"], {}, tmp_path, user=65534, script=public_script)
    assert out.returncode == 1, out
    assert "needs root" in out.stderr and "ERROR" in out.stderr
    # `make test` passes --skip-if-unsupported: the tier is skipped with the reason
    out = _run(["--skip-if-unsupported", "test"], {}, tmp_path, user=65534, script=public_script)
    assert out.returncode == 0, out
    assert "SKIPPED the TFX tier" in out.stderr and "needs root" in out.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the chroot build needs root")
def test_unreachable_mirror_fails_before_building(tmp_path):
    out = _run(["build"], {"FASHION_KERAS_TFX_MIRROR": "http://127.0.0.1:9/debian"}, tmp_path)
    assert out.returncode == 1, out
    assert "no network to the Debian mirror" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "cache" / "root").exists()
    # nothing left mounted under the (never built) root
    with open("/proc/self/mounts", encoding="utf-8") as f:
        assert str(tmp_path) not in f.read()
