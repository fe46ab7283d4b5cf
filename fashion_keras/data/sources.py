"""Where examples come from: the TFDS builders in ``datasets/`` and the embedded demo data."""

from __future__ import annotations

import importlib
import logging
import os

import tensorflow as tf
import tensorflow_datasets as tfds

log = logging.getLogger("fashion_keras")

#: Builder name -> module that registers it (the folders of ``datasets/``).
DATASET_MODULES = {
    "deepfashion_attributes": "fashion_keras_datasets.deepfashion_attributes",
}


def get_builder(
    name: str, manual_dir: str, data_dir: str | None = None
) -> tfds.core.DatasetBuilder:
    """Prepares (once) and returns the TFDS builder ``name`` reading ``manual_dir``.

    ``tfds build datasets/<name> --manual_dir DIR`` prepares the same dataset from the shell.
    """
    if name not in DATASET_MODULES:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASET_MODULES)}")
    importlib.import_module(DATASET_MODULES[name])
    builder = tfds.builder(name, data_dir=data_dir)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=os.path.expanduser(manual_dir))
    )
    return builder


def demo_builder(cache_dir: str | None = None) -> tfds.core.DatasetBuilder:
    """The DeepFashion-layout synthetic demo data, generated once and prepared by the real
    ``deepfashion_attributes`` builder into a TFDS folder beside it."""
    from fashion_keras.demo import demo_manual_dir

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
