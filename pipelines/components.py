"""Pieces of the pipeline that know the taxonomy: the data for ExampleGen, the schema, the
Evaluator's configuration.

- :func:`prepare_dataset` prepares a TFDS builder of ``datasets/`` (or the synthetic demo) and
  returns the folder of its TFRecords, which ``ImportExampleGen`` reads as they are: serialized
  ``tf.train.Example`` protos in TFDS's encoding (``image`` bytes, ``bbox`` float[4],
  ``labels/<head>`` int64 with -1 = unlabelled, FashionAI's ``soft_labels/<head>``).
- :func:`head_schema` / :func:`HeadSchemaGen`: TFDV's inferred schema, tightened with the head
  spec, so ExampleValidator flags a label outside a head's classes, a missing image or a box
  outside [0, 1].
- :func:`eval_config`: TFMA per-head accuracy (:class:`pipelines.metrics.LabelledAccuracy`) on
  the ``predict_examples`` signature, a blessing threshold and a comparison with the last
  blessed model.
"""

import dataclasses
import json
import os
from collections.abc import Sequence

import tensorflow_data_validation as tfdv
import tensorflow_model_analysis as tfma
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2
from tfx import v1 as tfx
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.types import artifact_utils
from tfx.utils import io_utils

from fashion_keras.data import pipeline as data_pipeline
from fashion_keras.data import sources
from fashion_keras.data.config import DataConfig
from fashion_keras.export import output_names
from fashion_keras.heads import Head, get_heads, heads_from_dict, heads_to_dict

#: TFX split names and the TFDS split each one is read from.
SPLITS = {"train": "train", "eval": "val"}
SCHEMA_FILE = "schema.pbtxt"
#: The exported signature the Evaluator calls (serialized tf.Examples in, see fashion_keras.export).
EVAL_SIGNATURE = "predict_examples"


@dataclasses.dataclass(frozen=True)
class PreparedData:
    """A prepared TFDS dataset as ExampleGen sees it."""

    data_root: str  # the folder of <builder>-<split>.tfrecord-* files
    builder_name: str
    labelled_heads: tuple[str, ...]  # heads the dataset labels (the others are masked)
    num_examples: dict[str, int]  # per TFX split


def prepare_dataset(heads: Sequence[Head], data: DataConfig) -> PreparedData:
    """Prepares (once) the TFDS dataset for ExampleGen and checks it labels ``heads``.

    Args:
      heads: the model's heads; the dataset must label at least one with the same classes.
      data: the dataset (builder name, manual folder, TFDS folder); no folder: the synthetic
        demo data (``fashion_keras.data.sources.builders_for``).
    """
    builder = sources.builders_for(data, heads)[0][0]
    labelled = data_pipeline.check_heads(heads, builder.info.features, builder.name)
    counts = {}
    for tfx_split, tfds_split in SPLITS.items():
        if tfds_split not in builder.info.splits:
            raise ValueError(
                f"dataset {builder.name!r} has no {tfds_split!r} split (the pipeline's "
                f"{tfx_split!r} split); it has {sorted(builder.info.splits)}"
            )
        counts[tfx_split] = builder.info.splits[tfds_split].num_examples
    return PreparedData(str(builder.data_path), builder.name, tuple(labelled), counts)


def example_gen_input_config() -> tfx.proto.Input:
    """ImportExampleGen's input: TFDS's ``*-train.tfrecord-*`` and ``*-val.tfrecord-*`` files
    as the ``train`` and ``eval`` splits."""
    return tfx.proto.Input(
        splits=[
            tfx.proto.Input.Split(name=name, pattern=f"*-{tfds_split}.tfrecord-*")
            for name, tfds_split in SPLITS.items()
        ]
    )


def head_schema(
    statistics: Sequence[statistics_pb2.DatasetFeatureStatisticsList], heads: Sequence[Head]
) -> schema_pb2.Schema:
    """TFDV's schema inferred from ``statistics`` (one list per split), tightened with the heads.

    - ``image`` must be present in every example (one encoded image);
    - ``labels/<head>`` is an int in ``[-1, classes - 1]`` (-1 = unlabelled) for every head the
      data labels, so a class index outside the head's class list is an anomaly;
    - ``bbox`` holds four floats in ``[0, 1]``.

    Raises:
      ValueError: the statistics have no ``image`` feature or label none of the heads.
    """
    if not statistics:
        raise ValueError("head_schema needs the statistics of at least one split")
    schema = tfdv.infer_schema(statistics[0], infer_feature_shape=True)
    for stats in statistics[1:]:
        schema = tfdv.update_schema(schema, stats, infer_feature_shape=True)
    features = {f.name: f for f in schema.feature}
    image_key = data_pipeline.SERIALIZED_IMAGE_KEY
    if image_key not in features:
        raise ValueError(
            f"the examples have no {image_key!r} feature (features: {sorted(features)}); "
            "ExampleGen must read a fashion_keras TFDS builder's records"
        )
    image = features[image_key]
    image.presence.min_fraction = 1.0
    image.presence.min_count = 1
    labelled = []
    for head in heads:
        feature = features.get(data_pipeline.serialized_label_key(head.name))
        if feature is None:
            continue
        feature.int_domain.CopyFrom(
            schema_pb2.IntDomain(min=-1, max=head.num_classes - 1, is_categorical=True)
        )
        labelled.append(head.name)
    if not labelled:
        raise ValueError(
            f"the examples label none of the heads {[h.name for h in heads]}: no "
            f"{data_pipeline.serialized_label_key('<head>')} feature among {sorted(features)}"
        )
    bbox = features.get(data_pipeline.SERIALIZED_BBOX_KEY)
    if bbox is not None:
        bbox.float_domain.CopyFrom(schema_pb2.FloatDomain(min=0.0, max=1.0))
    return schema


@tfx.dsl.components.component
def HeadSchemaGen(  # noqa: N802 - TFX component names are classes
    statistics: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleStatistics],
    schema: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Schema],
    heads_json: tfx.dsl.components.Parameter[str],
) -> None:
    """SchemaGen that knows the taxonomy: :func:`head_schema` over every split's statistics,
    written as ``schema.pbtxt`` like the stock SchemaGen."""
    heads = heads_from_dict(json.loads(heads_json))
    splits = artifact_utils.decode_split_names(statistics.split_names)
    stats = [stats_artifact_utils.load_statistics(statistics, s).proto() for s in splits]
    io_utils.write_pbtxt_file(os.path.join(schema.uri, SCHEMA_FILE), head_schema(stats, heads))


def heads_json(heads: Sequence[Head]) -> str:
    """The head spec as the JSON string the components take (``custom_config``, parameters)."""
    return json.dumps(heads_to_dict(heads), sort_keys=True)


def resolve_heads(spec: str | Sequence[Head]) -> tuple[Head, ...]:
    """Heads from a preset name, presets joined by commas, a YAML/JSON file or Head objects."""
    return tuple(get_heads(spec))


def eval_config(
    heads: Sequence[Head],
    accuracy_threshold: float = 0.0,
    max_accuracy_drop: float = 0.0,
    thresholded_heads: Sequence[str] | None = None,
) -> tfma.EvalConfig:
    """TFMA configuration: per-head :class:`~pipelines.metrics.LabelledAccuracy` on the
    ``predict_examples`` signature (labels ``labels/<head>``, predictions ``<head>_probs``).

    The model is blessed when every head in ``thresholded_heads`` (default: all; give the heads
    the data labels, the others have no accuracy) reaches ``accuracy_threshold`` and, when a
    blessed model exists, is at most ``max_accuracy_drop`` below its accuracy.
    """
    if not 0.0 <= accuracy_threshold <= 1.0:
        raise ValueError(f"accuracy_threshold must be in [0, 1], got {accuracy_threshold!r}")
    if max_accuracy_drop < 0.0:
        raise ValueError(f"max_accuracy_drop must be >= 0, got {max_accuracy_drop!r}")
    names = [h.name for h in heads]
    thresholded = set(names if thresholded_heads is None else thresholded_heads)
    unknown = sorted(thresholded - set(names))
    if unknown:
        raise ValueError(f"thresholded_heads {unknown} are not among the heads {names}")
    threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": accuracy_threshold}),
        # a tiny slack so an equally good model (e.g. the same one) passes
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -max_accuracy_drop - 1e-10},
        ),
    )
    metrics_specs = []
    for head in heads:
        config = tfma.MetricConfig(class_name="LabelledAccuracy", module="pipelines.metrics")
        if head.name in thresholded:
            config.threshold.CopyFrom(threshold)
        metrics_specs.append(
            tfma.MetricsSpec(
                output_names=[head.name],
                metrics=[config],
            )
        )
    metrics_specs.append(tfma.MetricsSpec(metrics=[tfma.MetricConfig(class_name="ExampleCount")]))
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name=EVAL_SIGNATURE,
                label_keys={h.name: data_pipeline.serialized_label_key(h.name) for h in heads},
                prediction_keys={h.name: output_names(h)[0] for h in heads},
            )
        ],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=metrics_specs,
    )
