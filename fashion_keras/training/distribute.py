"""Distribution and fault tolerance: tf.distribute strategies and atomic checkpoints.

- ``auto``: MirroredStrategy over all local GPUs when more than one is visible, else the
  default strategy.
- ``mirrored``: MirroredStrategy over all local GPUs, or over all logical CPU devices when there
  is no GPU (tests split the CPU with ``tf.config.set_logical_device_configuration``).
- ``multi_worker``: MultiWorkerMirroredStrategy over the cluster in ``TF_CONFIG`` (every worker
  runs the same command; all local GPUs of each worker, or its CPU).

The batch size is global: Keras splits each batch across the replicas (:func:`check_batch_size`),
and the validation batches are padded so that no replica gets an empty one (:func:`pad_batches`).
The datasets' auto-shard policy is set explicitly to ``DATA`` (TFDS splits may have fewer files
than workers). :class:`SyncMovingStatistics` keeps the replicas' BatchNorm moving statistics equal.

Multi-worker runs follow the TensorFlow multi-worker guide: every worker runs every save (a save
may read variables through collective ops, so all workers must take part), but only the chief
writes to ``--output-dir``; the other workers write to a temporary folder that is removed when
``train()`` returns (:func:`worker_config`, :func:`remove_worker_dirs`). Every worker restores
the chief's backup (:class:`~fashion_keras.training.checkpointing.BackupAndRestore`), so ``--output-dir`` must be on storage that all
workers can read (NFS, a mounted bucket, ...).

Keras 3's TensorFlow trainer cannot run ``fit`` under MultiWorkerMirroredStrategy as shipped
(keras-team/keras#20329, #20585; tensorflow/tensorflow#72388). :func:`patch_keras_for_multi_worker`
fixes exactly those two spots and is applied only for ``--strategy multi_worker``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from typing import TYPE_CHECKING, Any

import keras
import tensorflow as tf

if TYPE_CHECKING:
    from fashion_keras.training.config import TrainConfig

log = logging.getLogger("fashion_keras")

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")

# A process joins one cluster: TensorFlow configures its collective ops once per process.
_multi_worker_strategy: tf.distribute.MultiWorkerMirroredStrategy | None = None
# Temporary output folders of non-chief workers, removed by remove_worker_dirs().
_worker_dirs: list[str] = []


def get_strategy(name: str) -> tf.distribute.Strategy:
    """The ``tf.distribute`` strategy for ``--strategy NAME``."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; expected one of {list(STRATEGIES)}")
    if name == "multi_worker":
        return multi_worker_strategy()
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        devices = gpus or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.get_strategy()


def parse_tf_config(text: str | None = None) -> dict[str, Any]:
    """Reads and checks ``TF_CONFIG`` (``text`` or the environment variable).

    Raises ``ValueError`` naming what is missing: the JSON must have ``cluster`` with a
    ``worker`` (and optionally one ``chief``) address list and ``task`` with this process's
    ``type`` and ``index`` in it.
    """
    text = os.environ.get("TF_CONFIG") if text is None else text
    if not text:
        raise ValueError(
            "--strategy multi_worker needs the TF_CONFIG environment variable, e.g. "
            '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
            '"task": {"type": "worker", "index": 0}}'
        )
    try:
        tf_config = json.loads(text)
    except ValueError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON: {e}") from None
    cluster, task = tf_config.get("cluster"), tf_config.get("task")
    if not isinstance(cluster, dict) or not (cluster.get("worker") or cluster.get("chief")):
        raise ValueError(f"TF_CONFIG needs cluster.worker (a list of host:port), got {text!r}")
    if not isinstance(task, dict) or task.get("type") not in ("worker", "chief"):
        raise ValueError(f"TF_CONFIG needs task.type 'worker' or 'chief', got {text!r}")
    addresses = cluster.get(task["type"]) or []
    index = task.get("index")
    if not isinstance(index, int) or not 0 <= index < len(addresses):
        raise ValueError(
            f"TF_CONFIG task.index {index!r} is not an index into cluster.{task['type']} "
            f"({len(addresses)} addresses)"
        )
    return tf_config


def multi_worker_strategy() -> tf.distribute.MultiWorkerMirroredStrategy:
    """MultiWorkerMirroredStrategy over the ``TF_CONFIG`` cluster (created once per process).

    TensorFlow configures the collective ops when the strategy is created, which must happen
    before the process runs any other TensorFlow op: a program that builds datasets or tensors
    before calling ``train()`` calls this (or ``get_strategy("multi_worker")``) first.
    """
    global _multi_worker_strategy
    if _multi_worker_strategy is None:
        tf_config = parse_tf_config()
        patch_keras_for_multi_worker()
        try:
            _multi_worker_strategy = tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as e:
            raise RuntimeError(
                f"{e}: create the multi-worker strategy before any other TensorFlow op, e.g. "
                "call fashion_keras.training.distribute.get_strategy('multi_worker') first"
            ) from e
        log.info(
            "multi-worker: task %s/%d of %s, %d replica(s) in sync",
            tf_config["task"]["type"],
            tf_config["task"]["index"],
            {k: len(v) for k, v in tf_config["cluster"].items()},
            _multi_worker_strategy.num_replicas_in_sync,
        )
    return _multi_worker_strategy


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's files (always, except non-chief workers)."""
    return bool(strategy.extended.should_checkpoint)


def barrier(strategy: tf.distribute.Strategy) -> None:
    """Under MultiWorkerMirroredStrategy, waits until every worker gets here (an all-reduce of
    one number); nothing otherwise."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        strategy.reduce("SUM", strategy.run(lambda: tf.constant(1.0)), axis=None)


def worker_config(cfg: TrainConfig, strategy: tf.distribute.Strategy) -> TrainConfig:
    """``cfg`` itself on the chief; on other workers, ``cfg`` writing to a temporary folder.

    The folder (``output_dir``, with the export inside it) is removed by
    :func:`remove_worker_dirs`, which ``train()`` calls when it returns or fails.
    """
    if is_chief(strategy):
        return cfg
    task_id = strategy.cluster_resolver.task_id
    tmp = tempfile.mkdtemp(prefix=f"fashion_keras-worker{task_id}-")
    _worker_dirs.append(tmp)
    log.info("non-chief worker %s: writing to the temporary folder %s", task_id, tmp)
    return cfg.replace(output_dir=tmp, export_dir=None)


def remove_worker_dirs() -> None:
    """Removes the temporary folders that :func:`worker_config` made."""
    while _worker_dirs:
        shutil.rmtree(_worker_dirs.pop(), ignore_errors=True)


def check_batch_size(batch_size: int, strategy: tf.distribute.Strategy) -> None:
    """Raises ``ValueError`` unless the global batch splits evenly over the replicas."""
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise ValueError(
            f"--batch-size {batch_size} is the global batch and must be a multiple of the "
            f"{replicas} replicas in sync (e.g. {batch_size - batch_size % replicas or replicas})"
        )


def pad_batches(ds: tf.data.Dataset, min_rows: int) -> tf.data.Dataset:
    """Pads ``(x, y, sample_weight)`` batches of fewer than ``min_rows`` rows up to it.

    tf.distribute splits a batch evenly over the replicas, so a final batch with fewer rows
    than replicas leaves some replica an empty batch, and TF 2.21's oneDNN CPU convolution
    returns a wrongly shaped result for an empty batch, which fails the step. With ``min_rows``
    = the replica count every replica gets a row. The padding repeats the batch's last row
    with sample weight 0, so it counts in no weighted metric and no masked head loss; only
    Keras' mean loss, which weights each replica's loss by its row count, sees a 0 for each
    padded row (a bias of at most ``(replicas - 1) / len(val split)``).
    """
    if min_rows <= 1:
        return ds

    def pad(x: Any, y: Any, sample_weight: Any) -> tuple[Any, Any, Any]:
        n = tf.shape(tf.nest.flatten(x)[0])[0]
        extra = tf.maximum(min_rows - n, 0)
        rows = tf.concat([tf.range(n), tf.fill([extra], n - 1)], axis=0)

        def repeat_last(t: tf.Tensor) -> tf.Tensor:
            return tf.gather(t, rows)

        def zeros_after(t: tf.Tensor) -> tf.Tensor:
            shape = tf.concat([[extra], tf.shape(t)[1:]], axis=0)
            return tf.concat([t, tf.zeros(shape, t.dtype)], axis=0)

        return (
            tf.nest.map_structure(repeat_last, x),
            tf.nest.map_structure(repeat_last, y),
            tf.nest.map_structure(zeros_after, sample_weight),
        )

    return ds.map(pad, num_parallel_calls=tf.data.AUTOTUNE)


def shard_by_data(ds: tf.data.Dataset) -> tf.data.Dataset:
    """Sets the auto-shard policy to DATA (each worker keeps every N-th element)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


#: The per-replica BatchNormalization statistics that :class:`SyncMovingStatistics` averages.
MOVING_STATISTICS = ("moving_mean", "moving_variance")


class SyncMovingStatistics(keras.callbacks.Callback):
    """Sets BatchNorm moving statistics to their mean over all replicas (no-op with one replica).

    Keras 3 creates the moving mean and variance with aggregation ``"none"``: under
    MirroredStrategy and MultiWorkerMirroredStrategy each replica updates its own copy from its
    part of the batch, so the copies drift apart, and each worker would save different ones.
    Averaging them before each validation and at the end of each epoch gives every replica, on
    every worker, the same statistics for validation, checkpoints and the saved model. For the
    moving mean this equals the moving average of the global batch means (both are linear); the
    moving variance becomes the mean of the per-replica variances.
    """

    def __init__(self) -> None:
        super().__init__()
        self._sync: Any = None

    def _synchronize(self) -> None:
        strategy = self.model.distribute_strategy
        if strategy.num_replicas_in_sync < 2:
            return
        if self._sync is None:
            variables = [
                v.value
                for v in self.model.non_trainable_variables
                if v.name in MOVING_STATISTICS and v.aggregation == "none"
            ]

            def replica_fn() -> None:
                ctx = tf.distribute.get_replica_context()
                # Read and written in replica context: each replica's own copy.
                means = ctx.all_reduce(
                    tf.distribute.ReduceOp.MEAN, [tf.identity(v) for v in variables]
                )
                for v, mean in zip(variables, means, strict=True):
                    v.assign(mean)

            self._sync = tf.function(lambda: strategy.run(replica_fn)) if variables else False
        if self._sync:
            self._sync()

    def on_test_begin(self, logs: dict | None = None) -> None:
        self._synchronize()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._synchronize()


# --- Keras compatibility shim for MultiWorkerMirroredStrategy --------------------------------

#: Keras versions (major.minor) whose TensorFlow trainer the shim was checked against.
_SHIM_TESTED = ("3.15",)


def patch_keras_for_multi_worker() -> None:
    """Makes Keras 3's TensorFlow ``fit``/``evaluate`` run under MultiWorkerMirroredStrategy.

    Two bugs, both only on the multi-worker path (other strategies keep Keras' code):

    1. ``TensorFlowTrainer._maybe_symbolic_build`` passes the first distributed batch, a nest
       of ``PerReplica`` values, to ``strategy.reduce``, which the collective strategy rejects
       ("Attempt to convert a value ({'image': PerReplica...}) ... to a Tensor";
       https://github.com/keras-team/keras/issues/20329). The build only needs shapes, so the
       shim builds from this worker's first local replica batch instead.
    2. ``reduce_per_replica`` reduces every log with ``strategy.reduce("MEAN", v, axis=0)``,
       which fails on scalar losses and metrics ("Invalid reduction dimension 0 for input with
       0 dimensions"; https://github.com/keras-team/keras/issues/20585). The shim reduces
       scalars with ``axis=None``: the mean over all replicas of all workers, so every worker
       gets the same logs (and callbacks such as ``save_best_only`` decide alike).

    Idempotent. Raises ``RuntimeError`` if the Keras internals it replaces are not there.
    """
    from keras.src.backend.tensorflow import trainer as tf_trainer

    if getattr(tf_trainer, "_fashion_keras_multi_worker_shim", False):
        return
    _check_keras_internals(tf_trainer)

    is_multi_worker = tf_trainer._collective_all_reduce_multi_worker
    keras_reduce = tf_trainer.reduce_per_replica
    keras_symbolic_build = tf_trainer.TensorFlowTrainer._maybe_symbolic_build

    def reduce_per_replica(values: Any, strategy: tf.distribute.Strategy, reduction: str) -> Any:
        if reduction not in ("auto", "mean") or not is_multi_worker(strategy):
            return keras_reduce(values, strategy, reduction)

        def reduce_one(v: Any) -> Any:
            if isinstance(v, (tf.Tensor, tf.distribute.DistributedValues)) and _rank(v) == 0:
                return strategy.reduce("MEAN", v, axis=None)
            return keras_reduce(v, strategy, reduction)

        return tf.nest.map_structure(reduce_one, values)

    def _maybe_symbolic_build(self: Any, iterator: Any = None, data_batch: Any = None) -> None:
        strategy = self._distribute_strategy
        collective = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        if iterator is None or not collective:
            return keras_symbolic_build(self, iterator=iterator, data_batch=data_batch)
        for _, _, it in iterator:
            data_batch = tf.nest.map_structure(
                lambda v: (
                    strategy.experimental_local_results(v)[0]
                    if isinstance(v, tf.distribute.DistributedValues)
                    else v
                ),
                next(it),
            )
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    tf_trainer.reduce_per_replica = reduce_per_replica
    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    tf_trainer._fashion_keras_multi_worker_shim = True


def _check_keras_internals(tf_trainer: Any) -> None:
    """Raises ``RuntimeError`` if the Keras trainer internals the shim replaces are gone; warns
    on a Keras version it was not checked against."""
    missing = [
        name
        for name, owner in (
            ("reduce_per_replica", tf_trainer),
            ("_collective_all_reduce_multi_worker", tf_trainer),
            ("_maybe_symbolic_build", tf_trainer.TensorFlowTrainer),
            ("_symbolic_build", tf_trainer.TensorFlowTrainer),
        )
        if not hasattr(owner, name)
    ]
    if missing:
        raise RuntimeError(
            f"--strategy multi_worker: Keras {keras.__version__} lacks the trainer internals "
            f"{missing} that fashion_keras.training.distribute patches (tested with Keras "
            f"{', '.join(_SHIM_TESTED)}); check whether "
            "keras-team/keras#20329 and #20585 are fixed there and drop the shim"
        )
    if ".".join(keras.__version__.split(".")[:2]) not in _SHIM_TESTED:
        log.warning(
            "the multi-worker Keras shim was tested with Keras %s; this is Keras %s",
            ", ".join(_SHIM_TESTED),
            keras.__version__,
        )


def _rank(v: Any) -> int | None:
    if isinstance(v, tf.distribute.DistributedValues):
        v = v.values[0]
    return v.shape.rank
