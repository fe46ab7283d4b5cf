"""Plants known bugs where training wires its pieces together and checks the tests catch each.

``.venv/bin/python -m tests.mutation_check [--only NAME ...] [--tests-from REV]`` copies the
repository's tracked files into a temporary folder, and for each mutation below replaces one
snippet of library code (the snippet must be there: a refactoring that moves it fails loudly),
runs the tests that target it in that copy, and prints ``caught`` (a test failed) or
``survived``. ``--tests-from REV`` takes ``tests/`` from a git revision, to measure an older
suite against today's code. Exit status 1 when a mutation survives. A tool for people, not part
of ``make test`` (it runs slow tests once per mutation: about 20 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class Mutation:
    name: str
    path: str  # file, relative to the repository root
    old: str  # the snippet replaced (must occur exactly once)
    new: str
    tests: tuple[str, ...]  # pytest arguments: files, node ids, -k expressions


TRAINER = "fashion_keras/training/trainer.py"
COMPILE_TESTS = ("tests/training/test_compile.py", "tests/training/test_losses_metrics.py")
VIEW_TESTS = ("tests/data/test_training_view.py", "tests/data/test_preprocess.py")
SAVING = "tests/training/test_saving.py"

MUTATIONS = (
    Mutation(
        "masked rows counted in accuracy (metrics= for weighted_metrics=)",
        TRAINER,
        "weighted_metrics=metrics_lib.head_metrics(heads),",
        "metrics=metrics_lib.head_metrics(heads),",
        (*COMPILE_TESTS, "tests/training/test_train.py::test_train_evaluate_export_deepfashion6"),
    ),
    Mutation(
        "label smoothing forced to 0 in the loss",
        "fashion_keras/training/losses.py",
        "label_smoothing=label_smoothing,",
        "label_smoothing=0.0,",
        COMPILE_TESTS,
    ),
    Mutation(
        "label smoothing dropped where training passes it",
        TRAINER,
        "focal_losses(heads, opt.focal_gamma, opt.focal_alpha, opt.label_smoothing)",
        "focal_losses(heads, opt.focal_gamma, opt.focal_alpha)",
        COMPILE_TESTS,
    ),
    Mutation(
        "focal gamma not passed by training",
        TRAINER,
        "focal_losses(heads, opt.focal_gamma, opt.focal_alpha, opt.label_smoothing)",
        "focal_losses(heads, 2.0, opt.focal_alpha, opt.label_smoothing)",
        COMPILE_TESTS,
    ),
    Mutation(
        "head loss weights not applied",
        TRAINER,
        "loss_weights=losses_lib.loss_weights(heads),",
        "",
        COMPILE_TESTS,
    ),
    Mutation(
        "random flip removed from the training view",
        "fashion_keras/data/preprocess.py",
        "image = tf.image.stateless_random_flip_left_right(image, seed=seeds[1])",
        "image = image",
        VIEW_TESTS,
    ),
    Mutation(
        "brightness jitter 255x too small",
        "fashion_keras/data/preprocess.py",
        "image = image + delta * 255.0",
        "image = image + delta",
        VIEW_TESTS,
    ),
    Mutation(
        "best.keras keeps the worst epoch (mode min)",
        TRAINER,
        'monitor=monitor,\n            mode="max",',
        'monitor=monitor,\n            mode="min",',
        (SAVING, "-k", "best_validation"),
    ),
    Mutation(
        "best.keras overwritten every epoch",
        TRAINER,
        "save_best_only=True,",
        "save_best_only=False,",
        (SAVING, "-k", "best_validation"),
    ),
    Mutation(
        "backup without the previous copy",
        TRAINER,
        "double_checkpoint=True,",
        "double_checkpoint=False,",
        (
            SAVING,
            "tests/training/test_train.py",
            "-k",
            "kill or test_rerunning_the_same_command_resumes",
        ),
    ),
    Mutation(
        "best.keras written in place",
        "fashion_keras/training/checkpointing.py",
        "        self.filepath = tmp\n",
        "        self.filepath = self._final_path\n",
        (SAVING, "-k", "best_keras_is_never_left_partial"),
    ),
    Mutation(
        "model.keras written in place",
        TRAINER,
        "        model.save(tmp)\n",
        "        model.save(path)\n",
        (SAVING, "-k", "model_keras_is_never_left_partial"),
    ),
    Mutation(
        "export version written in place",
        "fashion_keras/export/versions.py",
        "    os.makedirs(staging)\n",
        "    staging = final\n    os.makedirs(staging)\n",
        ("tests/export/test_export.py", "-k", "partial"),
    ),
    Mutation(
        "export version folders owner-only",
        "fashion_keras/export/versions.py",
        "    os.makedirs(staging)\n",
        "    os.makedirs(staging, mode=0o700)\n",
        ("tests/export/test_export.py", "-k", "umask"),
    ),
    Mutation(
        "--jit-compile not passed to compile",
        TRAINER,
        "jit_compile=cfg.runtime.jit_compile,",
        "",
        (
            "tests/training/test_compile.py",
            "tests/training/test_distribute.py::test_jit_compile_trains",
            "-k",
            "jit",
        ),
    ),
    Mutation(
        "evaluation ignores the margin the model was trained with",
        "fashion_keras/evaluation/predictors.py",
        'margin = (getattr(model, "preprocessing", None) or {}).get("bbox_margin")',
        "margin = None",
        ("tests/evaluation/test_predictors.py", "-k", "margin"),
    ),
)


def copy_tree(dest: str, tests_from: str | None) -> None:
    """The tracked (and new, unignored) files of the working tree; ``tests/`` from a revision."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in (f.decode() for f in files if f):
        if tests_from and name.startswith("tests/"):
            continue
        src = os.path.join(ROOT, name)
        if os.path.isfile(src):
            os.makedirs(os.path.dirname(os.path.join(dest, name)), exist_ok=True)
            shutil.copy2(src, os.path.join(dest, name))
    if tests_from:
        archive = subprocess.run(
            ["git", "archive", tests_from, "tests"], cwd=ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", dest], input=archive, check=True)


def plant(dest: str, mutation: Mutation) -> str:
    """Applies ``mutation`` in the copy; returns the original text to restore."""
    path = os.path.join(dest, mutation.path)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    count = text.count(mutation.old)
    if count != 1:
        raise SystemExit(
            f"{mutation.path}: the snippet of {mutation.name!r} occurs {count} times, expected 1 "
            f"(update tests/mutation_check.py): {mutation.old!r}"
        )
    with open(path, "w", encoding="utf-8") as f:
        f.write(text.replace(mutation.old, mutation.new))
    return text


def run_tests(dest: str, mutation: Mutation) -> tuple[bool, str]:
    """``(caught, last line)``: a failing (or erroring) test run catches the mutation. Test
    files missing from the copy (an older ``--tests-from``) are left out."""

    def exists(arg: str) -> bool:
        return os.path.exists(os.path.join(dest, arg.split("::")[0]))

    args = [a for a in mutation.tests if not a.startswith("tests/") or exists(a)]
    if not any(a.startswith("tests/") for a in args):
        return False, "no targeted test file exists"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": dest}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *args],
        cwd=dest,
        env=env,
        capture_output=True,
        text=True,
    )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    last = lines[-1] if lines else proc.stderr[-200:]
    if proc.returncode == 5:  # pytest: no test collected or selected
        return False, f"no targeted test: {last}"
    return proc.returncode != 0, last


def check_copy_is_imported(dest: str) -> None:
    code = "import fashion_keras, sys; sys.stdout.write(fashion_keras.__file__)"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=dest,
        env={**os.environ, "PYTHONPATH": dest},
        capture_output=True,
        text=True,
        check=True,
    )
    if not proc.stdout.startswith(dest):
        raise SystemExit(f"the copy is not what imports: fashion_keras comes from {proc.stdout}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.mutation_check", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--only", nargs="*", default=None, help="mutation names (substrings)")
    parser.add_argument("--tests-from", default=None, help="take tests/ from this git revision")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.only or any(o.lower() in m.name for o in args.only)]
    dest = tempfile.mkdtemp(prefix="fashion_keras_mutations_")
    survived = 0
    try:
        copy_tree(dest, args.tests_from)
        check_copy_is_imported(dest)
        print(f"{len(chosen)} mutations, tests from {args.tests_from or 'the working tree'}")
        for m in chosen:
            original = plant(dest, m)
            start = time.perf_counter()
            try:
                caught, last = run_tests(dest, m)
            finally:
                with open(os.path.join(dest, m.path), "w", encoding="utf-8") as f:
                    f.write(original)
            survived += not caught
            verdict = "caught  " if caught else "SURVIVED"
            print(f"{verdict} {m.name}  [{time.perf_counter() - start:.0f} s: {last}]", flush=True)
    finally:
        shutil.rmtree(dest, ignore_errors=True)
    print(f"{len(chosen) - survived} caught, {survived} survived")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
