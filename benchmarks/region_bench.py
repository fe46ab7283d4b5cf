"""Region crop cost: one Keras SE-ResNet-50 over two views vs one view vs one model per group, CPU.

Three contenders, each in its own process, alternating repetition by repetition (as
``keypoint_bench``), with as many intra-op threads as CPUs:

- ``plain``: ``build_model("seresnet50", "deepfashion6")``, the six DeepFashion heads on the
  garment view (input ``image``);
- ``regions``: ``build_model(..., regions=("collar",))``, the same heads and weights, inputs
  ``image`` and ``collar_crop`` stacked into one batch through the backbone (so it sees twice the
  images), the ``neckline`` head (region ``collar``) pooling the collar view (issue 18);
- ``groups``: one model per region group, as one would train without region crops in one
  model: ``collar`` (the heads reading the collar, DeepFashion-6's ``neckline``, on a
  ``collar_crop`` input only) and ``garment`` (the other five heads, plain), in one process; a
  repetition runs both, so their costs (seconds, CPU-seconds) add.

All are compiled as the training compiles them (``trainer.compile_model``: masked focal losses,
the taxonomy's loss weights, weighted per-head metrics, SGD with momentum, no XLA), and fed
synthetic batches (random views, one-hot labels on every head). An image is one example: a
photo with its garment view and, where read, its collar crop. Per contender:

- ``train``: ``model.train_on_batch`` on one in-memory batch (batch 16, 224 px, as
  ``keypoint_bench``);
- ``infer``: the model's forward under ``tf.function`` (no XLA, as the export), batch 32.

Reports images/s and images per CPU-second of the contender's process (per core), the ratios
``regions / plain`` and ``regions / groups`` (medians of per-repetition ratios), parameters, and
each process's peak memory after inference (timed first) and after training.

    .venv/bin/python -m benchmarks.region_bench --reps 5
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks.common import (
    contender_main,
    cpu_count,
    paired_ratio,
    run_contenders,
    serve,
    summary,
    timed,
)
from benchmarks.infer_bench import _images, _tf
from benchmarks.keypoint_bench import synthetic_targets

PLAIN = "plain"
REGIONS = "regions"
GROUPS = "groups"
CONTENDERS = (PLAIN, REGIONS, GROUPS)
PEERS = (PLAIN, GROUPS)  # what ``regions`` is compared with
CROPS = ("collar",)  # the regions the ``regions`` model crops
GARMENT = "garment"  # the group of heads on the garment view


def region_groups(
    heads: Sequence[Any], regions: Sequence[str] = CROPS
) -> dict[str, tuple[tuple[Any, ...], tuple[str, ...]]]:
    """One model per view: ``{group: (heads, regions)}``, the garment view's heads (``garment``,
    plain) first, then per cropped region the heads reading it (with ``regions=(region,)``)."""
    from fashion_keras.heads.views import head_view

    groups: dict[str, tuple[tuple[Any, ...], tuple[str, ...]]] = {}
    garment = tuple(h for h in heads if head_view(h, regions) is None)
    if garment:
        groups[GARMENT] = (garment, ())
    for region in regions:
        groups[region] = (tuple(h for h in heads if head_view(h, regions) == region), (region,))
    return groups


def contender_models(contender: str) -> dict[str, tuple[tuple[Any, ...], tuple[str, ...]]]:
    """The models of a contender, ``{name: (heads, regions)}``: one for ``plain`` and
    ``regions``, one per region group for ``groups``."""
    from fashion_keras.heads import DEEPFASHION6

    if contender not in CONTENDERS:
        raise ValueError(f"unknown contender {contender!r}; expected one of {CONTENDERS}")
    if contender == GROUPS:
        return region_groups(DEEPFASHION6)
    return {contender: (tuple(DEEPFASHION6), CROPS if contender == REGIONS else ())}


def build_and_compile(
    heads: Sequence[Any], regions: Sequence[str], backbone: str, image_size: int
) -> Any:
    """A model with ``heads`` reading ``regions``' crops, compiled with the training's losses,
    loss weights and weighted per-head metrics, SGD with momentum, no XLA."""
    import keras

    from fashion_keras.models import build_model
    from fashion_keras.training import losses
    from fashion_keras.training.metrics import head_metrics

    model = build_model(backbone, tuple(heads), image_size=image_size, regions=tuple(regions))
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss=losses.focal_losses(heads),
        loss_weights=losses.loss_weights(heads),
        weighted_metrics=head_metrics(heads),
        jit_compile=False,
    )
    return model


def model_inputs(model: Any, batch_size: int, image_size: int, seed: int) -> Any:
    """Random views for ``model``: an array for a one-input model, else a dict by input name."""
    names = list(model.input) if isinstance(model.input, dict) else [None]
    views = {name: _images(batch_size, image_size, seed=seed + i) for i, name in enumerate(names)}
    return views[None] if names == [None] else views


def added(parts: Sequence[dict[str, float]], items: int) -> dict[str, float]:
    """``timed`` results of models run one after the other on the same ``items`` images, as one:
    seconds and CPU-seconds add."""
    seconds = sum(p["seconds"] for p in parts)
    cpu_s = sum(p["cpu_s"] for p in parts)
    return {
        "items": items,
        "seconds": seconds,
        "items_per_s": items / seconds,
        "cpu_s": cpu_s,
        "items_per_cpu_s": items / cpu_s if cpu_s > 0 else float("nan"),
    }


def _contender(args: argparse.Namespace) -> None:
    tf = _tf(cpu_count())
    models, data = {}, {}
    for i, (name, (heads, regions)) in enumerate(contender_models(args.worker).items()):
        model = build_and_compile(heads, regions, args.backbone, args.image_size)
        train_x = model_inputs(model, args.train_batch_size, args.image_size, seed=10 * i)
        train_y = synthetic_targets(heads, args.train_batch_size, args.image_size)
        infer_x = tf.nest.map_structure(
            tf.constant, model_inputs(model, args.infer_batch_size, args.image_size, 10 * i + 5)
        )
        models[name] = model
        data[name] = (train_x, train_y, infer_x)
    forwards = {
        name: tf.function(lambda x, m=model: m(x, training=False)) for name, model in models.items()
    }

    def train(name: str) -> int:
        train_x, train_y, _ = data[name]
        for _ in range(args.steps):
            models[name].train_on_batch(train_x, train_y)
        return args.steps * args.train_batch_size

    def infer(name: str) -> int:
        for _ in range(args.batches):
            for v in forwards[name](data[name][2]).values():
                v.numpy()  # to the host, as a predict does
        return args.batches * args.infer_batch_size

    def handle(request: dict[str, Any]) -> dict[str, Any]:
        run_ = train if request["cmd"] == "train" else infer
        each = {name: timed(lambda n=name: run_(n)) for name in models}
        return {**added(list(each.values()), next(iter(each.values()))["items"]), "models": each}

    params = {
        name: sum(int(np.prod(w.shape)) for w in m.trainable_weights) for name, m in models.items()
    }
    ready = {
        "params": sum(params.values()),
        "models": {
            name: {
                "heads": list(m.head_names),
                "regions": list(m.regions),
                "inputs": list(m.input) if isinstance(m.input, dict) else ["image"],
                "params": params[name],
            }
            for name, m in models.items()
        },
    }
    serve(ready, handle)


def run(
    reps: int,
    steps: int,
    batches: int,
    train_batch_size: int = 16,
    infer_batch_size: int = 32,
    image_size: int = 224,
    backbone: str = "seresnet50",
) -> dict[str, Any]:
    """Times inference, then training, of the three contenders alternately; returns images/s,
    the ratios ``regions / plain`` and ``regions / groups``, parameters and peak memory."""
    workers, results = run_contenders(
        "benchmarks.region_bench",
        CONTENDERS,
        reps,
        steps,
        batches,
        train_batch_size,
        infer_batch_size,
        image_size,
        backbone,
    )
    result: dict[str, Any] = {
        "model": f"{backbone}, {image_size} px",
        "regions": list(CROPS),
        "models": {w.name: w.ready["models"] for w in workers},
        "train_batch_size": train_batch_size,
        "infer_batch_size": infer_batch_size,
        "image_size": image_size,
        "steps_per_rep": steps,
        "batches_per_rep": batches,
        "threads": cpu_count(),
        "params": {w.name: w.ready["params"] for w in workers},
    }
    for suffix, key in (("", "items_per_s"), ("_per_cpu_s", "items_per_cpu_s")):
        for cmd, res in results.items():
            rates = {c: [r[key] for r in res[c]] for c in CONTENDERS}
            result[f"{cmd}_images{suffix or '_per_s'}"] = {c: summary(v) for c, v in rates.items()}
            for peer in PEERS:
                ratio = paired_ratio(rates[REGIONS], rates[peer])
                result[f"{cmd}_ratio_vs_{peer}{suffix}"] = ratio
            result[f"{GROUPS}_{cmd}_images{suffix or '_per_s'}"] = {
                m: summary([r["models"][m][key] for r in res[GROUPS]])
                for m in result["models"][GROUPS]
            }
    result["peak_rss_mb"] = {
        cmd: {c: res[c][-1]["peak_rss_mb"] for c in CONTENDERS} for cmd, res in results.items()
    }
    return result


def main(argv: Sequence[str] | None = None) -> int:
    return contender_main(argv, __doc__.split("\n\n")[0], CONTENDERS, _contender, run)


if __name__ == "__main__":
    sys.exit(main())
