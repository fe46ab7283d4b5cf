"""Training from pretrained weights: checkpoint loading, frozen and two-phase schedules, layer
groups for discriminative learning rates.

- ``--weights``: :func:`build_model_from_config` builds the classifier with the checkpoint's
  mean/std and loads the backbone (``fashion_keras.models.weights``).
- ``--freeze-backbone``: only the heads train; the backbone's weights are not trainable and, as
  Keras 3 runs a BatchNormalization layer with ``trainable=False`` in inference mode, its
  BatchNorm statistics do not move either.
- ``--freeze-epochs N``: two ``fit`` calls: N epochs with the backbone frozen (``learning_rate``),
  then the remaining epochs with everything trainable (``fine_tune_lr``, default
  ``learning_rate / 10``), each with its own learning-rate schedule (:func:`fit_phases`).
- ``--lr-multipliers 'stem=0.01,stages=0.1,heads=1'``: per-group learning-rate factors
  (:func:`lr_multiplier_patterns` for :class:`fashion_keras.optimizers.LayerwiseLR`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras

from fashion_keras.config import TrainConfig
from fashion_keras.heads import HeadSpec
from fashion_keras.models import build_model
from fashion_keras.models import weights as weights_lib
from fashion_keras.models.classifier import IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger("fashion_keras")

#: Layer groups of ``--lr-multipliers`` (``stages`` sets ``layer1`` ... ``layerN`` at once).
GROUP_HELP = "stem, layer1 ... layer4 (or stages for all of them) and heads"


# --------------------------------------------------------------------------------------------
# Layer groups and discriminative learning rates
# --------------------------------------------------------------------------------------------


def parse_lr_multipliers(spec: str | None, num_stages: int = 4) -> dict[str, float]:
    """``'stem=0.01,stages=0.1,layer4=0.3,heads=1'`` -> ``{group: factor}`` per concrete group.

    ``stages`` expands to ``layer1`` ... ``layer{num_stages}``; an explicit ``layerK`` overrides
    it whatever the order. Raises ``ValueError`` naming the bad entry.
    """
    if spec is None or not spec.strip():
        return {}
    groups = {"stem", "heads", "stages"} | {f"layer{i + 1}" for i in range(num_stages)}
    given: dict[str, float] = {}
    for item in spec.split(","):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in groups:
            raise ValueError(
                f"config field 'lr_multipliers' = {spec!r}: entry {item.strip()!r} must be "
                f"GROUP=FACTOR with GROUP one of {GROUP_HELP}"
            )
        try:
            factor = float(value)
        except ValueError:
            factor = float("nan")
        if not factor >= 0:
            raise ValueError(
                f"config field 'lr_multipliers' = {spec!r}: factor {value.strip()!r} of "
                f"{name!r} must be a number >= 0"
            )
        given[name] = factor
    out = {}
    if "stem" in given:
        out["stem"] = given["stem"]
    for i in range(num_stages):
        stage = f"layer{i + 1}"
        if stage in given or "stages" in given:
            out[stage] = given.get(stage, given.get("stages"))
    if "heads" in given:
        out["heads"] = given["heads"]
    return out


def layer_groups(model: keras.Model) -> dict[str, list[str]]:
    """Layer names per group of a ``MultiHeadClassifier``: ``stem``, ``layer1`` ...
    (inside the backbone) and ``heads`` (the layers after the backbone: fc layers and heads)."""
    backbone = model.backbone
    groups = {"stem": list(backbone.stem_layer_names)}
    for i in range(len(backbone.stage_blocks)):
        groups[f"layer{i + 1}"] = list(backbone.stage_layer_names(i + 1))
    groups["heads"] = [
        layer.name for layer in model.layers if layer is not backbone and layer.weights
    ]
    clashes = sorted(set(groups["heads"]) & {layer.name for layer in backbone.layers})
    if clashes:
        raise ValueError(
            f"layer name(s) {clashes} are both in the backbone and after it: the learning-rate "
            "groups would be ambiguous; rename the heads"
        )
    return groups


def lr_multiplier_patterns(
    model: keras.Model, spec: str | Mapping[str, float] | None
) -> list[tuple[str, float]]:
    """``(regex on variable path, factor)`` pairs for :class:`~fashion_keras.optimizers.LayerwiseLR`.

    ``spec`` is the ``--lr-multipliers`` string or a parsed ``{group: factor}`` mapping; returns
    ``[]`` when no factor differs from 1.
    """
    groups = layer_groups(model)
    num_stages = len(model.backbone.stage_blocks)
    factors = parse_lr_multipliers(spec, num_stages) if not isinstance(spec, Mapping) else spec
    unknown = sorted(set(factors) - set(groups))
    if unknown:
        raise ValueError(f"lr multipliers for unknown group(s) {unknown}; groups: {list(groups)}")
    if all(f == 1.0 for f in factors.values()):
        return []
    pairs = []
    for group, factor in factors.items():
        names = groups[group]
        if names:
            alternatives = "|".join(re.escape(n) for n in names)
            pairs.append((f"(?:^|/)(?:{alternatives})/", float(factor)))
    return pairs


# --------------------------------------------------------------------------------------------
# Model from config (with --weights)
# --------------------------------------------------------------------------------------------


def checkpoint_for(cfg: TrainConfig) -> tuple[str, weights_lib.Preprocessing] | None:
    """The resolved ``--weights`` file and its preprocessing (``None`` without ``--weights``)."""
    if not cfg.weights:
        return None
    path = weights_lib.resolve_weights(cfg.weights, cfg.backbone)
    return path, weights_lib.checkpoint_preprocessing(path, cfg.backbone)


def apply_checkpoint_defaults(config: TrainConfig) -> TrainConfig:
    """Takes the default input size from the ``--weights`` checkpoint when ``--image-size`` is
    unset (real data only: the synthetic demo keeps its small size)."""
    if not config.weights or config.image_size is not None or config.uses_demo_data:
        return config
    resolved = checkpoint_for(config.resolve())
    if resolved is None:
        return config
    log.info("image size %d px from %s", resolved[1].input_size, resolved[1].source)
    return dataclasses.replace(config, image_size=resolved[1].input_size)


def build_model_from_config(cfg: TrainConfig, heads: HeadSpec) -> keras.Model:
    """The classifier of a resolved config; with ``--weights`` the backbone is loaded from the
    checkpoint and the model's mean/std follow the checkpoint's convention."""
    resolved = checkpoint_for(cfg)
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    if resolved is not None:
        path, pre = resolved
        mean, std = pre.mean, pre.std
        if pre.input_size != cfg.image_size:
            log.info(
                "%s was trained at %d px (%s); training at %d px",
                path,
                pre.input_size,
                pre.source,
                cfg.image_size,
            )
    model = build_model(
        backbone=cfg.backbone,
        heads=heads,
        image_size=cfg.image_size,
        fc_layers=cfg.fc_layers,
        fc_units=cfg.fc_units,
        dropout=cfg.dropout,
        mean=mean,
        std=std,
    )
    if resolved is not None:
        report = weights_lib.load_backbone_weights(model.backbone, resolved[0], resolved[1])
        log.info("%s (mean %s, std %s from %s)", report, mean, std, resolved[1].source)
    elif cfg.freeze_backbone or cfg.freeze_epochs:
        log.warning("freezing a randomly initialised backbone: pass --weights for pretrained one")
    return model


# --------------------------------------------------------------------------------------------
# Frozen and two-phase training
# --------------------------------------------------------------------------------------------


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
    if cfg.freeze_epochs:
        fine_lr = cfg.fine_tune_lr or cfg.learning_rate / 10
        return [
            Phase("frozen", 0, cfg.freeze_epochs, True, cfg.learning_rate),
            Phase("fine_tune", cfg.freeze_epochs, cfg.epochs, False, fine_lr),
        ]
    return [Phase("train", 0, cfg.epochs, cfg.freeze_backbone, cfg.learning_rate)]


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
    ``compile_fn`` with the config of that phase (``epochs`` = its length, ``learning_rate``
    = its peak rate, so the learning-rate schedule spans the phase) and ``model.fit``.

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
        compile_fn(
            dataclasses.replace(cfg, epochs=phase.num_epochs, learning_rate=phase.learning_rate)
        )
        if len(phases) > 1:
            log.info(
                "phase %s: epochs %d-%d, backbone %s, peak learning rate %g",
                phase.name,
                phase.initial_epoch + 1,
                phase.epochs,
                "frozen" if phase.frozen else "trainable",
                phase.learning_rate,
            )
        # BackupAndRestore sets model._initial_epoch and Keras never resets it: clear it so a
        # restored earlier phase does not move the start of this one.
        model._initial_epoch = None
        history = model.fit(
            x,
            initial_epoch=phase.initial_epoch,
            epochs=phase.epochs,
            callbacks=phase_callbacks,
            **fit_kwargs,
        )
        for key, values in history.history.items():
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


def _is_backup(cb: keras.callbacks.Callback) -> bool:
    return isinstance(cb, keras.callbacks.BackupAndRestore)


def _phase_backup(cb: keras.callbacks.Callback, phase: str, keep: bool) -> keras.callbacks.Callback:
    if not _is_backup(cb):
        return cb
    return keras.callbacks.BackupAndRestore(
        os.path.join(cb.backup_dir, phase),
        save_freq=cb.save_freq,
        double_checkpoint=cb.double_checkpoint,
        delete_checkpoint=cb.delete_checkpoint and not keep,
    )
