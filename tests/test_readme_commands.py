"""Every shell command in every README (and docs/) still works, at least through ``--help``.

For each fenced ``bash`` block of the Markdown files, each command line is checked: a
``python -m MODULE [SUBCOMMAND] ...`` runs ``MODULE [SUBCOMMAND] --help`` and every ``--flag`` the
line uses must appear in that help; ``make TARGET`` needs the Makefile target;
``scripts/tfx_root.sh CMD ...`` needs the harness command (and checks the command it runs);
``tfds build datasets/NAME`` needs the builder folder and its flags in ``tfds build --help``;
repository paths a command names (``datasets/...``, ``serving/...``) must exist. Modules that
cannot import here (TFX needs glibc >= 2.39) skip with the reason.
"""

from __future__ import annotations

import functools
import glob
import os
import re
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Markdown files holding the reference: the root map, each folder's README, docs/.
DOC_GLOBS = ("README.md", "*/README.md", "fashion_keras/*/README.md", "docs/*.md")
#: Commands that are no Python entry point of this repository and need no check here.
EXTERNAL = {"cd", "echo", "export", "kill", "docker", "curl", "pip", "saved_model_cli"}
#: Modules whose import needs what this machine may lack: (module prefix, importable name).
NEEDS = {"pipelines.": "tfx", "benchmarks.gpu_bench": "jax"}


def doc_files() -> list[str]:
    files = sorted({p for g in DOC_GLOBS for p in glob.glob(os.path.join(ROOT, g))})
    return [f for f in files if "/.venv/" not in f]


def shell_blocks(text: str) -> list[str]:
    return re.findall(r"^```(?:bash|sh|shell)\n(.*?)^```", text, flags=re.S | re.M)


def command_lines(block: str) -> list[str]:
    """Logical lines (continuations and open quotes joined), comments removed, split at
    ``&&``."""
    joined = re.sub(r"\\\n\s*", " ", block)
    out, pending = [], ""
    for raw in joined.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw) if not pending else raw
        pending = f"{pending} {line.strip()}".strip()
        try:
            shlex.split(pending)
        except ValueError:  # an open quote: the command goes on on the next line
            continue
        line, pending = pending.rstrip("&").strip(), ""
        out += [part.strip() for part in line.split("&&") if part.strip()]
    assert not pending, f"unclosed quote in a shell block: {pending!r}"
    return out


def documented_commands() -> list[tuple[str, str]]:
    """``(where, command line)`` for every command of every doc file."""
    found = []
    for path in doc_files():
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for block in shell_blocks(text):
            for line in command_lines(block):
                found.append((os.path.relpath(path, ROOT), line))
    return found


def _tokens(line: str) -> list[str]:
    tokens = shlex.split(line)
    while tokens and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", tokens[0]):
        tokens.pop(0)  # VAR=value prefixes
    return tokens


def _flags(tokens: list[str]) -> list[str]:
    return [t.split("=", 1)[0] for t in tokens if t.startswith("--") and len(t) > 2]


@functools.cache
def help_text(program: tuple[str, ...]) -> str:
    """The ``--help`` output of ``program`` (an argv prefix, e.g. ``("-m", "serving.client")``
    run with this Python, or a console script of this venv)."""
    argv = [sys.executable, *program] if program[0] == "-m" else list(program)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
    proc = subprocess.run(
        [*argv, "--help"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300
    )
    shown = " ".join(program[1:] if program[0] == "-m" else program)
    assert proc.returncode == 0, f"{shown} --help failed:\n{proc.stderr[-2000:]}"
    return proc.stdout


def subcommands(help_output: str) -> set[str]:
    """The subcommand names an argparse usage line lists as ``{a,b,c} ...``."""
    usage = help_output.split("\n\n", 1)[0]
    groups = re.findall(r"\{([\w,-]+)\} \.\.\.", usage)
    return {name for group in groups for name in group.split(",")}


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


@functools.cache
def make_targets() -> frozenset[str]:
    with open(os.path.join(ROOT, "Makefile"), encoding="utf-8") as f:
        return frozenset(re.findall(r"^([a-z][\w-]*):", f.read(), flags=re.M))


def _python_module(tokens: list[str]) -> tuple[str, list[str]] | None:
    if len(tokens) >= 3 and tokens[0].endswith(("python", "python3")) and tokens[1] == "-m":
        return tokens[2], tokens[3:]
    return None


def _check_paths(tokens: list[str]) -> None:
    for t in tokens:
        if re.match(r"^(datasets|serving|scripts|fashion_keras|pipelines|benchmarks)/", t):
            assert os.path.exists(os.path.join(ROOT, t)), f"no such path in the repository: {t}"


def check_python(module: str, args: list[str]) -> None:
    for prefix, name in NEEDS.items():
        if module.startswith(prefix) and not _importable(name):
            pytest.skip(f"{module} needs {name}, which does not import here")
    text = help_text(("-m", module))
    chosen = [a for a in args if a in subcommands(text)]
    if chosen:
        text += help_text(("-m", module, chosen[0]))
    missing = [f for f in _flags(args) if not re.search(rf"(^|[\s,\[]){re.escape(f)}\b", text)]
    assert not missing, f"python -m {module}: flags {missing} are not in its --help"


def check_command(line: str) -> None:
    tokens = _tokens(line)
    if not tokens or tokens[0] in EXTERNAL:
        return
    _check_paths(tokens)
    python = _python_module(tokens)
    if python:
        check_python(*python)
    elif tokens[0] == "make":
        missing = [t for t in tokens[1:] if "=" not in t and t not in make_targets()]
        assert not missing, f"Makefile has no target(s) {missing}"
    elif tokens[0] == "scripts/tfx_root.sh":
        assert tokens[1] in {"build", "test", "run", "shell", "clean"}, tokens[1]
        if tokens[1] == "run":
            check_command(shlex.join(tokens[2:]))
    elif tokens[:2] == ["tfds", "build"]:
        text = help_text((os.path.join(os.path.dirname(sys.executable), "tfds"), "build"))
        missing = [f for f in _flags(tokens) if f not in text]
        assert not missing, f"tfds build: flags {missing} are not in its --help"
    else:
        raise AssertionError(f"no check for this command: {line!r} (add one, or list it)")


COMMANDS = documented_commands()


def test_the_docs_have_commands():
    where = {w for w, _ in COMMANDS}
    assert {"README.md", "datasets/README.md", "serving/README.md"} <= where
    assert len(COMMANDS) > 40


@pytest.mark.parametrize(("where", "line"), COMMANDS, ids=[f"{w}:{c[:60]}" for w, c in COMMANDS])
def test_documented_command(where: str, line: str) -> None:
    check_command(line)


def test_the_check_catches_a_stale_flag_and_a_moved_module():
    with pytest.raises(AssertionError, match=r"flags \['--no-such-flag'\]"):
        check_command("python -m fashion_keras.predict model img.jpg --no-such-flag 3")
    with pytest.raises(AssertionError, match="fashion_keras.models.weights --help failed"):
        check_command("python -m fashion_keras.models.weights seresnet50 x.safetensors")
