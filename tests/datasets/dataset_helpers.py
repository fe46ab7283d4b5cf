"""Helpers of the dataset tests: prepare a builder from a manual folder, read a split back."""

from __future__ import annotations

import tensorflow_datasets as tfds


def prepare(builder_cls, manual_dir, data_dir, **kwargs):
    """``builder_cls(data_dir=data_dir, **kwargs)``, prepared from ``manual_dir``."""
    builder = builder_cls(data_dir=str(data_dir), **kwargs)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir))
    )
    return builder


def examples(builder, split: str) -> dict[str, dict]:
    """``{filename: example}`` of a split, with the image left encoded."""
    ds = builder.as_dataset(split=split, decoders={"image": tfds.decode.SkipDecoding()})
    return {ex["image/filename"].decode(): ex for ex in tfds.as_numpy(ds)}
