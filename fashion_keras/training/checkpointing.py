"""Fault tolerance: backups that resume at the exact step, and checkpoints never left partial.

- :class:`BackupAndRestore`: Keras' callback, extended to record the epoch and the steps done in
  it, to save at every epoch end also with a step frequency, and to work under
  MultiWorkerMirroredStrategy (every worker restores the chief's backup; only the chief writes).
  :func:`fashion_keras.training.phases.fit_resuming` runs only the steps left of an interrupted
  epoch.
- :class:`AtomicModelCheckpoint`: ``ModelCheckpoint`` through a temporary file renamed into
  place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any

import keras

from fashion_keras.training.distribute import is_chief


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """``keras.callbacks.BackupAndRestore`` that resumes at the exact step, also under
    MultiWorkerMirroredStrategy.

    A backup records the epoch and how many of its steps were done (``training_metadata.json``:
    ``{"epoch": e, "batch": steps done in e}``); with a step frequency it is also written at
    every epoch end, so a kill right after an epoch resumes at the next one. The trainer calls
    :meth:`restore` before ``fit`` and runs only the steps left of an interrupted epoch
    (:func:`fashion_keras.training.phases.fit_resuming`), so every epoch appears once in the
    history and the optimizer takes exactly the requested steps. A torn latest backup (a kill
    while writing it) falls back to the previous one, as Keras does.

    On the chief (and without multi-worker) the files are Keras'. A non-chief worker restores
    the chief's backup without modifying it, saves each backup to a temporary folder that it
    removes right after (every worker takes part in a save), and leaves deleting the backup at
    the end of training to the chief.
    """

    def __init__(self, backup_dir: str, **kwargs: Any) -> None:
        super().__init__(backup_dir, **kwargs)
        self.resume_offset = 0  # steps of the first epoch done before this fit call
        self.keep_at_train_end = False  # a partial epoch's fit: the run goes on
        self._restored = False
        self._epoch = 0
        self._since_save = 0

    def _chief(self) -> bool:
        return is_chief(self.model.distribute_strategy)

    def restore(self, model: keras.Model) -> tuple[int, int] | None:
        """Loads the latest backup (the previous one when the latest cannot be read) into
        ``model`` and returns ``(epoch, steps done in it)``; ``None`` without a backup."""
        self.set_model(model)
        self._restored = True
        failure: Exception | None = None
        for weights, meta in (
            (self._weights_path, self._training_metadata_path),
            (self._prev_weights_path, self._prev_training_metadata_path),
        ):
            if not os.path.exists(weights):
                continue
            try:
                with model.distribute_strategy.scope():  # fit's callbacks run in it too
                    return self._load(weights, meta)
            except (OSError, ValueError, KeyError) as e:  # torn: a kill while writing it
                failure = failure or e
        if failure is not None:
            raise failure
        return None

    def _load(self, weights: str, meta: str) -> tuple[int, int]:
        """Loads one backup; the previous one is copied over the latest first on the chief (as
        Keras does: the next save must not keep a torn file as the previous backup), or to a
        temporary file elsewhere (``load_weights`` needs a ``.weights.h5`` name)."""
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        tmp = None
        if weights != self._weights_path:
            if self._chief():
                shutil.copyfile(weights, self._weights_path)
                if os.path.exists(meta):
                    shutil.copyfile(meta, self._training_metadata_path)
                weights = self._weights_path
            else:
                tmp = tempfile.mkdtemp(prefix="fashion_keras-restore-")
                weights = shutil.copyfile(weights, os.path.join(tmp, "prev.weights.h5"))
        try:
            self.model.load_weights(weights)
        finally:
            if tmp:
                shutil.rmtree(tmp, ignore_errors=True)
        if not os.path.exists(meta):
            return 0, 0
        with open(meta, encoding="utf-8") as f:
            state = json.load(f)
        return int(state["epoch"]), int(state.get("batch", 0))

    def on_train_begin(self, logs: dict | None = None) -> None:
        if self._restored:  # restored before fit, with the step to resume at
            return
        position = self.restore(self.model)
        if position is not None:
            self.model._initial_epoch = position[0]

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.save_freq == "epoch":
            return
        self._since_save += 1
        last_step = batch + 1 == (self.params or {}).get("steps")  # the epoch-end save follows
        if self._since_save >= self.save_freq and not last_step:
            self._save_position(self._epoch, self.resume_offset + batch + 1)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.resume_offset = 0
        self._save_position(epoch + 1, 0)

    def _save_position(self, epoch: int, steps: int) -> None:
        self._since_save = 0
        self._current_epoch, self._last_batch_seen = epoch, steps
        self._save_model()

    def _save_model(self) -> None:
        if self._chief():
            super()._save_model()
            return
        paths = (self.backup_dir, self._weights_path, self._training_metadata_path)
        tmp = tempfile.mkdtemp(prefix="fashion_keras-backup-")
        self.backup_dir = tmp
        self._weights_path = os.path.join(tmp, os.path.basename(paths[1]))
        self._training_metadata_path = os.path.join(tmp, os.path.basename(paths[2]))
        try:
            super()._save_model()
        finally:
            self.backup_dir, self._weights_path, self._training_metadata_path = paths
            shutil.rmtree(tmp, ignore_errors=True)

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._chief() and not self.keep_at_train_end:
            super().on_train_end(logs)


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """ModelCheckpoint that writes to a temporary file and renames it into place, and remembers
    what it holds.

    A process killed mid-save leaves the previous checkpoint intact instead of a truncated one.
    With ``save_best_only`` the epoch and value of the checkpoint are written beside it
    (``best.json`` for ``best.keras``: :meth:`record`) and read back when training starts
    again, so a resumed run keeps a better checkpoint from before the interruption. The file
    path must not contain ``{epoch}``-style placeholders.
    """

    def __init__(self, filepath: str, **kwargs: Any) -> None:
        if "{" in filepath:
            raise ValueError(f"AtomicModelCheckpoint needs a fixed file path, got {filepath!r}")
        super().__init__(filepath, **kwargs)
        self._final_path = filepath
        self.record_path = os.path.splitext(filepath)[0] + ".json"

    def record(self) -> dict[str, Any] | None:
        """``{"epoch", "monitor", "value"}`` of the checkpoint on disk (None without one)."""
        if not (os.path.isfile(self._final_path) and os.path.isfile(self.record_path)):
            return None
        with open(self.record_path, encoding="utf-8") as f:
            return json.load(f)

    def on_train_begin(self, logs: dict | None = None) -> None:
        record = self.record() if self.save_best_only else None
        if record is not None and record.get("monitor") == self.monitor:
            self.best = float(record["value"])

    def _save_model(self, epoch, batch, logs):  # noqa: D401 - Keras hook
        folder = os.path.dirname(os.path.abspath(self._final_path))
        os.makedirs(folder, exist_ok=True)
        suffix = ".weights.h5" if self.save_weights_only else ".keras"
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
        os.close(fd)
        os.remove(tmp)
        self.filepath = tmp
        try:
            super()._save_model(epoch, batch, logs)
            if os.path.exists(tmp):
                os.replace(tmp, self._final_path)
                if self.save_best_only:
                    self._write_record(epoch)
        finally:
            self.filepath = self._final_path
            if os.path.exists(tmp):
                os.remove(tmp)

    def _write_record(self, epoch: int) -> None:
        record = {"epoch": int(epoch), "monitor": self.monitor, "value": float(self.best)}
        tmp = f"{self.record_path}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.replace(tmp, self.record_path)
