"""Compiles the TFX pipeline for Kubeflow Pipelines V2 / Vertex AI Pipelines.

``python -m pipelines.kubeflow_v2_runner`` writes ``fashion-keras_pipeline.json`` (a pipeline
spec for Vertex AI Pipelines or KFP v2); the Beam-based components run on Dataflow. Submit it
with ``google.cloud.aiplatform.PipelineJob(template_path=...)``. Settings come from
``pipelines/configs.py`` and the environment (``GOOGLE_CLOUD_PROJECT``, ``GOOGLE_CLOUD_REGION``,
``GCS_BUCKET_NAME``, ``PIPELINE_IMAGE``, ``GCS_DATA_ROOT``).

The image must hold this repository at ``/pipeline`` (on ``PYTHONPATH``, so ``pipelines`` imports)
with ``pip install /pipeline[tfx]`` done, and the data must be a TFDS dataset prepared on GCS
(``tfds build datasets/deepfashion_attributes --manual_dir ... --data_dir gs://...``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from tfx import v1 as tfx

from pipelines import components, configs, pipeline


def compile_pipeline(
    output_file: str,
    *,
    heads: str = configs.HEADS,
    data_root: str = configs.GCS_DATA_ROOT,
    image: str = configs.PIPELINE_IMAGE,
    pipeline_root: str | None = None,
    serving_model_dir: str | None = None,
    beam_pipeline_args: Sequence[str] = configs.DATAFLOW_BEAM_PIPELINE_ARGS,
    train_config: dict | None = None,
    train_steps: int | None = configs.TRAIN_NUM_STEPS,
    eval_steps: int | None = configs.EVAL_NUM_STEPS,
) -> str:
    """Writes the Kubeflow V2 pipeline spec (JSON) of the pipeline to ``output_file``.

    Returns:
      ``output_file``.
    """
    bucket = f"gs://{configs.GCS_BUCKET_NAME}"
    pipeline_root = pipeline_root or f"{bucket}/tfx_pipeline_output/{configs.PIPELINE_NAME}"
    serving_model_dir = serving_model_dir or f"{bucket}/serving_model/{configs.PIPELINE_NAME}"
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
        output_dir=os.path.dirname(os.path.abspath(output_file)),
        output_filename=os.path.basename(output_file),
    )
    runner.run(
        pipeline.create_pipeline(
            pipeline_name=configs.PIPELINE_NAME,
            pipeline_root=pipeline_root,
            data_root=data_root,
            serving_model_dir=serving_model_dir,
            heads=components.resolve_heads(heads),
            train_config=dict(train_config or configs.TRAIN_CONFIG),
            train_steps=train_steps,
            eval_steps=eval_steps,
            accuracy_threshold=configs.ACCURACY_THRESHOLD,
            max_accuracy_drop=configs.MAX_ACCURACY_DROP,
            beam_pipeline_args=beam_pipeline_args,
        )
    )
    return output_file


def main(argv: Sequence[str] | None = None) -> int:
    """Compiles the pipeline spec; returns 0."""
    p = argparse.ArgumentParser(
        prog="python -m pipelines.kubeflow_v2_runner", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--output", default=f"{configs.PIPELINE_NAME}_pipeline.json")
    p.add_argument("--heads", default=configs.HEADS, help="preset(s) or a YAML/JSON head spec")
    p.add_argument("--data-root", default=configs.GCS_DATA_ROOT, help="prepared TFDS folder")
    p.add_argument("--image", default=configs.PIPELINE_IMAGE, help="the pipeline's image")
    args = p.parse_args(argv)
    path = compile_pipeline(
        args.output, heads=args.heads, data_root=args.data_root, image=args.image
    )
    print(f"Pipeline spec written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
