"""Distribution and fault tolerance: tf.distribute strategies and atomic checkpoints.

- ``auto``: MirroredStrategy over all local GPUs when more than one is visible, else the
  default strategy.
- ``mirrored``: MirroredStrategy over all local GPUs, or over all logical CPU devices when there
  is no GPU (tests split the CPU with ``tf.config.set_logical_device_configuration``).

The batch size is global: Keras splits each batch across the replicas. The datasets' auto-shard
policy is set explicitly to ``DATA`` (TFDS splits may have fewer files than input pipelines).

MultiWorkerMirroredStrategy is not offered: Keras 3.15's TF trainer cannot run ``fit`` under it
(it reduces nested batches and scalar logs with ``strategy.reduce``, which the collective
strategy rejects; keras-team/keras#20329, #20585).
"""

from __future__ import annotations

import os
import tempfile

import keras
import tensorflow as tf

STRATEGIES = ("auto", "default", "mirrored")


def get_strategy(name: str) -> tf.distribute.Strategy:
    """The ``tf.distribute`` strategy for ``--strategy NAME``."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; expected one of {list(STRATEGIES)}")
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        devices = gpus or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.get_strategy()


def shard_by_data(ds: tf.data.Dataset) -> tf.data.Dataset:
    """Sets the auto-shard policy to DATA (each worker keeps every N-th element)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """ModelCheckpoint that writes to a temporary file and renames it into place.

    A process killed mid-save leaves the previous checkpoint intact instead of a truncated one.
    The file path must not contain ``{epoch}``-style placeholders.
    """

    def __init__(self, filepath: str, **kwargs) -> None:
        if "{" in filepath:
            raise ValueError(f"AtomicModelCheckpoint needs a fixed file path, got {filepath!r}")
        super().__init__(filepath, **kwargs)
        self._final_path = filepath

    def _save_model(self, epoch, batch, logs):  # noqa: D401 - Keras hook
        folder = os.path.dirname(os.path.abspath(self._final_path))
        os.makedirs(folder, exist_ok=True)
        suffix = ".weights.h5" if self.save_weights_only else ".keras"
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
        os.close(fd)
        os.remove(tmp)
        self.filepath = tmp
        try:
            super()._save_model(epoch, batch, logs)
            if os.path.exists(tmp):
                os.replace(tmp, self._final_path)
        finally:
            self.filepath = self._final_path
            if os.path.exists(tmp):
                os.remove(tmp)
