"""Feature-stacking ensemble (the command is ``python -m fashion_keras.train_stack``).

The competition variant of ensembling: the pooled features of several trained, frozen
backbones (each in its own view: input size and garment-box margin) are concatenated, and a small MLP with one softmax per
head is trained on them with the same masked focal losses and weighted metrics as the main
training. The output folder (``stack.json``, ``head_model.keras``, ``metrics.json``,
``history.csv``) is a model that ``fashion_keras.evaluate`` and ``fashion_keras.predict``
accept like any other.

Features are computed once per split (the evaluation view, or averaged over ``--tta`` views),
so training the MLP takes seconds. Targets are the hard labels (FashionAI ``m_half`` soft
targets are not used here).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from fashion_keras.evaluation.config import StackConfig
from fashion_keras.evaluation.eval_data import EvalData
from fashion_keras.evaluation.predictors import (
    STACK_FILE,
    FeatureStack,
    KerasPredictor,
    keras_file,
    load_keras_predictor,
    union_heads,
)
from fashion_keras.evaluation.views import override_margin
from fashion_keras.heads import Head, heads_to_dict
from fashion_keras.training import losses as losses_lib
from fashion_keras.training import metrics as metrics_lib

log = logging.getLogger("fashion_keras")

HEAD_MODEL_FILE = "head_model.keras"


def build_head_model(
    feature_dim: int, heads: Sequence[Head], hidden_units: int = 512, dropout: float = 0.3
) -> keras.Model:
    """features -> dropout -> Dense(hidden, relu) -> dropout -> one softmax per head
    (``hidden_units=0``: the heads sit directly on the features)."""
    features = keras.Input((feature_dim,), name="features")
    x = keras.layers.Dropout(dropout, name="dropout_in")(features) if dropout else features
    if hidden_units:
        x = keras.layers.Dense(hidden_units, activation="relu", name="hidden")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name="dropout_hidden")(x)
    outputs = {
        h.name: keras.layers.Dense(h.num_classes, activation="softmax", name=h.name)(x)
        for h in heads
    }
    return keras.Model(features, outputs, name="stack_heads")


def targets(
    data: EvalData, heads: Sequence[Head]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """One-hot targets and 0/1 sample weights per head (label -1 -> all-zero target, weight 0)."""
    y, w = {}, {}
    for h in heads:
        labels = data.labels[h.name]
        onehot = np.zeros((len(labels), h.num_classes), np.float32)
        rows = np.flatnonzero(labels >= 0)
        onehot[rows, labels[rows]] = 1.0
        y[h.name] = onehot
        w[h.name] = (labels >= 0).astype(np.float32)
    return y, w


def load_members(model_paths: Sequence[str]) -> list[KerasPredictor]:
    """The member models (``.keras`` files or run folders), loaded with their own views."""
    return [load_keras_predictor(p) for p in model_paths]


def compile_head_model(
    model: keras.Model,
    heads: Sequence[Head],
    config: StackConfig,
    focal_gamma: float = 2.0,
    focal_alpha: float = 0.25,
) -> None:
    """AdamW with the masked focal losses, loss weights and weighted accuracies of training."""
    model.compile(
        optimizer=keras.optimizers.AdamW(config.learning_rate),
        loss=losses_lib.focal_losses(heads, focal_gamma, focal_alpha),
        loss_weights=losses_lib.loss_weights(heads),
        weighted_metrics=metrics_lib.head_metrics(heads),
    )


def train_stack(
    members: Sequence[KerasPredictor],
    train_data: EvalData,
    val_data: EvalData,
    config: StackConfig | None = None,
    *,
    heads: Sequence[Head] | None = None,
    tta: str = "none",
    tta_resize: float | None = None,
    bbox_margin: float | None = None,
    feature_batch_size: int = 32,
    focal_gamma: float = 2.0,
    focal_alpha: float = 0.25,
    verbose: int = 2,
) -> dict[str, Any]:
    """Trains the MLP on the members' concatenated features and writes the stack folder.

    Args:
      members: from :func:`load_members` (their ``name`` is the path they came from).
      config: the MLP's training options and ``output_dir``.
      tta, tta_resize: the views whose features are averaged.
      bbox_margin: overrides the members' own garment-box margins.

    Returns the ``metrics.json`` content (validation accuracy per head and their mean).
    """
    config = config or StackConfig()
    stack = FeatureStack(members)
    heads = tuple(heads if heads is not None else union_heads(members))
    options = {"tta": tta, "batch_size": feature_batch_size, "bbox_margin": bbox_margin}
    options["resize_ratio"] = tta_resize
    log.info("extracting features of %d members (dims %s)", len(members), stack.dims)
    x_train = stack.example_features(train_data.examples, **options)
    x_val = stack.example_features(val_data.examples, **options)
    y_train, w_train = targets(train_data, heads)
    y_val, w_val = targets(val_data, heads)

    keras.utils.set_random_seed(config.seed)
    model = build_head_model(x_train.shape[1], heads, config.hidden_units, config.dropout)
    compile_head_model(model, heads, config, focal_gamma, focal_alpha)
    out = config.output_dir
    os.makedirs(out, exist_ok=True)
    history = model.fit(
        x_train,
        y_train,
        sample_weight=w_train,
        validation_data=(x_val, y_val, w_val),
        batch_size=config.batch_size,
        epochs=config.epochs,
        verbose=verbose,
        callbacks=[
            metrics_lib.MeanHeadAccuracy(heads),
            keras.callbacks.EarlyStopping(
                monitor=f"val_{metrics_lib.MEAN_ACCURACY}",
                mode="max",
                patience=config.patience,
                restore_best_weights=True,
            ),
            keras.callbacks.CSVLogger(os.path.join(out, "history.csv")),
        ],
    )
    logs = model.evaluate(x_val, y_val, sample_weight=w_val, verbose=0, return_dict=True)
    val = {h.name: float(logs[f"{h.name}_accuracy"]) for h in heads if w_val[h.name].any()}
    if len(heads) == 1:
        val = {heads[0].name: float(logs[f"{heads[0].name}_accuracy"])}
    metrics = {
        "val_accuracy": val,
        "val_mean_accuracy": float(np.mean(list(val.values()))) if val else None,
        "epochs_run": len(history.history.get("loss", [])),
        "feature_dims": list(stack.dims),
        "members": [os.path.abspath(keras_file(m.name)) for m in members],
    }
    model.save(os.path.join(out, HEAD_MODEL_FILE))
    _write_spec(out, stack, heads, metrics["members"], tta, bbox_margin)
    with open(os.path.join(out, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=2)
    return metrics


def _write_spec(
    out: str,
    stack: FeatureStack,
    heads: Sequence[Head],
    members: Sequence[str],
    tta: str,
    bbox_margin: float | None,
) -> None:
    """``stack.json``: the members, the views the features were computed in, the head model."""
    inputs = override_margin(stack.inputs, bbox_margin)
    spec = {
        **heads_to_dict(heads),
        "members": list(members),
        "image_sizes": list(stack.image_sizes),
        "inputs": [{"image_size": i.image_size, "bbox_margin": i.bbox_margin} for i in inputs],
        "feature_dims": list(stack.dims),
        "head_model": HEAD_MODEL_FILE,
        "feature_tta": tta,
    }
    with open(os.path.join(out, STACK_FILE), "w", encoding="utf-8") as f:
        json.dump(spec, f, indent=2)
