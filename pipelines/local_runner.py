"""Runs the TFX pipeline locally with LocalDagRunner and an SQLite ML Metadata store.

``python pipelines/local_runner.py`` with no flags prepares the embedded synthetic demo data
(DeepFashion layout, cached under ``~/.cache/fashion_keras``) and runs ExampleGen, StatisticsGen,
HeadSchemaGen, ExampleValidator, Trainer (tiny SE-ResNet, 64 px), Evaluator and Pusher, writing
everything under ``--output-dir`` (default ``runs/tfx``):

- ``pipeline_root/``: the components' artifacts;
- ``metadata.db``: ML Metadata (SQLite); a second run reuses unchanged steps (cache) and
  compares the new model with the last blessed one;
- ``serving/<version>/``: the pushed SavedModel (TF Serving model base path).

TFX 1.21 needs glibc >= 2.39 (Debian 13, Ubuntu 24.04): on older hosts run it in the Debian 13
root, ``scripts/tfx_root.sh run python pipelines/local_runner.py ...``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

if __package__ in (None, ""):  # run as a script: make `pipelines` and `fashion_keras` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tfx import v1 as tfx  # noqa: E402

from pipelines import components, configs, pipeline  # noqa: E402


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The runner's flags (``--help`` lists them)."""
    p = argparse.ArgumentParser(
        prog="python pipelines/local_runner.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--output-dir", default="runs/tfx", help="pipeline root, metadata, serving")
    p.add_argument("--pipeline-name", default=configs.PIPELINE_NAME)
    p.add_argument(
        "--heads",
        default=configs.HEADS,
        help="preset (deepfashion6, fashionai8, deepfashion_category), presets joined by commas, "
        "or a YAML/JSON head spec",
    )
    p.add_argument(
        "--dataset",
        default=configs.DATASET,
        help="TFDS builder (NAME or NAME/CONFIG) preparing --data-dir: deepfashion_attributes, "
        "deepfashion_category, fashionai_attributes, custom_csv",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="manual download folder of the release (unset: the synthetic demo data)",
    )
    p.add_argument("--tfds-data-dir", default=None, help="where TFDS prepares the dataset")
    p.add_argument("--backbone", default=configs.TRAIN_CONFIG["backbone"])
    p.add_argument("--image-size", type=int, default=configs.TRAIN_CONFIG["image_size"])
    p.add_argument("--batch-size", type=int, default=configs.TRAIN_CONFIG["batch_size"])
    p.add_argument("--epochs", type=int, default=configs.TRAIN_CONFIG["epochs"])
    p.add_argument("--learning-rate", type=float, default=configs.TRAIN_CONFIG["learning_rate"])
    p.add_argument(
        "--train-steps",
        type=int,
        default=configs.TRAIN_NUM_STEPS,
        help="training steps over all epochs (0: one pass over the train split per epoch)",
    )
    p.add_argument(
        "--eval-steps",
        type=int,
        default=configs.EVAL_NUM_STEPS,
        help="validation batches in training (0: the whole eval split)",
    )
    p.add_argument(
        "--accuracy-threshold",
        type=float,
        default=configs.ACCURACY_THRESHOLD,
        help="bless only if every labelled head reaches this accuracy on the eval split",
    )
    p.add_argument(
        "--max-accuracy-drop",
        type=float,
        default=configs.MAX_ACCURACY_DROP,
        help="... and is at most this far below the last blessed model",
    )
    p.add_argument(
        "--module-file",
        default=None,
        help="a Trainer module file with a run_fn to use instead of pipelines/models/trainer.py",
    )
    p.add_argument("--no-cache", action="store_true", help="re-run every component")
    return p.parse_args(argv)


def build_pipeline(args: argparse.Namespace) -> tfx.dsl.Pipeline:
    """Prepares the data and returns the pipeline for ``args`` (see :func:`parse_args`)."""
    heads = components.resolve_heads(args.heads)
    data = components.prepare_dataset(heads, args.dataset, args.data_dir, args.tfds_data_dir)
    out = os.path.abspath(args.output_dir)
    train_config = {
        "backbone": args.backbone,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "learning_rate": args.learning_rate,
    }
    return pipeline.create_pipeline(
        pipeline_name=args.pipeline_name,
        pipeline_root=os.path.join(out, "pipeline_root"),
        data_root=data.data_root,
        module_file=args.module_file,
        serving_model_dir=os.path.join(out, "serving"),
        heads=heads,
        train_config=train_config,
        train_steps=args.train_steps or None,
        eval_steps=args.eval_steps or None,
        accuracy_threshold=args.accuracy_threshold,
        max_accuracy_drop=args.max_accuracy_drop,
        thresholded_heads=data.labelled_heads,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            os.path.join(out, "metadata.db")
        ),
        beam_pipeline_args=configs.LOCAL_BEAM_PIPELINE_ARGS,
        enable_cache=not args.no_cache,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the pipeline; returns 0."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    tfx.orchestration.LocalDagRunner().run(build_pipeline(args))
    serving = os.path.join(args.output_dir, "serving")
    versions = sorted(os.listdir(serving)) if os.path.isdir(serving) else []
    print(f"Pipeline done: artifacts in {os.path.join(args.output_dir, 'pipeline_root')}")
    if versions:
        print(f"Pushed model versions (TF Serving layout) in {serving}: {', '.join(versions)}")
    else:
        print("No model pushed: the Evaluator did not bless one (see its evaluation artifact)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
