"""Feature-stacking ensemble: ``python -m fashion_keras.train_stack MODEL.keras MODEL.keras ...``.

The competition variant of ensembling: the pooled features of several trained, frozen
backbones (each at its own input size) are concatenated, and a small MLP with one softmax per
head is trained on them with the same masked focal losses and weighted metrics as the main
training. The output folder (``stack.json``, ``head_model.keras``, ``metrics.json``,
``history.csv``) is a model that ``fashion_keras.evaluate`` and ``fashion_keras.predict``
accept like any other.

Features are computed once per split (the evaluation view, or averaged over ``--tta`` views),
so training the MLP takes seconds. Targets are the hard labels (FashionAI ``m_half`` soft
targets are not used here).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from fashion_keras import evaluate as evaluate_lib
from fashion_keras import inference
from fashion_keras import losses as losses_lib
from fashion_keras import metrics as metrics_lib
from fashion_keras.data import pipeline, sources
from fashion_keras.data.preprocess import DEFAULT_BBOX_MARGIN
from fashion_keras.heads import Head, get_heads, heads_to_dict

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
    data: evaluate_lib.EvalData, heads: Sequence[Head]
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


def load_members(model_paths: Sequence[str]) -> list[inference.KerasPredictor]:
    """The member models (``.keras`` files or run folders), loaded."""
    return [
        inference.KerasPredictor(inference.load_keras_model(_keras_file(p)), name=p)
        for p in model_paths
    ]


def train_stack(
    members: Sequence[inference.KerasPredictor],
    train_data: evaluate_lib.EvalData,
    val_data: evaluate_lib.EvalData,
    output_dir: str,
    *,
    heads: Sequence[Head] | None = None,
    tta: str = "none",
    batch_size: int = 64,
    feature_batch_size: int = 32,
    epochs: int = 30,
    hidden_units: int = 512,
    dropout: float = 0.3,
    learning_rate: float = 1e-3,
    focal_gamma: float = 2.0,
    focal_alpha: float = 0.25,
    patience: int = 5,
    bbox_margin: float = DEFAULT_BBOX_MARGIN,
    seed: int = 0,
    verbose: int = 2,
) -> dict[str, Any]:
    """Trains the MLP on the members' concatenated features and writes the stack folder.

    ``members``: from :func:`load_members` (their ``name`` is the path they came from).

    Returns the ``metrics.json`` content (validation accuracy per head and their mean).
    """
    stack = inference.FeatureStack([m.model for m in members])
    heads = tuple(heads if heads is not None else inference.union_heads(members))
    options = {"tta": tta, "batch_size": feature_batch_size, "bbox_margin": bbox_margin}
    log.info("extracting features of %d members (dims %s)", len(members), stack.dims)
    x_train = stack.example_features(train_data.examples, **options)
    x_val = stack.example_features(val_data.examples, **options)
    y_train, w_train = targets(train_data, heads)
    y_val, w_val = targets(val_data, heads)

    keras.utils.set_random_seed(seed)
    model = build_head_model(x_train.shape[1], heads, hidden_units, dropout)
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate),
        loss=losses_lib.focal_losses(heads, focal_gamma, focal_alpha),
        loss_weights=losses_lib.loss_weights(heads),
        weighted_metrics=metrics_lib.head_metrics(heads),
    )
    os.makedirs(output_dir, exist_ok=True)
    monitor = f"val_{metrics_lib.MEAN_ACCURACY}"
    history = model.fit(
        x_train,
        y_train,
        sample_weight=w_train,
        validation_data=(x_val, y_val, w_val),
        batch_size=batch_size,
        epochs=epochs,
        verbose=verbose,
        callbacks=[
            metrics_lib.MeanHeadAccuracy(heads),
            keras.callbacks.EarlyStopping(
                monitor=monitor, mode="max", patience=patience, restore_best_weights=True
            ),
            keras.callbacks.CSVLogger(os.path.join(output_dir, "history.csv")),
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
        "members": [os.path.abspath(_keras_file(m.name)) for m in members],
    }
    model.save(os.path.join(output_dir, HEAD_MODEL_FILE))
    spec = {
        **heads_to_dict(heads),
        "members": metrics["members"],
        "image_sizes": list(stack.image_sizes),
        "feature_dims": list(stack.dims),
        "head_model": HEAD_MODEL_FILE,
        "feature_tta": tta,
    }
    with open(os.path.join(output_dir, inference.STACK_FILE), "w", encoding="utf-8") as f:
        json.dump(spec, f, indent=2)
    with open(os.path.join(output_dir, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=2)
    return metrics


def _keras_file(path: str) -> str:
    """A member path: a ``.keras`` file or a training run folder (its ``model.keras``)."""
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "model.keras")):
        return os.path.join(path, "model.keras")
    if not (os.path.isfile(path) and path.endswith(".keras")):
        raise inference.ModelLoadError(
            f"{path}: feature stacking needs Keras models (.keras files or training run "
            "folders); a SavedModel has no pooled-feature output"
        )
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fashion_keras.train_stack",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("models", nargs="+", help=".keras files or training run folders")
    parser.add_argument("--heads", default=None, help="head spec (default: the members' heads)")
    evaluate_lib.add_data_arguments(parser)
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--val-split", default="val")
    parser.add_argument("--tta", choices=inference.TTA_MODES, default="none")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--hidden-units", type=int, default=512)
    parser.add_argument("--dropout", type=float, default=0.3)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--patience", type=int, default=5, help="early stopping patience")
    parser.add_argument("--max-examples", type=int, default=None, help="use a prefix per split")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", default="runs/stack")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    try:
        heads = get_heads(args.heads) if args.heads else None
        members = load_members(inference.split_model_paths(args.models))
    except (ValueError, OSError) as e:
        raise SystemExit(f"error: {e}") from None
    heads = heads or inference.union_heads(members)
    try:
        builder = evaluate_lib.builder_from_args(args, heads)
        pipeline.check_heads(heads, builder.info.features, builder.name)
        data = {
            split: evaluate_lib.load_eval_data(
                sources.load_split(builder, split), heads, args.max_examples
            )
            for split in (args.train_split, args.val_split)
        }
    except (ValueError, OSError) as e:  # missing files, bad rows, heads the data lacks
        raise SystemExit(f"error: {e}") from None
    metrics = train_stack(
        members,
        data[args.train_split],
        data[args.val_split],
        args.output_dir,
        heads=heads,
        tta=args.tta,
        batch_size=args.batch_size,
        epochs=args.epochs,
        hidden_units=args.hidden_units,
        dropout=args.dropout,
        learning_rate=args.learning_rate,
        patience=args.patience,
        seed=args.seed,
    )
    print(json.dumps(metrics["val_accuracy"], indent=2))
    print(f"val mean accuracy {metrics['val_mean_accuracy']:.4f}; wrote {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
