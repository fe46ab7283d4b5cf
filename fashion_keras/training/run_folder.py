"""The run folder: what a finished run leaves, and what re-running a command on it does.

A run is finished once ``model.keras`` is written and no ``backup/`` is left. The same command
on a finished run stops with a message (``--overwrite``, or a new ``--output-dir``) instead of
training again from scratch, appending a second epoch 0 to ``history.csv`` and adding
``export/2``; with ``--overwrite`` the old run's files (and its default export) are removed
first. An interrupted run (a ``backup/`` is there) resumes either way.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence

from fashion_keras.heads import Head, heads_to_dict
from fashion_keras.training.config import TrainConfig

log = logging.getLogger("fashion_keras")

#: What a training run writes into its folder (the export base is the runtime's ``export_dir``).
RUN_FILES = (
    "config.json",
    "heads.json",
    "history.csv",
    "training_curves.png",
    "metrics.json",
    "model.keras",
    "logs",
    "checkpoints",
    "backup",
)


class FinishedRunError(ValueError):
    """``--output-dir`` holds a finished run and ``--overwrite`` was not given."""


def is_finished(output_dir: str) -> bool:
    """Whether ``output_dir`` holds a finished run (``model.keras`` and no backup)."""
    return os.path.isfile(os.path.join(output_dir, "model.keras")) and not os.path.isdir(
        os.path.join(output_dir, "backup")
    )


def prepare(cfg: TrainConfig) -> None:
    """Makes the run folder ready: refuses a finished run, or clears it with ``overwrite``."""
    out = cfg.runtime.output_dir
    if not is_finished(out):
        os.makedirs(out, exist_ok=True)
        return
    default_export = os.path.join(out, "export")
    if not cfg.runtime.overwrite:
        exported = sorted(os.listdir(default_export)) if os.path.isdir(default_export) else []
        shown = f", export/{', export/'.join(exported)}" if exported else ""
        raise FinishedRunError(
            f"--output-dir {out} holds a finished run (model.keras{shown}): pass --overwrite to "
            "train it again from scratch (its files are removed), or give a new --output-dir"
        )
    log.warning("--overwrite: removing the finished run in %s", out)
    for name in RUN_FILES:
        path = os.path.join(out, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
    if cfg.runtime.export_dir is None and os.path.isdir(default_export):
        shutil.rmtree(default_export)


def write_config(cfg: TrainConfig, heads: Sequence[Head]) -> None:
    """``config.json`` (the resolved sections) and ``heads.json`` (the head spec)."""
    cfg.save(os.path.join(cfg.runtime.output_dir, "config.json"))
    with open(os.path.join(cfg.runtime.output_dir, "heads.json"), "w", encoding="utf-8") as f:
        json.dump(heads_to_dict(heads), f, indent=2)
