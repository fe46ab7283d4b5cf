"""Where examples come from: the TFDS builders in ``datasets/`` and the embedded demo data.

One source is a builder reading one manual download folder. Several sources train jointly:
``--sources fashionai_attributes=/data/fashionai,deepfashion_attributes=/data/deepfashion``
(optionally ``name/config=DIR``) with ``--source-weights`` (see :func:`training_data`).
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from fashion_keras.data import pipeline
from fashion_keras.data.config import DataConfig
from fashion_keras.heads import AnyHead, Head, get_heads, keypoint_heads, softmax_heads

log = logging.getLogger("fashion_keras")

#: Builder name -> module that registers it (the folders of ``datasets/``).
DATASET_MODULES = {
    "deepfashion_attributes": "fashion_keras_datasets.deepfashion_attributes",
    "deepfashion_category": "fashion_keras_datasets.deepfashion_category",
    "fashionai_attributes": "fashion_keras_datasets.fashionai_attributes",
    "custom_csv": "fashion_keras_datasets.custom_csv",
    "fashionai_keypoints": "fashion_keras_datasets.fashionai_keypoints",
}
SKIP_BAD_ROWS_SUFFIX = "_skip_bad_rows"  # as in fashion_keras_datasets/common/builder.py


def split_dataset_name(dataset: str) -> tuple[str, str | None]:
    """``"fashionai_attributes/m_half"`` -> ``("fashionai_attributes", "m_half")``."""
    name, _, config = dataset.partition("/")
    if name not in DATASET_MODULES:
        raise ValueError(
            f"unknown dataset {name!r}; expected one of {sorted(DATASET_MODULES)} "
            "(optionally NAME/CONFIG, e.g. fashionai_attributes/m_half)"
        )
    return name, config or None


class _CustomConfigNotice(logging.Filter):
    """Drops TFDS's warning dumping a builder config that is not one of the builder's own
    (``Using custom data configuration: CustomCsvConfig(...)``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Using custom data configuration")


def make_builder(
    dataset: str,
    manual_dir: str,
    data_dir: str | None = None,
    *,
    skip_bad_rows: bool = False,
    heads: Sequence[Head] | None = None,
) -> tuple[tfds.core.DatasetBuilder, str]:
    """The (not yet prepared) builder for ``dataset`` (``name`` or ``name/config``) and the
    manual folder it reads.

    ``skip_bad_rows`` picks the ``<config>_skip_bad_rows`` variant. ``custom_csv`` takes its
    config from ``manual_dir`` (the folder, or the CSV itself) and ``heads`` (default: the
    folder's ``heads.yaml``); heads without a CSV column are left to be masked.
    """
    name, config = split_dataset_name(dataset)
    importlib.import_module(DATASET_MODULES[name])
    manual_dir = os.path.expanduser(manual_dir)
    if name == "custom_csv" and config is None:
        from fashion_keras_datasets.custom_csv import config_for_manual_dir

        manual_dir, csv_config = config_for_manual_dir(
            manual_dir, heads, skip_bad_rows=skip_bad_rows
        )
        notice = _CustomConfigNotice()  # custom_csv's config is custom by design
        logging.getLogger("absl").addFilter(notice)  # TFDS logs through absl's logger
        try:
            return tfds.builder(name, config=csv_config, data_dir=data_dir), manual_dir
        finally:
            logging.getLogger("absl").removeFilter(notice)
    configs = tfds.builder_cls(name).BUILDER_CONFIGS
    if config is None and configs:
        config = configs[0].name
    if skip_bad_rows and config is not None and not config.endswith(SKIP_BAD_ROWS_SUFFIX):
        config += SKIP_BAD_ROWS_SUFFIX
    full = name if config is None else f"{name}/{config}"
    return tfds.builder(full, data_dir=data_dir), manual_dir


def get_builder(
    name: str,
    manual_dir: str,
    data_dir: str | None = None,
    *,
    skip_bad_rows: bool = False,
    heads: Sequence[Head] | None = None,
) -> tfds.core.DatasetBuilder:
    """Prepares (once) and returns the TFDS builder ``name`` (or ``name/config``) reading
    ``manual_dir``; see :func:`make_builder` for the options.

    ``tfds build datasets/<name> --manual_dir DIR`` prepares the same dataset from the shell.
    """
    builder, manual_dir = make_builder(
        name, manual_dir, data_dir, skip_bad_rows=skip_bad_rows, heads=heads
    )
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
    )
    return builder


@dataclasses.dataclass(frozen=True)
class Source:
    """One dataset of a (joint) training run."""

    dataset: str  # builder name, optionally name/config
    manual_dir: str


def parse_sources(text: str) -> list[Source]:
    """Parses ``NAME=DIR[,NAME=DIR...]`` (NAME may be ``name/config``)."""
    sources = []
    for part in (p.strip() for p in text.split(",")):
        name, sep, folder = part.partition("=")
        if not sep or not name.strip() or not folder.strip():
            raise ValueError(
                f"--sources entry {part!r}: expected NAME=DIR, e.g. "
                "fashionai_attributes=/data/fashionai,deepfashion_attributes=/data/deepfashion"
            )
        split_dataset_name(name.strip())
        sources.append(Source(name.strip(), folder.strip()))
    return sources


def parse_source_weights(text: str, sources: Sequence[Source]) -> list[float]:
    """Parses ``W1,W2,...`` (one per source, in order) or ``NAME=W,...`` (every source named)."""
    parts = [p.strip() for p in text.split(",")]
    names = [s.dataset for s in sources]
    try:
        if all("=" in p for p in parts):
            given = {k.strip(): float(v) for k, v in (p.split("=", 1) for p in parts)}
            if sorted(given) != sorted(names):
                raise ValueError(f"names {sorted(given)} differ from the sources {sorted(names)}")
            weights = [given[n] for n in names]
        else:
            weights = [float(p) for p in parts]
    except ValueError as e:
        raise ValueError(f"--source-weights {text!r}: {e}") from None
    if len(weights) != len(sources) or any(not w >= 0 for w in weights) or not sum(weights):
        raise ValueError(
            f"--source-weights {text!r}: expected {len(sources)} numbers >= 0 (one per source "
            f"{names}), not all 0"
        )
    return weights


@dataclasses.dataclass
class TrainingData:
    """The example streams of a run (image bytes, bbox, labels), before ``make_dataset``."""

    train: tf.data.Dataset
    val: tf.data.Dataset | None
    num_train: int  # training examples over all sources (defines an epoch)
    builders: list[tfds.core.DatasetBuilder]
    weights: list[float]


def training_data(
    builders: Sequence[tfds.core.DatasetBuilder],
    heads: Sequence[Head],
    *,
    train_split: str = "train",
    val_split: str | None = "val",
    weights: Sequence[float] | None = None,
    seed: int | None = None,
    prepare: Callable[[tfds.core.DatasetBuilder, tf.data.Dataset], tf.data.Dataset] | None = None,
) -> TrainingData:
    """Train/val examples of one or several prepared builders, for ``heads``.

    Every builder must label at least one head with the same classes; a head a builder does
    not label is masked on its examples. With several builders the training stream mixes them
    with ``sample_from_datasets`` (``weights``, default: proportional to their training split
    sizes, i.e. each example about once per epoch) and validation runs over every builder's
    ``val_split`` once. ``prepare(builder, examples)``, when given, transforms each builder's
    split before they are mixed (e.g. adds region boxes, :mod:`.region_views`).
    """
    for b in builders:
        labelled = pipeline.check_heads(heads, b.info.features, b.name)
        masked = [h.name for h in heads if h.name not in labelled]
        if masked:
            log.warning("%s has no labels for heads %s: they are masked", b.name, masked)
    trains = [load_split(b, train_split, shuffle_files=True) for b in builders]
    sizes = [b.info.splits[train_split].num_examples for b in builders]
    vals = [load_split(b, val_split) for b in builders] if val_split else []
    if prepare is not None:
        trains = [prepare(b, ds) for b, ds in zip(builders, trains, strict=True)]
        vals = [prepare(b, ds) for b, ds in zip(builders, vals, strict=True)]
    weights = list(weights) if weights is not None else [float(n) for n in sizes]
    if len(builders) == 1:
        return TrainingData(trains[0], vals[0] if vals else None, sizes[0], list(builders), [1.0])
    log.info(
        "Joint training on %s, sampling weights %s",
        ", ".join(f"{b.name} ({n} train examples)" for b, n in zip(builders, sizes, strict=True)),
        [round(w / sum(weights), 4) for w in weights],
    )
    return TrainingData(
        pipeline.mix_examples(trains, heads, weights, seed=seed),
        pipeline.concat_examples(vals, heads) if vals else None,
        sum(sizes),
        list(builders),
        [w / sum(weights) for w in weights],
    )


def builders_for(
    data: DataConfig, heads: Sequence[Head] | None
) -> tuple[list[tfds.core.DatasetBuilder], list[float] | None]:
    """Prepared builders and sampling weights (None: by size) for a data section: the
    synthetic demo data when it names no data (:attr:`DataConfig.uses_demo_data`), its
    ``sources`` (joint training), or its ``dataset`` + ``data_dir``."""
    if data.uses_demo_data:
        log.warning(
            "No --data-dir given: using the embedded SYNTHETIC demo data (drawn garments in the "
            "DeepFashion Anno_fine layout; with keypoint heads, in the FashionAI keypoints "
            "layout). Accuracies on it say nothing about real photos; pass --data-dir with the "
            "real release for a real model."
        )
        return demo_builders(get_heads(data.heads) if heads is None else heads), None
    if data.sources:
        chosen = parse_sources(data.sources)
    else:
        chosen = [Source(data.dataset, data.data_dir)]
    weights = parse_source_weights(data.source_weights, chosen) if data.source_weights else None
    builders = [
        get_builder(
            s.dataset,
            s.manual_dir,
            data.tfds_data_dir,
            skip_bad_rows=data.skip_bad_rows,
            heads=heads,
        )
        for s in chosen
    ]
    return builders, weights


def demo_builders(
    heads: Sequence[AnyHead], cache_dir: str | None = None
) -> list[tfds.core.DatasetBuilder]:
    """The demo data for ``heads``: the attribute demo for softmax heads, the keypoints demo
    for keypoint heads, both (trained jointly, each masking the other's heads) for both."""
    builders = []
    if softmax_heads(heads):
        builders.append(demo_builder(cache_dir))
    if keypoint_heads(heads):
        builders.append(keypoints_demo_builder(cache_dir))
    return builders


def keypoints_demo_builder(cache_dir: str | None = None) -> tfds.core.DatasetBuilder:
    """The FashionAI-keypoints-layout synthetic demo (all five categories, their keypoints
    where the drawing put them), prepared by the real ``fashionai_keypoints`` builder."""
    from fashion_keras_datasets.synthetic.keypoints_demo import demo_keypoints_manual_dir

    manual_dir = demo_keypoints_manual_dir(cache_dir)
    data_dir = os.path.join(os.path.dirname(os.path.abspath(manual_dir)), "tfds")
    return get_builder("fashionai_keypoints", manual_dir, data_dir)


def demo_builder(cache_dir: str | None = None) -> tfds.core.DatasetBuilder:
    """The DeepFashion-layout synthetic demo data, generated once and prepared by the real
    ``deepfashion_attributes`` builder into a TFDS folder beside it."""
    from fashion_keras_datasets.synthetic.demo import demo_manual_dir

    manual_dir = demo_manual_dir(cache_dir)
    data_dir = os.path.join(os.path.dirname(os.path.abspath(manual_dir)), "tfds")
    return get_builder("deepfashion_attributes", manual_dir, data_dir)


def load_split(
    builder: tfds.core.DatasetBuilder, split: str, shuffle_files: bool = False
) -> tf.data.Dataset:
    """A split's examples with the image left encoded (for the fused crop-and-decode)."""
    if split not in builder.info.splits:
        raise ValueError(
            f"dataset {builder.name!r} has no split {split!r}; it has {sorted(builder.info.splits)}"
        )
    return builder.as_dataset(
        split=split,
        shuffle_files=shuffle_files,
        decoders={"image": tfds.decode.SkipDecoding()},
    )


def label_counts(
    builders: Sequence[tfds.core.DatasetBuilder], split: str, heads: Sequence[Head]
) -> dict[str, np.ndarray]:
    """Labelled rows per class of each head in ``split``, summed over ``builders``, from their
    build reports (``info.metadata["report"]``; unlabelled rows are not counted). A head a
    builder does not label counts 0 there. Raises ``ValueError`` when a builder stores no
    report for the split (prepare it again)."""
    heads = softmax_heads(heads)
    counts = {h.name: np.zeros(h.num_classes, np.int64) for h in heads}
    for builder in builders:
        report = (builder.info.metadata or {}).get("report") or {}
        split_report = report.get("splits", {}).get(split)
        if split_report is None:
            raise ValueError(
                f"dataset {builder.info.full_name} stores no build report for split {split!r} "
                "(prepared by an older version?): prepare it again to count its labels"
            )
        for h in heads:
            classes = split_report.get("heads", {}).get(h.name, {}).get("classes", {})
            for i, name in enumerate(h.classes):
                counts[h.name][i] += int(classes.get(name, 0))
    return counts
