"""Training speed in the log: images per second each epoch, and an early estimate of the epoch
time with advice when the settings do not fit the machine (a full-size model without pretrained
weights on a CPU takes hours)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import keras

log = logging.getLogger("fashion_keras")

#: Steps timed before the estimate (the first steps compile the graph and are left out).
WARMUP_STEPS = 3
ESTIMATE_STEPS = 10
#: An epoch longer than this on a CPU gets the advice to use smaller settings.
SLOW_EPOCH_S = 15 * 60


class Throughput(keras.callbacks.Callback):
    """Logs ``images/s`` after each epoch and, once ``ESTIMATE_STEPS`` steps after the warm-up
    are timed, the estimated time per epoch and for the run; on a CPU, an estimate over
    ``SLOW_EPOCH_S`` per epoch comes with the advice.

    Args:
      batch_size: the global batch.
      steps_per_epoch: steps of each epoch.
      epochs: epochs left to run.
      advice: what to suggest when an epoch is slow (None: no advice, e.g. with a GPU).
      clock: the time source (tests pass a fake one).
    """

    def __init__(
        self,
        batch_size: int,
        steps_per_epoch: int,
        epochs: int,
        advice: str | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.steps_per_epoch = steps_per_epoch
        self.epochs = epochs
        self.advice = advice
        self.clock = clock
        self.estimate: float | None = None  # seconds per epoch
        self._steps = 0
        self._start: float | None = None
        self._epoch_start = 0.0
        self._epoch_steps = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_start, self._epoch_steps = self.clock(), 0

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._steps += 1
        self._epoch_steps += 1
        if self._steps == WARMUP_STEPS:
            self._start = self.clock()
        elif self._start is not None and self._steps == WARMUP_STEPS + ESTIMATE_STEPS:
            per_step = (self.clock() - self._start) / ESTIMATE_STEPS
            self.estimate = per_step * self.steps_per_epoch
            log.info(
                "about %s per epoch (%.1f images/s), %s for %d epochs",
                _duration(self.estimate),
                self.batch_size / per_step,
                _duration(self.estimate * self.epochs),
                self.epochs,
            )
            if self.advice and self.estimate > SLOW_EPOCH_S:
                log.warning("%s", self.advice)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        seconds = self.clock() - self._epoch_start
        if self._epoch_steps and seconds > 0:
            log.info(
                "epoch %d: %.1f images/s (%d steps in %s)",
                epoch,
                self._epoch_steps * self.batch_size / seconds,
                self._epoch_steps,
                _duration(seconds),
            )


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def cpu_advice(backbone: str, image_size: int, pretrained: bool) -> str:
    """What to try when training is slow on a CPU."""
    tips = ["--preset demo (seresnet_tiny at 64 px) to check the set-up in minutes"]
    if not pretrained:
        tips.append("--weights imagenet --freeze-backbone (pretrained, only the heads train)")
    if image_size > 128:
        tips.append("a smaller --image-size")
    return (
        f"training {backbone} at {image_size} px on a CPU without a GPU is slow; try "
        + "; or ".join(tips)
    )
