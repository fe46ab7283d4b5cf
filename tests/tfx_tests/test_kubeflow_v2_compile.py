"""TFX tier, compile: the Kubeflow V2 runner writes a pipeline spec with every component."""

from __future__ import annotations

import json

import pytest
from tfx_helpers import TFX_SKIP_REASON, custom_heads_file

pytest.importorskip("tfx", reason=TFX_SKIP_REASON)
pytest.importorskip("kfp.pipeline_spec", reason="kfp-pipeline-spec is missing: pip install .[tfx]")


def _compile(tmp_path, heads: str) -> dict:
    from pipelines import kubeflow_v2_runner

    path = kubeflow_v2_runner.compile_pipeline(
        str(tmp_path / "spec.json"),
        heads=heads,
        data_root="gs://bucket/tfds/deepfashion_attributes/default/1.1.0",
        image="gcr.io/my-project/fashion-keras-pipeline:test",
        pipeline_root="gs://bucket/root",
        serving_model_dir="gs://bucket/serving",
    )
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _spec(job: dict) -> dict:
    return job.get("pipelineSpec", job)


def test_spec_has_every_component_on_the_image_with_dataflow_args(tmp_path):
    from pipelines import configs, pipeline

    job = _compile(tmp_path, "deepfashion6")
    spec = _spec(job)
    tasks = spec["root"]["dag"]["tasks"]
    for component_id in pipeline.COMPONENT_IDS:
        assert any(t == component_id or t.startswith(component_id + "-") for t in tasks), (
            component_id,
            sorted(tasks),
        )
    # the DAG: Trainer after SchemaGen, Evaluator after Trainer, Pusher after Evaluator
    deps = {name: set(task.get("dependentTasks", [])) for name, task in tasks.items()}
    assert "HeadSchemaGen" in deps["Trainer"] and "ImportExampleGen" in deps["Trainer"]
    assert "Trainer" in deps["Evaluator"] and "Evaluator" in deps["Pusher"]
    executors = spec["deploymentSpec"]["executors"]
    images = {e["container"]["image"] for e in executors.values() if "container" in e}
    assert images == {"gcr.io/my-project/fashion-keras-pipeline:test"}
    text = json.dumps(job)
    assert "DataflowRunner" in text and f"--project={configs.GOOGLE_CLOUD_PROJECT}" in text
    assert "gs://bucket/tfds/deepfashion_attributes/default/1.1.0" in text
    assert "gs://bucket/serving" in text
    assert "predict_examples" in text and "LabelledAccuracy" in text  # the Evaluator's config
    assert job.get("runtimeConfig", {}).get("gcsOutputDirectory") == "gs://bucket/root"


@pytest.mark.parametrize("heads", ["fashionai8", "custom"])
def test_spec_carries_the_head_spec(tmp_path, heads):
    from fashion_keras.heads import get_heads

    spec_heads = custom_heads_file() if heads == "custom" else heads
    text = json.dumps(_compile(tmp_path, spec_heads))
    for head in get_heads(spec_heads):
        assert f"labels/{head.name}" in text  # Evaluator label keys
        assert head.classes[-1] in text  # Trainer custom_config / HeadSchemaGen parameter
