"""TFX tier, end to end: ``python -m pipelines.local_runner`` (LocalDagRunner, SQLite metadata) on
small demo data with a tiny backbone; every component runs, the model is blessed and pushed in
TF Serving layout, the pushed model answers JPEG bytes, and a second run compares its model
with the last blessed one."""

from __future__ import annotations

import glob
import io
import os

import numpy as np
import pytest
from tfx_helpers import TFX_SKIP_REASON, TINY_TRAIN_CONFIG

pytest.importorskip("tfx", reason=TFX_SKIP_REASON)

pytestmark = pytest.mark.slow


def _flags(small_demo, out) -> list[str]:
    return [
        "--output-dir",
        str(out),
        "--data-dir",
        small_demo["manual_dir"],
        "--tfds-data-dir",
        small_demo["tfds_dir"],
        "--heads",
        "deepfashion6",
        "--backbone",
        TINY_TRAIN_CONFIG["backbone"],
        "--image-size",
        str(TINY_TRAIN_CONFIG["image_size"]),
        "--batch-size",
        str(TINY_TRAIN_CONFIG["batch_size"]),
        "--epochs",
        "1",
        "--train-steps",
        "3",
        "--eval-steps",
        "1",
        "--accuracy-threshold",
        "0.0",
    ]


def _pushed_model_accuracy(out, small_demo) -> dict[str, float]:
    """Each head's accuracy of the pushed model on the val split's labelled rows, through the
    signature the Evaluator calls (``predict_examples`` on the serialized records)."""
    import tensorflow as tf

    from fashion_keras.heads import get_heads

    [version] = os.listdir(out / "serving")
    predict = tf.saved_model.load(str(out / "serving" / version)).signatures["predict_examples"]
    files = tf.io.gfile.glob(f"{small_demo['builder'].data_path}/*-val.tfrecord-*")
    records = [r.numpy() for r in tf.data.TFRecordDataset(files)]
    probs = predict(examples=tf.constant(records))
    accuracy = {}
    for head in get_heads("deepfashion6"):
        labels = np.array(
            [
                tf.train.Example.FromString(r)
                .features.feature[f"labels/{head.name}"]
                .int64_list.value[0]
                for r in records
            ]
        )
        predicted = probs[f"{head.name}_class"].numpy()
        accuracy[head.name] = float(np.mean(predicted[labels >= 0] == labels[labels >= 0]))
    return accuracy


def _node_states(metadata_path: str) -> dict[str, list[int]]:
    """Component id -> the states of its executions, from ML Metadata."""
    from tfx.orchestration import metadata

    config = metadata.sqlite_metadata_connection_config(metadata_path)
    with metadata.Metadata(config) as m:
        states: dict[str, list[int]] = {}
        for ctx in m.store.get_contexts_by_type("node"):
            component_id = ctx.name.split(".")[-1]
            states[component_id] = [
                e.last_known_state for e in m.store.get_executions_by_context(ctx.id)
            ]
    return states


def _evaluator_inputs(metadata_path: str) -> list[set[str]]:
    """The input names of each Evaluator execution, oldest first."""
    from ml_metadata.proto import metadata_store_pb2
    from tfx.orchestration import metadata

    config = metadata.sqlite_metadata_connection_config(metadata_path)
    with metadata.Metadata(config) as m:
        [ctx] = [c for c in m.store.get_contexts_by_type("node") if c.name.endswith(".Evaluator")]
        runs = sorted(m.store.get_executions_by_context(ctx.id), key=lambda e: e.id)
        inputs = []
        for execution in runs:
            events = m.store.get_events_by_execution_ids([execution.id])
            inputs.append(
                {
                    step.key
                    for e in events
                    if e.type == metadata_store_pb2.Event.INPUT
                    for step in e.path.steps
                    if step.HasField("key")
                }
            )
    return inputs


def _jpeg() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((48, 40, 3), (30, 90, 200), np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def test_local_runner_end_to_end(small_demo, tmp_path):
    import tensorflow as tf
    import tensorflow_model_analysis as tfma
    from ml_metadata.proto import metadata_store_pb2
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    from fashion_keras.heads import get_heads
    from pipelines import local_runner, pipeline

    out = tmp_path / "tfx"
    assert local_runner.main(_flags(small_demo, out)) == 0

    done = {metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED}
    states = _node_states(str(out / "metadata.db"))
    for component_id in pipeline.COMPONENT_IDS:
        if component_id == "latest_blessed_model_resolver":
            continue  # a resolver node, not an execution
        assert states.get(component_id), f"{component_id} did not run: {states}"
        assert set(states[component_id]) <= done, (component_id, states[component_id])

    root = out / "pipeline_root"
    # clean demo data: no anomalies in either split
    for path in glob.glob(str(root / "ExampleValidator" / "anomalies" / "*" / "Split-*" / "*.pb")):
        anomalies = anomalies_pb2.Anomalies.FromString(open(path, "rb").read())
        assert not anomalies.anomaly_info, (path, dict(anomalies.anomaly_info))
    [blessing] = glob.glob(str(root / "Evaluator" / "blessing" / "*"))
    assert os.path.exists(os.path.join(blessing, "BLESSED")), os.listdir(blessing)
    [evaluation] = glob.glob(str(root / "Evaluator" / "evaluation" / "*"))
    [(_, metrics)] = tfma.load_eval_result(evaluation).slicing_metrics
    accuracy = _pushed_model_accuracy(out, small_demo)
    for head in ("texture", "sleeve", "length", "neckline", "fabric", "fit"):
        # TFMA's per-head accuracy is the pushed model's, on the labelled rows of the val split
        got = metrics[head][""]["labelled_accuracy"]["doubleValue"]
        assert got == pytest.approx(accuracy[head], abs=1e-6), head
        assert metrics[head][""]["labelled_examples"]["doubleValue"] == 32  # the val split

    # the pushed model: TF Serving layout <serving>/<version>/saved_model.pb, answers JPEG bytes
    [version] = os.listdir(out / "serving")
    assert version.isdigit()
    loaded = tf.saved_model.load(str(out / "serving" / version))
    result = loaded.signatures["serving_default"](image_bytes=tf.constant([_jpeg()]))
    for head in get_heads("deepfashion6"):
        np.testing.assert_allclose(result[f"{head.name}_probs"].numpy().sum(), 1.0, atol=1e-4)
        assert result[f"{head.name}_label"].numpy()[0].decode() in head.classes

    # second run, same inputs: everything up to the Trainer is cached, the Evaluator compares
    # the model with the last blessed one (itself: no drop, so blessed again)
    assert local_runner.main(_flags(small_demo, out)) == 0
    evaluations = glob.glob(str(root / "Evaluator" / "evaluation" / "*"))
    assert len(evaluations) == 2, evaluations
    latest = max(evaluations, key=lambda p: int(os.path.basename(p)))
    assert _evaluator_inputs(str(out / "metadata.db"))[-1] >= {"model", "baseline_model"}
    validation = tfma.load_validation_result(latest)
    assert validation.validation_ok, validation
    assert len(glob.glob(str(root / "Evaluator" / "blessing" / "*" / "BLESSED"))) == 2
