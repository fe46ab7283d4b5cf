"""The phase schedule of a run: frozen, or frozen then fine-tuned (one ``fit`` call each).

- ``--freeze-backbone``: only the heads train; the backbone's weights are not trainable and, as
  Keras 3 runs a BatchNormalization layer with ``trainable=False`` in inference mode, its
  BatchNorm statistics do not move either.
- ``--freeze-epochs N``: two ``fit`` calls: N epochs with the backbone frozen (``learning_rate``),
  then the remaining epochs with everything trainable (``fine_tune_lr``, default
  ``learning_rate / 10``), each with its own learning-rate schedule (:func:`fit_phases`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from typing import Any

import keras

from fashion_keras.training import checkpointing
from fashion_keras.training.config import TrainConfig

log = logging.getLogger("fashion_keras")


def set_backbone_frozen(model: keras.Model, frozen: bool) -> None:
    """Freezes (or unfreezes) the backbone: weights not trainable, BatchNorm in inference mode.

    Takes effect at the next ``compile``.
    """
    model.backbone.trainable = not frozen


@dataclasses.dataclass(frozen=True)
class Phase:
    """One ``fit`` call of a schedule."""

    name: str
    initial_epoch: int
    epochs: int  # the epoch to stop at (Keras ``fit(epochs=...)``)
    frozen: bool
    learning_rate: float

    @property
    def num_epochs(self) -> int:
        return self.epochs - self.initial_epoch


def plan_phases(cfg: TrainConfig) -> list[Phase]:
    """The schedule of a resolved config: one phase, or frozen + fine-tune."""
    opt = cfg.optimization
    if opt.freeze_epochs:
        fine_lr = opt.fine_tune_lr or opt.learning_rate / 10
        return [
            Phase("frozen", 0, opt.freeze_epochs, True, opt.learning_rate),
            Phase("fine_tune", opt.freeze_epochs, opt.epochs, False, fine_lr),
        ]
    return [Phase("train", 0, opt.epochs, opt.freeze_backbone, opt.learning_rate)]


def phase_config(cfg: TrainConfig, phase: Phase) -> TrainConfig:
    """The config a phase compiles with: ``epochs`` = its length, ``learning_rate`` = its peak
    rate (so the schedule spans the phase), ``freeze_backbone`` = whether it is frozen. The
    frozen phase of a ``--freeze-epochs`` run thus has both freeze fields set, which tells
    ``one_cycle`` it is fastai ``fine_tune``'s frozen cycle (``optimizers.one_cycle_shape``)."""
    return cfg.replace(
        epochs=phase.num_epochs, learning_rate=phase.learning_rate, freeze_backbone=phase.frozen
    )


def fit_phases(
    model: keras.Model,
    cfg: TrainConfig,
    compile_fn: Callable[[TrainConfig], None],
    x: Any,
    *,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    **fit_kwargs: Any,
) -> keras.callbacks.History:
    """Runs the schedule of :func:`plan_phases`: per phase, (un)freezes the backbone, calls
    ``compile_fn`` with the config of that phase (:func:`phase_config`) and ``model.fit``.

    In a two-phase schedule each phase gets its own ``BackupAndRestore`` folder
    (``<backup>/frozen``, ``<backup>/fine_tune``, cloned from the one in ``callbacks``); the
    frozen phase's backup is kept until the end, so re-running an interrupted command does not
    repeat a finished frozen phase. Returns one ``History`` over all phases.
    """
    phases = plan_phases(cfg)
    merged: dict[str, list[float]] = {}
    done: list[str] = []
    for i, phase in enumerate(phases):
        last = i == len(phases) - 1
        phase_callbacks = [
            _phase_backup(cb, phase.name, keep=not last) if len(phases) > 1 else cb
            for cb in callbacks
            if isinstance(cb, keras.callbacks.Callback)
        ]
        set_backbone_frozen(model, phase.frozen)
        compile_fn(phase_config(cfg, phase))
        if len(phases) > 1:
            log.info(
                "phase %s: epochs %d-%d, backbone %s, peak learning rate %g",
                phase.name,
                phase.initial_epoch + 1,
                phase.epochs,
                "frozen" if phase.frozen else "trainable",
                phase.learning_rate,
            )
        history = fit_resuming(
            model,
            x,
            initial_epoch=phase.initial_epoch,
            epochs=phase.epochs,
            callbacks=phase_callbacks,
            **fit_kwargs,
        )
        for key, values in history.items():
            merged.setdefault(key, []).extend(values)
        done += [cb.backup_dir for cb in phase_callbacks if _is_backup(cb) and not last]
    for path in done:  # the run finished: the kept backups of earlier phases are obsolete
        shutil.rmtree(path, ignore_errors=True)
    for cb in callbacks if len(phases) > 1 else ():
        if _is_backup(cb) and os.path.isdir(cb.backup_dir) and not os.listdir(cb.backup_dir):
            os.rmdir(cb.backup_dir)  # the phases' parent folder, now empty
    out = keras.callbacks.History()
    out.history = merged
    out.set_model(model)
    return out


def fit_resuming(
    model: keras.Model,
    x: Any,
    *,
    initial_epoch: int,
    epochs: int,
    steps_per_epoch: int,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    **fit_kwargs: Any,
) -> dict[str, list[float]]:
    """``model.fit`` from ``initial_epoch`` to ``epochs`` that resumes a backup at its exact
    step: the ``BackupAndRestore`` among ``callbacks`` restores the model first; an epoch it
    interrupted runs only its remaining steps (one ``fit`` call), then the rest of the epochs.
    Every epoch appears once in the history, and the optimizer takes exactly
    ``(epochs - initial_epoch) * steps_per_epoch`` steps over all runs. Returns the history."""
    backup = next((cb for cb in callbacks if _is_backup(cb)), None)
    position = backup.restore(model) if backup is not None else None
    # Keras' own BackupAndRestore sets model._initial_epoch and never resets it
    model._initial_epoch = None
    runs = []  # (first epoch, steps in it, steps done before)
    if position is not None and position[0] >= initial_epoch:
        initial_epoch, done = position
        if done >= steps_per_epoch:  # the epoch's last step was backed up: it is finished
            initial_epoch, done = initial_epoch + 1, 0
        if 0 < done < steps_per_epoch and initial_epoch < epochs:
            log.info("resuming epoch %d at step %d of %d", initial_epoch + 1, done, steps_per_epoch)
            runs.append((initial_epoch, steps_per_epoch - done, done))
            initial_epoch += 1
    if initial_epoch < epochs:
        runs.append((initial_epoch, steps_per_epoch, 0))
    merged: dict[str, list[float]] = {}
    for i, (first, steps, done) in enumerate(runs):
        last = first + 1 if done else epochs
        if backup is not None:
            backup.resume_offset = done
            backup.keep_at_train_end = i < len(runs) - 1
        history = model.fit(
            x,
            initial_epoch=first,
            epochs=last,
            steps_per_epoch=steps,
            callbacks=list(callbacks),
            **fit_kwargs,
        )
        for key, values in history.history.items():
            merged.setdefault(key, []).extend(values)
    return merged


def _is_backup(cb: keras.callbacks.Callback) -> bool:
    return isinstance(cb, checkpointing.BackupAndRestore)


def _phase_backup(cb: keras.callbacks.Callback, phase: str, keep: bool) -> keras.callbacks.Callback:
    if not _is_backup(cb):
        return cb
    return type(cb)(
        os.path.join(cb.backup_dir, phase),
        save_freq=cb.save_freq,
        double_checkpoint=cb.double_checkpoint,
        delete_checkpoint=cb.delete_checkpoint and not keep,
    )
