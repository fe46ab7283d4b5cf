"""Runs one training job in a fresh process, for the distribution tests.

Usage: python distributed_job.py CONFIG_JSON RESULT_JSON [--cpu-devices N] [--one-device]
                                 [--val-examples N]

Splits the CPU into N logical devices before TensorFlow starts (MirroredStrategy tests), trains
with ``fashion_keras.train.train`` and writes the per-step losses and end times, the history, the
replica count, whether this process is the chief and where its outputs went to RESULT_JSON (and
the final weights to RESULT_JSON + ".npz"). For ``--strategy multi_worker`` the caller sets
TF_CONFIG.
``--one-device`` trains ``--strategy default`` under ``tf.distribute.OneDeviceStrategy`` instead:
one replica, but Keras' distributed code path, which (unlike the default strategy) draws one batch
to build the model before training and so trains on the dataset's second iteration, like
MirroredStrategy; the reference for exact comparisons. ``--val-examples N`` validates on the
first N examples of the validation split only.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("result")
    parser.add_argument("--cpu-devices", type=int, default=1)
    parser.add_argument("--one-device", action="store_true")
    parser.add_argument("--val-examples", type=int, default=None)
    args = parser.parse_args()
    if args.cpu_devices > 1:
        (cpu,) = tf.config.list_physical_devices("CPU")
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * args.cpu_devices
        )

    import keras

    from fashion_keras.heads import get_heads
    from fashion_keras.training import distribute
    from fashion_keras.training.config import TrainConfig
    from fashion_keras.training.inputs import load_examples
    from fashion_keras.training.trainer import train

    class StepLosses(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.losses = []
            self.times = []  # time.perf_counter() after each step (float() waits for it)

        def on_train_batch_end(self, batch, logs=None):
            self.losses.append(float(logs["loss"]))
            self.times.append(time.perf_counter())

    with open(args.config) as f:
        cfg = TrainConfig.from_dict(json.load(f))
    if args.one_device:
        assert cfg.runtime.strategy == "default", cfg.runtime.strategy
        one_device = tf.distribute.OneDeviceStrategy("/cpu:0")
        distribute.get_strategy = lambda name: one_device
    if cfg.runtime.strategy == "multi_worker":  # before any other TensorFlow op
        distribute.get_strategy(cfg.runtime.strategy)
    examples = {}
    if args.val_examples is not None:
        data = load_examples(cfg.resolve(), get_heads(cfg.data.heads))
        examples = {"train_examples": data.train, "val_examples": data.val.take(args.val_examples)}
    steps = StepLosses()
    start = time.perf_counter()
    result = train(cfg, callbacks=[steps], **examples)
    seconds = time.perf_counter() - start
    weights = result.model.get_weights()
    np.savez(args.result + ".npz", *weights)
    with open(args.result, "w") as f:
        json.dump(
            {
                "step_losses": steps.losses,
                "step_end_times": steps.times,
                "history": result.history,
                "replicas": result.model.distribute_strategy.num_replicas_in_sync,
                "export_path": result.export_path,
                "output_dir": result.config.runtime.output_dir,
                "chief": distribute.is_chief(result.model.distribute_strategy),
                "seconds": seconds,
            },
            f,
        )


if __name__ == "__main__":
    main()
