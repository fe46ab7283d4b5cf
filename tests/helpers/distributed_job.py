"""Runs one training job in a fresh process, for the distribution tests.

Usage: python distributed_job.py CONFIG_JSON RESULT_JSON [--cpu-devices N]

Splits the CPU into N logical devices before TensorFlow starts (MirroredStrategy tests), trains
with ``fashion_keras.train.train`` and writes the per-step losses, the final weights' checksum
and where the outputs went to RESULT_JSON (and the weights to RESULT_JSON + ".npz").
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
    args = parser.parse_args()
    if args.cpu_devices > 1:
        (cpu,) = tf.config.list_physical_devices("CPU")
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * args.cpu_devices
        )

    import keras

    from fashion_keras.config import TrainConfig
    from fashion_keras.train import train

    class StepLosses(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.losses = []

        def on_train_batch_end(self, batch, logs=None):
            self.losses.append(float(logs["loss"]))

    with open(args.config) as f:
        cfg = TrainConfig.from_dict(json.load(f))
    steps = StepLosses()
    start = time.perf_counter()
    result = train(cfg, callbacks=[steps])
    seconds = time.perf_counter() - start
    weights = result.model.get_weights()
    np.savez(args.result + ".npz", *weights)
    with open(args.result, "w") as f:
        json.dump(
            {
                "step_losses": steps.losses,
                "history": result.history,
                "replicas": result.model.distribute_strategy.num_replicas_in_sync,
                "export_path": result.export_path,
                "seconds": seconds,
            },
            f,
        )


if __name__ == "__main__":
    main()
