"""Settings of the TFX pipeline (the TFX template's ``configs.py``).

Local runs (``python -m pipelines.local_runner``) override most of these with flags; the Kubeflow V2
runner (``python -m pipelines.kubeflow_v2_runner``) reads the Google Cloud ones from the environment:
``GOOGLE_CLOUD_PROJECT``, ``GOOGLE_CLOUD_REGION``, ``GCS_BUCKET_NAME``, ``PIPELINE_IMAGE``.
"""

from __future__ import annotations

import dataclasses
import os

from fashion_keras.sections import Section, option

PIPELINE_NAME = "fashion-keras"

# --- model / training (Trainer custom_config; every TrainConfig field may be given) ---------------
#: Heads: a preset (deepfashion6, fashionai8, deepfashion_category), presets joined by commas, or a
#: YAML/JSON head spec file.
HEADS = "deepfashion6"
#: TFDS builder (``name`` or ``name/config``) that prepares the data for ExampleGen.
DATASET = "deepfashion_attributes"
#: TrainConfig fields for the Trainer (``fashion_keras.training.config.TrainConfig``); the rest default.
TRAIN_CONFIG = {
    "backbone": "seresnet_tiny",
    "image_size": 64,
    "batch_size": 32,
    "epochs": 2,
    "learning_rate": 3e-3,
}
#: The Trainer's entry point (``pipelines/models/trainer.py``), imported by its Python path.
RUN_FN = "pipelines.models.trainer.run_fn"
#: Trainer steps in total (TrainArgs.num_steps) and evaluation steps (EvalArgs.num_steps).
TRAIN_NUM_STEPS = 200
EVAL_NUM_STEPS = 20

# --- blessing (Evaluator) ----------------------------------------------------------------------
#: Every head's accuracy (over the examples labelled for it) must reach this to bless the model.
ACCURACY_THRESHOLD = 0.0
#: ... and may fall at most this far below the last blessed model's (absolute).
MAX_ACCURACY_DROP = 0.0


@dataclasses.dataclass
class PipelineConfig(Section):
    """The local runner's own options (the training sections give the rest)."""

    output_dir: str = option("runs/tfx", "Pipeline root, ML Metadata and serving/ go here.")
    pipeline_name: str = option(PIPELINE_NAME, "The pipeline's name in ML Metadata.")
    train_steps: int = option(
        TRAIN_NUM_STEPS,
        "Training steps over all epochs (0: one pass over the train split per epoch).",
    )
    eval_steps: int = option(
        EVAL_NUM_STEPS, "Validation batches in training (0: the whole eval split)."
    )
    accuracy_threshold: float = option(
        ACCURACY_THRESHOLD,
        "Bless only if every labelled head reaches this accuracy on the eval split.",
    )
    max_accuracy_drop: float = option(
        MAX_ACCURACY_DROP, "... and is at most this far below the last blessed model."
    )
    module_file: str | None = option(
        None,
        "A Trainer module file with a run_fn to use instead of pipelines/models/trainer.py.",
    )
    cache: bool = option(True, "Reuse the outputs of unchanged components (--no-cache: re-run).")


# --- Google Cloud (Kubeflow V2 / Vertex AI Pipelines) ------------------------------------------
GOOGLE_CLOUD_PROJECT = os.environ.get("GOOGLE_CLOUD_PROJECT", "my-project")
GOOGLE_CLOUD_REGION = os.environ.get("GOOGLE_CLOUD_REGION", "us-central1")
GCS_BUCKET_NAME = os.environ.get("GCS_BUCKET_NAME", f"{GOOGLE_CLOUD_PROJECT}-kubeflowpipelines")
#: Container image with this repository at /pipeline, on PYTHONPATH (the Trainer imports
#: ``pipelines.models.trainer``, TFMA ``pipelines.metrics``), and ``pip install /pipeline[tfx]``.
PIPELINE_IMAGE = os.environ.get(
    "PIPELINE_IMAGE", f"gcr.io/{GOOGLE_CLOUD_PROJECT}/{PIPELINE_NAME}-pipeline"
)
#: The prepared TFDS dataset on GCS (``tfds build ... --data_dir gs://...``): the folder holding
#: ``<builder>-train.tfrecord-*`` and ``<builder>-val.tfrecord-*``.
GCS_DATA_ROOT = os.environ.get(
    "GCS_DATA_ROOT", f"gs://{GCS_BUCKET_NAME}/tfds/deepfashion_attributes/default/1.1.0"
)
#: Beam arguments for the Beam-based components (StatisticsGen, Evaluator, ...) on Dataflow.
DATAFLOW_BEAM_PIPELINE_ARGS = [
    f"--project={GOOGLE_CLOUD_PROJECT}",
    "--runner=DataflowRunner",
    f"--temp_location=gs://{GCS_BUCKET_NAME}/tmp",
    f"--region={GOOGLE_CLOUD_REGION}",
    "--disk_size_gb=50",
    "--experiments=use_runner_v2",
    f"--sdk_container_image={PIPELINE_IMAGE}",
]
#: Beam arguments for local runs: the in-process DirectRunner.
LOCAL_BEAM_PIPELINE_ARGS = ["--direct_num_workers=1"]
