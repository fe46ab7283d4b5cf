"""Runs the TFX pipeline locally with LocalDagRunner and an SQLite ML Metadata store.

``python -m pipelines.local_runner`` with no flags prepares the embedded synthetic demo data
(DeepFashion layout, cached under ``~/.cache/fashion_keras``) and runs ExampleGen, StatisticsGen,
HeadSchemaGen, ExampleValidator, Trainer (tiny SE-ResNet, 64 px), Evaluator and Pusher, writing
everything under ``--output-dir`` (default ``runs/tfx``):

- ``pipeline_root/``: the components' artifacts;
- ``metadata.db``: ML Metadata (SQLite); a second run reuses unchanged steps (cache) and
  compares the new model with the last blessed one;
- ``serving/<version>/``: the pushed SavedModel (TF Serving model base path).

TFX 1.21 needs glibc >= 2.39 (Debian 13, Ubuntu 24.04): on older hosts run it in the Debian 13
root, ``scripts/tfx_root.sh run python -m pipelines.local_runner ...``.

The data, model and optimisation flags are the training sections' own fields
(:mod:`fashion_keras.training.config`), with the pipeline's defaults from ``configs.py``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from tfx import v1 as tfx

from fashion_keras import cli, sections
from fashion_keras.data.config import DataConfig, PreprocessConfig
from fashion_keras.training.config import ModelConfig, OptimizationConfig
from pipelines import components, configs, pipeline

#: Data fields the pipeline does not take (one dataset; ExampleGen's splits; run_fn owns
#: steps_per_epoch).
DATA_EXCLUDE = ("sources", "source_weights", "train_split", "val_split")
#: Sections of the Trainer's train_config, each with the fields run_fn sets itself excluded.
TRAIN_SECTIONS = {
    "preprocessing": (PreprocessConfig, ()),
    "model": (ModelConfig, ()),
    "optimization": (OptimizationConfig, ("steps_per_epoch",)),
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The runner's flags (``--help`` lists them)."""
    p = cli.command_parser("python -m pipelines.local_runner", __doc__.split("\n\n")[0])
    sections.add_arguments(p.add_argument_group("pipeline"), configs.PipelineConfig)
    defaults = {"heads": configs.HEADS, "dataset": configs.DATASET, **configs.TRAIN_CONFIG}
    data = p.add_argument_group("data")
    sections.add_arguments(data, DataConfig, exclude=DATA_EXCLUDE, defaults=defaults)
    for name, (section, exclude) in TRAIN_SECTIONS.items():
        group = p.add_argument_group(name)
        sections.add_arguments(group, section, exclude=exclude, defaults=defaults)
    return p.parse_args(argv)


def train_config(args: argparse.Namespace) -> dict:
    """The Trainer's ``train_config``: ``configs.TRAIN_CONFIG`` with the flags given."""
    given = {}
    for section, _ in TRAIN_SECTIONS.values():
        given.update(sections.given_fields(section, args))
    return {**configs.TRAIN_CONFIG, **given}


def build_pipeline(args: argparse.Namespace) -> tfx.dsl.Pipeline:
    """Prepares the data and returns the pipeline for ``args`` (see :func:`parse_args`)."""
    data_config = sections.from_args(DataConfig, args)
    if args.heads is None:
        data_config.heads = configs.HEADS
    if args.dataset is None:
        data_config.dataset = configs.DATASET
    run = sections.from_args(configs.PipelineConfig, args)
    heads = components.resolve_heads(data_config.heads)
    data = components.prepare_dataset(heads, data_config)
    out = os.path.abspath(run.output_dir)
    return pipeline.create_pipeline(
        pipeline_name=run.pipeline_name,
        pipeline_root=os.path.join(out, "pipeline_root"),
        data_root=data.data_root,
        module_file=run.module_file,
        serving_model_dir=os.path.join(out, "serving"),
        heads=heads,
        train_config=train_config(args),
        train_steps=run.train_steps or None,
        eval_steps=run.eval_steps or None,
        accuracy_threshold=run.accuracy_threshold,
        max_accuracy_drop=run.max_accuracy_drop,
        thresholded_heads=data.labelled_heads,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            os.path.join(out, "metadata.db")
        ),
        beam_pipeline_args=configs.LOCAL_BEAM_PIPELINE_ARGS,
        enable_cache=run.cache,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the pipeline; returns 0."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    tfx.orchestration.LocalDagRunner().run(build_pipeline(args))
    out = sections.from_args(configs.PipelineConfig, args).output_dir
    serving = os.path.join(out, "serving")
    versions = sorted(os.listdir(serving)) if os.path.isdir(serving) else []
    print(f"Pipeline done: artifacts in {os.path.join(out, 'pipeline_root')}")
    if versions:
        print(f"Pushed model versions (TF Serving layout) in {serving}: {', '.join(versions)}")
    else:
        print("No model pushed: the Evaluator did not bless one (see its evaluation artifact)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
