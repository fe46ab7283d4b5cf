"""TFMA metric for the Evaluator: a head's accuracy over the examples labelled for that head.

The builders write ``-1`` for "no label for this head" (a FashionAI row labels one task of
eight; joint sources leave heads out). TFMA's stock accuracies would count such an example as a
miss (or one-hot ``-1`` into the last class), so the Evaluator uses :class:`LabelledAccuracy`:
the fraction of examples with a label ``>= 0`` whose argmax prediction equals it (the same
masking as training's weighted accuracies). Referenced in the ``EvalConfig`` as
``MetricConfig(class_name="LabelledAccuracy", module="pipelines.metrics")``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import metric_types, metric_util

LABELLED_ACCURACY_NAME = "labelled_accuracy"


class LabelledAccuracy(metric_types.Metric):
    """Accuracy over the examples labelled for the output (label ``>= 0``); others are skipped.

    Labels are class indices (sparse), predictions the head's class probabilities.
    ``labelled_examples`` (the count it averaged over) is reported beside it.
    """

    def __init__(self, name: str = LABELLED_ACCURACY_NAME) -> None:
        super().__init__(metric_util.merge_per_key_computations(_labelled_accuracy), name=name)


metric_types.register_metric(LabelledAccuracy)


def _labelled_accuracy(
    name: str = LABELLED_ACCURACY_NAME,
    eval_config: Any = None,
    model_name: str = "",
    output_name: str = "",
    sub_key: Any = None,
    aggregation_type: Any = None,
    class_weights: Any = None,
    example_weighted: bool = False,
) -> metric_types.MetricComputations:
    key = metric_types.MetricKey(
        name=name,
        model_name=model_name,
        output_name=output_name,
        sub_key=sub_key,
        example_weighted=example_weighted,
    )
    count_key = metric_types.MetricKey(
        name="labelled_examples",
        model_name=model_name,
        output_name=output_name,
        sub_key=sub_key,
        example_weighted=example_weighted,
    )
    return [
        metric_types.MetricComputation(
            keys=[key, count_key],
            preprocessors=None,
            combiner=_LabelledAccuracyCombiner(
                key, count_key, eval_config, model_name, output_name, example_weighted
            ),
        )
    ]


class _LabelledAccuracyCombiner(beam.CombineFn):
    """Sums (correct, labelled) weights over the examples with a label >= 0."""

    def __init__(
        self,
        key: metric_types.MetricKey,
        count_key: metric_types.MetricKey,
        eval_config: Any,
        model_name: str,
        output_name: str,
        example_weighted: bool,
    ) -> None:
        self._key = key
        self._count_key = count_key
        self._eval_config = eval_config
        self._model_name = model_name
        self._output_name = output_name
        self._example_weighted = example_weighted

    def create_accumulator(self) -> list[float]:
        return [0.0, 0.0]

    def _prediction_key(self) -> str:
        specs = list(self._eval_config.model_specs) if self._eval_config is not None else []
        for spec in specs:
            if spec.name == self._model_name or len(specs) == 1:
                return spec.prediction_keys.get(self._output_name, self._output_name)
        return self._output_name

    def add_input(
        self, accumulator: list[float], element: metric_types.StandardMetricInputs
    ) -> list[float]:
        # TFMA hands every output of the signature over; the head's probabilities are the
        # ModelSpec's prediction_keys[output_name] (``<head>_probs``).
        labels = np.asarray(element.get_labels(self._model_name, self._output_name)).reshape(-1)
        predictions = element.get_predictions(self._model_name)
        if isinstance(predictions, dict):
            predictions = predictions[self._prediction_key()]
        predictions = np.asarray(predictions)
        predictions = predictions.reshape(labels.size, -1)
        weights = np.ones(labels.size)
        if self._example_weighted and element.example_weights is not None:
            weights = np.broadcast_to(
                np.asarray(element.get_example_weights(self._model_name, self._output_name)),
                labels.shape,
            )
        for label, prediction, weight in zip(labels, predictions, weights, strict=True):
            if label < 0:  # unlabelled for this head
                continue
            accumulator[0] += float(weight) * float(int(np.argmax(prediction)) == int(label))
            accumulator[1] += float(weight)
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[list[float]]) -> list[float]:
        total = [0.0, 0.0]
        for acc in accumulators:
            total[0] += acc[0]
            total[1] += acc[1]
        return total

    def extract_output(self, accumulator: list[float]) -> dict[metric_types.MetricKey, float]:
        correct, labelled = accumulator
        return {
            self._key: correct / labelled if labelled else float("nan"),
            self._count_key: labelled,
        }
