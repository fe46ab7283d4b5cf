"""Model paths: the :class:`~fashion_keras.evaluation.predictors.Predictor` for any model
path this package writes, and the data a saved model was trained on.

:func:`load_predictor` accepts a ``.keras`` file, a training run folder (its ``model.keras``),
an exported SavedModel (a version folder, or the export base: its newest version) and a
feature-stacking folder (``stack.json``, written by ``python -m fashion_keras.train_stack``).
:func:`training_data_of` finds the data a model was trained on (export metadata, the run's
``config.json``, or a stack's first member's), which ``evaluate`` and ``train_stack`` read when
no ``--dataset`` is given. :func:`split_model_paths` reads the model path arguments.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

from fashion_keras.data.config import DataConfig
from fashion_keras.evaluation.predictors import (
    STACK_FILE,
    ModelLoadError,
    Predictor,
    StackPredictor,
    load_keras_predictor,
)
from fashion_keras.evaluation.saved_model_predictor import SavedModelPredictor


def load_predictor(path: str) -> Predictor:
    """A :class:`Predictor` for any model path this package writes.

    Accepts a ``.keras`` file, a SavedModel version folder, an export base (its newest
    version), a training run folder (its ``model.keras``) or a ``train_stack`` folder.
    """
    if os.path.isfile(path):
        if not path.endswith(".keras"):
            raise ModelLoadError(f"{path}: a model file must be a .keras file")
        return load_keras_predictor(path)
    if not os.path.isdir(path):
        raise ModelLoadError(f"no such model file or folder: {path}")
    if os.path.isfile(os.path.join(path, STACK_FILE)):
        return StackPredictor.load(path)
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return SavedModelPredictor(path)
    latest = _latest_version(path)
    if latest:
        return SavedModelPredictor(latest)
    if os.path.isfile(os.path.join(path, "model.keras")):
        return load_keras_predictor(path)
    raise ModelLoadError(
        f"{path}: not a model folder (expected saved_model.pb, numbered SavedModel versions, "
        f"model.keras or {STACK_FILE})"
    )


def _latest_version(export_base: str) -> str | None:
    versions = [
        int(d)
        for d in os.listdir(export_base)
        if d.isdigit() and os.path.isfile(os.path.join(export_base, d, "saved_model.pb"))
    ]
    return os.path.join(export_base, str(max(versions))) if versions else None


def training_data_of(path: str) -> tuple[DataConfig, str] | None:
    """The data a saved model was trained on, and where that was read: a SavedModel's
    metadata (``training_data``), else the ``config.json`` of the training run the path is or
    lies in (``RUN``, ``RUN/model.keras``, ``RUN/checkpoints/best.keras``, ``RUN/export``,
    ``RUN/export/N``), else the first member's of a feature stack; None when none is found."""
    from fashion_keras.training.config import TrainConfig

    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    if os.path.isfile(os.path.join(folder, STACK_FILE)):
        with open(os.path.join(folder, STACK_FILE), encoding="utf-8") as f:
            members = json.load(f)["members"]
        return training_data_of(members[0]) if members else None
    if os.path.isfile(os.path.join(folder, "saved_model.pb")):
        version = folder
    else:
        version = _latest_version(folder)
    if version is not None:
        from fashion_keras.export import load_metadata

        meta = load_metadata(version)
        if meta.get("training_data"):
            return DataConfig.from_dict(meta["training_data"]), f"{version} metadata"
    candidate = os.path.abspath(folder)
    for _ in range(3):  # RUN, RUN/checkpoints or RUN/export, RUN/export/N
        config = os.path.join(candidate, "config.json")
        if os.path.isfile(config):
            return TrainConfig.load(config).data, config
        candidate = os.path.dirname(candidate)
    return None


def split_model_paths(paths: Iterable[str]) -> list[str]:
    """Model paths given as several arguments and/or comma-separated lists."""
    out = [p for arg in paths for p in arg.split(",") if p]
    if not out:
        raise ValueError("no model path given")
    return out
