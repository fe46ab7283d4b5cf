"""The evaluated data: which dataset a command reads, and a split's examples with their truth.

A model remembers the data it was trained on (its run's ``config.json``, or the export
metadata's ``training_data``), so ``evaluate`` and ``train_stack`` read the same dataset, data
folder, splits and row policy unless the command line names another (:func:`data_config_for`).
Joint training's several sources are evaluated together: their splits are read one after the
other into one :class:`EvalData` (:func:`load_splits`).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from fashion_keras import sections
from fashion_keras.data import pipeline, sources
from fashion_keras.data.config import DataConfig
from fashion_keras.evaluation.model_loading import training_data_of
from fashion_keras.heads import AnyHead, keypoint_heads, softmax_heads

log = logging.getLogger("fashion_keras")

#: DataConfig fields that say where the data is: given on the command line, they replace the
#: whole location the model was trained on.
LOCATION_FIELDS = ("dataset", "data_dir", "sources")


def data_config_for(model_paths: Sequence[str], args: argparse.Namespace) -> DataConfig:
    """The data section of a command that scores trained models: the data the first model
    was trained on (run ``config.json`` or export metadata), with the flags given applied;
    a flag naming the dataset or its folder replaces the trained-on location. Models trained
    on other data than the first are named in a warning."""
    given = sections.given_fields(DataConfig, args)
    trained = training_data_of(model_paths[0])
    if trained is None:
        return DataConfig(**given)
    base, where = trained
    for other in model_paths[1:]:
        found = training_data_of(other)
        if found is not None and _location(found[0]) != _location(base):
            log.warning(
                "%s was trained on %s, %s on %s: evaluating on the first's data",
                model_paths[0],
                _describe(base),
                other,
                _describe(found[0]),
            )
    if any(f in given for f in LOCATION_FIELDS):
        default = DataConfig()
        base = dataclasses.replace(
            base, dataset=default.dataset, data_dir=None, sources=None, source_weights=None
        )
        chosen = dataclasses.replace(base, **given)
        log.info("data: %s (given on the command line)", _describe(chosen))
        return chosen
    log.info("data: %s, as the model was trained (from %s)", _describe(base), where)
    return dataclasses.replace(base, **given)


def _location(cfg: DataConfig) -> tuple:
    return (cfg.dataset, cfg.data_dir, cfg.sources, cfg.tfds_data_dir)


def _describe(cfg: DataConfig) -> str:
    if cfg.uses_demo_data:
        return "the synthetic demo data"
    if cfg.sources:
        return f"sources {cfg.sources}"
    return f"{cfg.dataset} in {cfg.data_dir}"


@dataclasses.dataclass
class EvalData:
    """A split's examples and their truth, in row order.

    ``examples`` yield ``image`` (encoded), ``bbox``; ``labels[head]`` is (N,) int with -1 for
    unlabelled rows; ``m_masks[head]`` (N, C) bool marks FashionAI ``m`` classes (all False for
    datasets without them); ``filenames`` name each row's image (relative to the data folder,
    as the builders store them); ``dataset`` is the builder's name (``fashionai_attributes``,
    ``custom_csv``...; empty when unknown), which decides how the ranking metric is named.

    Keypoint heads: ``keypoint_heads`` names them; the examples then also yield their
    ``keypoints`` and ``keypoint_categories`` (``pipeline.normalize_example``'s), and
    ``image_ids`` gives each row's ``image_id`` (the FashionAI test list's; the filename where
    the dataset has none).
    """

    examples: tf.data.Dataset
    labels: dict[str, np.ndarray]
    m_masks: dict[str, np.ndarray]
    filenames: list[str]
    dataset: str = ""
    keypoint_heads: tuple[str, ...] = ()
    image_ids: list[str] = dataclasses.field(default_factory=list)
    #: each row's position in its dataset's files (``order``; -1 where the builder has none)
    orders: list[int] = dataclasses.field(default_factory=list)

    @property
    def num_examples(self) -> int:
        return len(self.filenames)


def _slimmer(all_heads: tuple[AnyHead, ...]):
    """The map function :func:`load_eval_data` reads examples with: the image, box, labels,
    ``m`` masks and file name (with keypoint heads also the image id, the row's place in its
    file and the keypoints), normalised by :func:`pipeline.normalize_example`."""
    heads = softmax_heads(all_heads)
    points = keypoint_heads(all_heads)

    def _slim(ex):
        norm = pipeline.normalize_example(ex, all_heads)
        m_in = ex.get("m_mask", {})
        filename = ex["image/filename"] if "image/filename" in ex else tf.constant("")
        out = {
            "image": norm["image"],
            "bbox": norm["bbox"],
            "labels": norm["labels"],
            "m_mask": {
                h.name: (
                    tf.cast(m_in[h.name], tf.bool)
                    if h.name in m_in
                    else tf.zeros([h.num_classes], tf.bool)
                )
                for h in heads
            },
            "filename": filename,
        }
        if points:
            out["image_id"] = ex["image_id"] if "image_id" in ex else filename
            # the row's place in its file (TFDS stores records shuffled); -1 where unknown
            out["order"] = (
                tf.cast(ex["order"], tf.int64) if "order" in ex else tf.constant(-1, tf.int64)
            )
            out["keypoints"] = norm["keypoints"]
            out["keypoint_categories"] = norm["keypoint_categories"]
        return out

    return _slim


def load_eval_data(
    examples: tf.data.Dataset,
    heads: Sequence[AnyHead],
    max_examples: int | None = None,
    dataset: str = "",
    keypoints_in_data: Sequence[str] | None = None,
) -> EvalData:
    """Reads the truth of TFDS-format examples (any of this package's builders) for ``heads``
    (softmax and keypoint heads); ``dataset`` (the builder's name) is carried into
    :attr:`EvalData.dataset`, ``keypoints_in_data`` (the keypoint heads the dataset has
    keypoints of; default: every keypoint head given) into :attr:`EvalData.keypoint_heads`."""
    all_heads = tuple(heads)
    heads = softmax_heads(all_heads)
    points = keypoint_heads(all_heads)
    if max_examples:
        examples = examples.take(max_examples)

    def _model_input(ex):
        # the file name: --region-file joins the examples with its boxes by it
        out = {"image": ex["image"], "bbox": ex["bbox"], "filename": ex["filename"]}
        if points:
            out["keypoints"] = ex["keypoints"]
            out["keypoint_categories"] = ex["keypoint_categories"]
        return out

    slim = examples.map(_slimmer(all_heads), num_parallel_calls=tf.data.AUTOTUNE)
    labels: dict[str, list[int]] = {h.name: [] for h in heads}
    masks: dict[str, list[np.ndarray]] = {h.name: [] for h in heads}
    filenames: list[str] = []
    image_ids: list[str] = []
    orders: list[int] = []
    skip = ("image", "keypoints", "keypoint_categories")
    truth = slim.map(lambda ex: {k: v for k, v in ex.items() if k not in skip}).batch(256)
    for batch in truth.as_numpy_iterator():
        for h in heads:
            labels[h.name].extend(batch["labels"][h.name].tolist())
            masks[h.name].append(batch["m_mask"][h.name])
        filenames.extend(f.decode("utf-8", "replace") for f in batch["filename"])
        if points:
            image_ids.extend(f.decode("utf-8", "replace") for f in batch["image_id"])
            orders.extend(int(o) for o in batch["order"])
    return EvalData(
        examples=slim.map(_model_input),
        labels={h.name: np.asarray(labels[h.name], np.int64) for h in heads},
        m_masks={
            h.name: (
                np.concatenate(masks[h.name])
                if masks[h.name]
                else np.zeros((0, h.num_classes), bool)
            )
            for h in heads
        },
        filenames=filenames,
        dataset=dataset,
        keypoint_heads=tuple(
            h.name for h in points if keypoints_in_data is None or h.name in keypoints_in_data
        ),
        image_ids=image_ids,
        orders=orders,
    )


def load_splits(
    builders: Sequence[tfds.core.DatasetBuilder],
    split: str,
    heads: Sequence[AnyHead],
    max_examples: int | None = None,
) -> EvalData:
    """``split`` of each builder (checked to label ``heads``), read one after the other into
    one :class:`EvalData` (:func:`concat_eval_data`) of at most ``max_examples`` rows."""
    parts = []
    for builder in builders:
        labelled = pipeline.check_heads(heads, builder.info.features, builder.name)
        split_data = sources.load_split(builder, split)
        parts.append(load_eval_data(split_data, heads, max_examples, builder.name, labelled))
    return concat_eval_data(parts, heads, max_examples)


def concat_eval_data(
    parts: Sequence[EvalData], heads: Sequence[AnyHead], max_examples: int | None = None
) -> EvalData:
    """Several datasets' :class:`EvalData` as one, in order, cut at ``max_examples`` rows; its
    ``dataset`` joins their names with ``+`` and its filenames are prefixed ``<dataset>:``."""
    if len(parts) == 1:
        return parts[0]
    examples = parts[0].examples
    for part in parts[1:]:
        examples = examples.concatenate(part.examples)
    total = sum(p.num_examples for p in parts)
    keep = min(total, max_examples) if max_examples else total
    classes = softmax_heads(heads)
    return EvalData(
        examples=examples.take(keep),
        labels={h.name: np.concatenate([p.labels[h.name] for p in parts])[:keep] for h in classes},
        m_masks={
            h.name: np.concatenate([p.m_masks[h.name] for p in parts])[:keep] for h in classes
        },
        filenames=[f"{p.dataset}:{f}" for p in parts for f in p.filenames][:keep],
        dataset="+".join(p.dataset for p in parts),
        keypoint_heads=tuple(
            h.name for h in keypoint_heads(heads) if any(h.name in p.keypoint_heads for p in parts)
        ),
        image_ids=[i for p in parts for i in p.image_ids][:keep],
    )


def keypoint_truth(
    builders: Sequence[tfds.core.DatasetBuilder], split: str, heads: Sequence[AnyHead]
) -> dict[str, tuple[np.ndarray, list[str | None]]] | None:
    """Each keypoint head's photo-pixel truth and categories over the labelled rows of
    ``split`` of every builder (``keypoint_predictions.ground_truth``, concatenated): what the
    mean-position baseline is computed from. None without keypoint heads, or when a builder
    lacks the split (a warning says so)."""
    from fashion_keras.evaluation.keypoint_predictions import ground_truth

    points = keypoint_heads(heads)
    if not points:
        return None
    parts = []
    for builder in builders:
        if split not in builder.info.splits:
            log.warning(
                "no keypoint baseline: dataset %s has no split %r (it has %s)",
                builder.name,
                split,
                sorted(builder.info.splits),
            )
            return None
        parts.append(ground_truth(sources.load_split(builder, split), heads))
    return {
        h.name: (
            np.concatenate([p[h.name][0] for p in parts]),
            [c for p in parts for c in p[h.name][1]],
        )
        for h in points
    }
