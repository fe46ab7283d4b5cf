"""The TFX pipeline: ExampleGen -> StatisticsGen -> SchemaGen -> ExampleValidator -> Trainer ->
Evaluator -> Pusher, one definition for every runner (``local_runner.py``,
``kubeflow_v2_runner.py``).

- ``ImportExampleGen`` reads a prepared TFDS builder's TFRecords (``train`` and ``val`` ->
  the ``train`` and ``eval`` splits; :func:`pipelines.components.prepare_dataset`);
- ``StatisticsGen``; ``HeadSchemaGen`` (TFDV's inferred schema with the heads' label domains);
  ``ExampleValidator`` flags labels outside a head's classes, missing images, bad boxes;
- ``Trainer`` runs ``pipelines/models/trainer.py``'s ``run_fn`` (the fashion_keras library);
- ``Evaluator`` (TFMA) computes per-head accuracy on the ``predict_examples`` signature and
  blesses the model against a threshold and the latest blessed model;
- ``Pusher`` copies a blessed model to ``serving_model_dir/<version>/`` (TF Serving layout).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tfx import v1 as tfx

from fashion_keras.heads import Head, heads_to_dict
from pipelines import components, configs

#: Component ids, in pipeline order.
COMPONENT_IDS = (
    "ImportExampleGen",
    "StatisticsGen",
    "HeadSchemaGen",
    "ExampleValidator",
    "Trainer",
    "latest_blessed_model_resolver",
    "Evaluator",
    "Pusher",
)


def create_pipeline(
    pipeline_name: str,
    pipeline_root: str,
    data_root: str,
    serving_model_dir: str,
    heads: Sequence[Head],
    train_config: dict[str, Any],
    run_fn: str = configs.RUN_FN,
    module_file: str | None = None,
    train_steps: int | None = None,
    eval_steps: int | None = None,
    accuracy_threshold: float = 0.0,
    max_accuracy_drop: float = 0.0,
    thresholded_heads: Sequence[str] | None = None,
    metadata_connection_config: Any = None,
    beam_pipeline_args: Sequence[str] | None = None,
    enable_cache: bool = True,
) -> tfx.dsl.Pipeline:
    """The fashion_keras TFX pipeline.

    Args:
      pipeline_name: the pipeline's name (also in ML Metadata).
      pipeline_root: where the components write their artifacts.
      data_root: the folder of a prepared TFDS dataset's ``<builder>-<split>.tfrecord-*``.
      serving_model_dir: the Pusher's destination (TF Serving model base path).
      heads: the model's heads (``fashion_keras.heads.get_heads``).
      train_config: ``fashion_keras.training.config.TrainConfig`` fields for the Trainer.
      run_fn, module_file: the Trainer's entry point as a Python path
        (``pipelines.models.trainer.run_fn``; ``pipelines`` must be importable where the
        Trainer runs), or instead a module file (TFX packages it under the pipeline root).
      train_steps, eval_steps: Trainer steps over all epochs / validation batches (None: the
        whole split).
      accuracy_threshold, max_accuracy_drop, thresholded_heads: the blessing, see
        :func:`pipelines.components.eval_config`.
      metadata_connection_config: ML Metadata (None: the orchestrator's own, e.g. Vertex).
      beam_pipeline_args: Beam options of the Beam-based components (e.g. Dataflow).
    """
    heads = tuple(heads)
    example_gen = tfx.components.ImportExampleGen(
        input_base=data_root, input_config=components.example_gen_input_config()
    )
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = components.HeadSchemaGen(
        statistics=statistics_gen.outputs["statistics"],
        heads_json=components.heads_json(heads),
    )
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    entry = {"module_file": module_file} if module_file else {"run_fn": run_fn}
    trainer = tfx.components.Trainer(
        **entry,
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(splits=["train"], num_steps=train_steps),
        eval_args=tfx.proto.EvalArgs(splits=["eval"], num_steps=eval_steps),
        custom_config={"heads": heads_to_dict(heads), "train_config": dict(train_config)},
    )
    blessing = _blessing_components(
        example_gen,
        trainer,
        components.eval_config(heads, accuracy_threshold, max_accuracy_drop, thresholded_heads),
        serving_model_dir,
    )
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=[
            example_gen,
            statistics_gen,
            schema_gen,
            example_validator,
            trainer,
            *blessing,
        ],
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(beam_pipeline_args or []),
    )


def _blessing_components(
    example_gen: Any, trainer: Any, eval_config: Any, serving_model_dir: str
) -> list[Any]:
    """The last blessed model's resolver, the Evaluator (against it) and the Pusher."""
    model_resolver = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=model_resolver.outputs["model"],
        eval_config=eval_config,
        example_splits=["eval"],
    )
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=serving_model_dir)
        ),
    )
    return [model_resolver, evaluator, pusher]
