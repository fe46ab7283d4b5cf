"""Input pipeline benchmark: the training ``tf.data`` pipeline against a PIL loader and bare decode.

On a folder of generated JPEGs (drawn garments from ``fashion_keras_datasets.synthetic.demo``,
each with its garment box) of the two realistic sizes, 300 px long side (DeepFashion) and 512x512 (FashionAI),
four contenders each make passes over half of the images (the first half, then the second, and
so on), in their own processes, alternating:

- ``tf.data``: :func:`fashion_keras.data.pipeline.make_dataset` (training: shuffle, the
  training view of :mod:`fashion_keras.data.augment`, batch), fed file bytes read with
  ``tf.io.read_file``;
- ``first``: the same pipeline with the training view before issue 19
  (:func:`first_train_view`: full-resolution window, antialiased mean-padded square, then crop,
  flip and three colour jitter ops): the "before" of today's view, in the same run;
- ``PIL``: the same tensors from PIL + NumPy with a thread pool of one thread per CPU, as a user
  would write it (:class:`PilLoader`; :func:`pil_eval_view` and :func:`pil_train_view`);
- ``decode``: bare ``tf.io.decode_jpeg`` of the same files (full image, no crop), in a parallel
  ``tf.data`` map: the JPEG decoding floor.

    .venv/bin/python -m benchmarks.input_bench --images 2000 --reps 5
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from multiprocessing import Pool
from typing import Any

import numpy as np
from PIL import Image

from benchmarks.common import (
    Worker,
    cpu_count,
    interleave,
    paired_ratio,
    serve,
    summary,
    timed,
)

#: Image sets: name -> (description, long side, square?).
IMAGE_SETS = {
    "deepfashion300": ("300 px long side (DeepFashion)", 300, False),
    "fashionai512": ("512x512 (FashionAI)", 512, True),
}
JPEG_QUALITY = 90
#: Bump when the generated images change, so cached folders are regenerated.
IMAGES_VERSION = 1
MARGIN = 0.1
#: Colour jitter of ``train_view``'s defaults (``fashion_keras.data.augment``).
BRIGHTNESS, CONTRAST, SATURATION = 0.1, 0.2, 0.2
# ITU-R 601 luma, as PIL's convert("L") and torchvision's ColorJitter use.
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


# --- the image folders ---------------------------------------------------------------------------


def _make_one(job: tuple[str, int, int, bool]) -> dict[str, Any]:
    from fashion_keras_datasets.synthetic.demo import sample_example

    folder, index, side, square = job
    example = sample_example(seed=7, split="train", index=index, max_side=side)
    image: Image.Image = example["image"]
    x1, y1, x2, y2 = example["bbox"]
    w, h = image.size
    size = (side, side) if square else _long_side(w, h, side)
    image = image.resize(size, Image.BICUBIC)
    name = f"{index:06d}.jpg"
    image.save(os.path.join(folder, name), "JPEG", quality=JPEG_QUALITY)
    # normalised (ymin, xmin, ymax, xmax): the scale does not change it
    return {"file": name, "bbox": [y1 / h, x1 / w, y2 / h, x2 / w], "size": list(size)}


def _long_side(width: int, height: int, side: int) -> tuple[int, int]:
    scale = side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def make_images(cache_dir: str, name: str, count: int, processes: int | None = None) -> str:
    """Generates (once, cached) ``count`` JPEGs of image set ``name``; returns the folder.

    The folder holds the images and ``index.json``: ``[{"file", "bbox", "size"}, ...]`` with the
    garment box normalised as ``(ymin, xmin, ymax, xmax)``.
    """
    _, side, square = IMAGE_SETS[name]
    folder = os.path.join(cache_dir, f"{name}-{count}-v{IMAGES_VERSION}")
    index = os.path.join(folder, "index.json")
    if os.path.exists(index):
        return folder
    os.makedirs(folder, exist_ok=True)
    jobs = [(folder, i, side, square) for i in range(count)]
    with Pool(processes or cpu_count()) as pool:
        entries = pool.map(_make_one, jobs, chunksize=16)
    with open(index + ".tmp", "w") as f:
        json.dump(entries, f)
    os.replace(index + ".tmp", index)
    return folder


def read_index(folder: str) -> tuple[list[str], np.ndarray]:
    """Image paths and their normalised boxes ``(N, 4)`` of a folder from :func:`make_images`."""
    with open(os.path.join(folder, "index.json")) as f:
        entries = json.load(f)
    paths = [os.path.join(folder, e["file"]) for e in entries]
    return paths, np.asarray([e["bbox"] for e in entries], np.float32)


# --- the PIL + NumPy loader ----------------------------------------------------------------------


def pil_crop_window(
    height: int, width: int, bbox: Sequence[float] | None, margin: float = MARGIN
) -> tuple[int, int, int, int]:
    """``(y, x, h, w)`` of the box plus margin, clamped; the arithmetic of ``crop_window``."""
    f = np.float32
    if bbox is None:
        bbox = (0.0, 0.0, 1.0, 1.0)
    hf, wf = f(height), f(width)
    b = np.asarray(bbox, np.float32)
    ymin, xmin, ymax, xmax = b[0] * hf, b[1] * wf, b[2] * hf, b[3] * wf
    dy, dx = (ymax - ymin) * f(margin), (xmax - xmin) * f(margin)
    y0 = np.clip(np.floor(ymin - dy), f(0), hf - f(1))
    x0 = np.clip(np.floor(xmin - dx), f(0), wf - f(1))
    y1 = np.clip(np.ceil(ymax + dy), y0 + f(1), hf)
    x1 = np.clip(np.ceil(xmax + dx), x0 + f(1), wf)
    return int(y0), int(x0), int(y1 - y0), int(x1 - x0)


def _open(src: str | bytes) -> Image.Image:
    return Image.open(io.BytesIO(src) if isinstance(src, bytes) else src)


def pil_resized_square(
    src: str | bytes, image_size: int, bbox: Sequence[float] | None, margin: float = MARGIN
) -> Image.Image:
    """Decode, box crop, pad to a square with the crop's mean colour, resize (antialiased)."""
    image = _open(src).convert("RGB")
    y, x, h, w = pil_crop_window(image.height, image.width, bbox, margin)
    crop = image.crop((x, y, x + w, y + h))
    side = max(h, w)
    mean = np.asarray(crop, np.float32).mean(axis=(0, 1))
    square = Image.new("RGB", (side, side), tuple(int(round(float(m))) for m in mean))
    square.paste(crop, ((side - w) // 2, (side - h) // 2))
    resized = int(round(image_size * 234 / 224))
    return square.resize((resized, resized), Image.BILINEAR)


def pil_eval_view(
    src: str | bytes, image_size: int, bbox: Sequence[float] | None = None, margin: float = MARGIN
) -> np.ndarray:
    """``preprocess_for_eval`` in PIL + NumPy: float32 (S, S, 3) in [0, 255], central crop."""
    image = np.asarray(pil_resized_square(src, image_size, bbox, margin), np.float32)
    offset = (image.shape[0] - image_size) // 2
    return image[offset : offset + image_size, offset : offset + image_size]


def pil_train_view(
    src: str | bytes,
    image_size: int,
    bbox: Sequence[float] | None,
    rng: np.random.Generator,
    margin: float = MARGIN,
) -> np.ndarray:
    """The training view in PIL + NumPy: random crop, flip and colour jitter.

    Saturation blends with the luma image (PIL ``ImageEnhance.Color``, torchvision
    ``ColorJitter``), as ``fashion_keras.data.augment`` does since issue 19.
    """
    square = pil_resized_square(src, image_size, bbox, margin)
    top, left = rng.integers(0, square.height - image_size + 1, size=2)
    image = np.asarray(square, np.float32)[top : top + image_size, left : left + image_size]
    if rng.random() < 0.5:
        image = image[:, ::-1]
    image = image * np.float32(1 / 255)
    image += np.float32(rng.uniform(-BRIGHTNESS, BRIGHTNESS))
    mean = image.mean(axis=(0, 1), keepdims=True)
    image = (image - mean) * np.float32(rng.uniform(1 - CONTRAST, 1 + CONTRAST)) + mean
    gray = (image @ _LUMA)[..., None]
    image = (image - gray) * np.float32(rng.uniform(1 - SATURATION, 1 + SATURATION)) + gray
    np.clip(image, 0.0, 1.0, out=image)
    image *= np.float32(255)
    return image


class PilLoader:
    """Shuffled, augmented batches ``(B, S, S, 3)`` float32 from files, one thread per CPU."""

    def __init__(self, image_size: int, batch_size: int, threads: int | None = None) -> None:
        self.image_size = image_size
        self.batch_size = batch_size
        self.pool = ThreadPoolExecutor(threads or cpu_count())

    def epoch(self, paths: Sequence[str], bboxes: np.ndarray, seed: int) -> Iterator[np.ndarray]:
        """One pass in a random order (the last partial batch dropped, as in training)."""
        order = np.random.default_rng(seed).permutation(len(paths))

        def load(i: int) -> np.ndarray:
            rng = np.random.default_rng([seed, int(i)])
            return pil_train_view(paths[i], self.image_size, bboxes[i], rng)

        batch: list[np.ndarray] = []
        for image in self.pool.map(load, order):
            batch.append(image)
            if len(batch) == self.batch_size:
                yield np.stack(batch)
                batch = []


# --- the first version's training view (issue 19's "before") -----------------------------------


def first_train_view(
    image_bytes: Any,
    image_size: int,
    bbox: Any,
    seed: Any,
    margin: float = MARGIN,
    jitter: bool = True,
) -> Any:
    """The training view before issue 19, from TensorFlow's own ops on the same seed: the
    antialiased mean-padded square of the full-resolution window (``preprocess_square``), then
    ``tf.image.stateless_random_crop`` / ``_flip_left_right``, brightness on the 0-255 scale,
    ``stateless_random_contrast`` and HSV ``stateless_random_saturation``, clipped. The
    ``first`` contender's view, and the reference ``tests/data/test_training_view.py``
    compares today's view with (``jitter=False``: the geometry alone)."""
    import tensorflow as tf

    from fashion_keras.data.preprocess import preprocess_square, resize_size

    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=7)
    square = preprocess_square(image_bytes, resize_size(image_size), bbox, margin)
    view = tf.image.stateless_random_crop(square, [image_size, image_size, 3], seed=seeds[0])
    view = tf.image.stateless_random_flip_left_right(view, seed=seeds[1])
    if not jitter:
        return view
    view = tf.image.stateless_random_brightness(view / 255.0, BRIGHTNESS, seeds[2]) * 255.0
    view = tf.image.stateless_random_contrast(view, 1 - CONTRAST, 1 + CONTRAST, seeds[3])
    view = tf.image.stateless_random_saturation(view, 1 - SATURATION, 1 + SATURATION, seeds[4])
    return tf.clip_by_value(view, 0.0, 255.0)


def _first_dataset(examples: Any, heads: Any, image_size: int, batch_size: int) -> Any:
    """``make_dataset(training=True)`` of before issue 19: the same shuffle, seeds, targets and
    batching, with :func:`first_train_view`."""
    import tensorflow as tf

    from fashion_keras.data.pipeline import targets_from_example

    examples = examples.shuffle(2048, seed=0, reshuffle_each_iteration=True)
    seeds = tf.data.Dataset.random(seed=0, rerandomize_each_iteration=True).batch(2)

    def view(example: Any, seed: Any) -> Any:
        image = first_train_view(example["image"], image_size, example["bbox"], seed)
        return (image, *targets_from_example(example, heads))

    ds = tf.data.Dataset.zip(examples, seeds).map(view, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


# --- the contenders (child processes) ------------------------------------------------------------


def _tf_setup(threads: int) -> Any:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    return tf


def _contender(args: argparse.Namespace) -> None:
    """Serves passes over half of the folder: the first half on even repetitions, else the second."""
    paths, bboxes = read_index(args.folder)
    threads = cpu_count()
    half = len(paths) // 2
    halves = [(paths[:half], bboxes[:half]), (paths[half:], bboxes[half:])]
    if args.contender in ("tf.data", "first", "accelerator"):
        tf = _tf_setup(threads)
        from fashion_keras.data.pipeline import make_dataset
        from fashion_keras.heads import get_heads

        heads = get_heads("deepfashion6")
        rng = np.random.default_rng(0)

        def dataset(files: list[str], boxes: np.ndarray) -> Any:
            labels = {h.name: rng.integers(0, h.num_classes, len(files)) for h in heads}
            examples = tf.data.Dataset.from_tensor_slices(
                {"path": files, "bbox": boxes, "labels": labels}
            ).map(
                lambda ex: {**ex, "image": tf.io.read_file(ex["path"])},
                num_parallel_calls=tf.data.AUTOTUNE,
            )
            if args.contender == "first":
                return _first_dataset(examples, heads, args.image_size, args.batch_size)
            view_on = "accelerator" if args.contender == "accelerator" else "cpu"
            return make_dataset(
                examples, heads, args.image_size, args.batch_size, True, seed=0, view_on=view_on
            )

        datasets = [dataset(*h) for h in halves]

        def one_pass(k: int) -> int:
            # the accelerator view's batches are window dicts: count their plans' rows
            return sum(len(tf.nest.flatten(x)[-1]) for x, _, _ in datasets[k])

    elif args.contender == "decode":
        tf = _tf_setup(threads)
        datasets = [
            tf.data.Dataset.from_tensor_slices(files)
            .map(
                lambda p: tf.io.decode_jpeg(tf.io.read_file(p), channels=3),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
            .prefetch(tf.data.AUTOTUNE)
            for files, _ in halves
        ]

        def one_pass(k: int) -> int:
            return sum(1 for _ in datasets[k])

    else:
        loader = PilLoader(args.image_size, args.batch_size, threads)
        passes = 0

        def one_pass(k: int) -> int:
            nonlocal passes
            passes += 1
            return sum(len(b) for b in loader.epoch(*halves[k], seed=passes))

    def handle(request: dict[str, Any]) -> dict[str, Any]:
        k = request["rep"] % 2
        result = timed(lambda: one_pass(k))
        expected = len(halves[k][0])
        if args.contender != "decode":
            expected -= expected % args.batch_size  # the last partial batch is dropped
        if result["items"] != expected:
            raise RuntimeError(f"{args.contender}: {result['items']} images in a pass")
        return result

    serve({"contender": args.contender, "threads": threads, "images": len(paths)}, handle)


# --- the parent ----------------------------------------------------------------------------------

CONTENDERS = ("tf.data", "accelerator", "first", "PIL", "decode")
#: The training views measured against the goals: the CPU-made view (``tf.data``) and the CPU's
#: share of the accelerator-made one (``augment_on = accelerator``: the window decode and the
#: padded batch; the pixels are made in the training step).
VIEWS = ("tf.data", "accelerator")
GOALS = {"PIL": 2.0, "decode": 0.8}
#: Ratios without a goal: today's view against the first version's (issue 19's before/after).
INFO = ("first",)
#: Images/s of one GPU training SE-ResNet-50 (issue 19), and the most CPU cores that may feed it.
FEED_RATE, FEED_CORES_GOAL = 3000, 8


def run(
    images: int, reps: int, cache_dir: str, image_size: int = 224, batch_size: int = 32
) -> dict[str, Any]:
    """Runs the benchmark on both image sets; returns the rows and ratios against the goals."""
    threads = cpu_count()
    out: dict[str, Any] = {
        "images": images,
        "image_size": image_size,
        "batch_size": batch_size,
        "threads": threads,
        "sets": {},
    }
    for name, (description, _, _) in IMAGE_SETS.items():
        folder = make_images(cache_dir, name, images)
        workers = []
        try:
            for contender in CONTENDERS:
                argv = ["--worker", contender, "--folder", folder]
                argv += ["--image-size", str(image_size), "--batch-size", str(batch_size)]
                workers.append(Worker(contender, "benchmarks.input_bench", argv))
            results = interleave(workers, reps, cmd="pass")
        finally:
            for w in workers:
                w.close()
        rates = {c: [r["items_per_s"] for r in results[c]] for c in CONTENDERS}
        per_cpu = {c: [r["items_per_cpu_s"] for r in results[c]] for c in CONTENDERS}
        out["sets"][name] = {
            "description": description,
            "images_per_s": {c: summary(v) for c, v in rates.items()},
            "images_per_cpu_s": {c: summary(v) for c, v in per_cpu.items()},
            "goal": dict(GOALS),
            "cores_for_feed_rate_first": cores_needed(per_cpu["first"]),
            "peak_rss_mb": {c: results[c][-1]["peak_rss_mb"] for c in CONTENDERS},
        }
        for view in VIEWS:  # "ratio", "cores_for_feed_rate" (tf.data); "..._accelerator"
            key = "" if view == "tf.data" else f"_{view}"
            peers = (*GOALS, *INFO)
            out["sets"][name].update(
                {
                    f"ratio{key}": {c: paired_ratio(rates[view], rates[c]) for c in peers},
                    f"ratio_per_cpu_s{key}": {
                        c: paired_ratio(per_cpu[view], per_cpu[c]) for c in peers
                    },
                    f"cores_for_feed_rate{key}": cores_needed(per_cpu[view]),
                }
            )
    return out


def cores_needed(per_cpu: Sequence[float], rate: float = FEED_RATE) -> dict[str, float]:
    """CPU cores the training pipeline needs for ``rate`` images/s, from its images per
    CPU-second (median and range over the repetitions)."""
    cores = [rate / v for v in per_cpu]
    return {"median": float(np.median(cores)), "min": min(cores), "max": max(cores)}


def feed_lines(result: dict[str, Any]) -> list[str]:
    """One line per image set of :func:`run`'s result: the cores needed to feed
    :data:`FEED_RATE` images/s, today and with the first version's view."""
    lines = []
    for s in result["sets"].values():
        now, first = s["cores_for_feed_rate"], s["cores_for_feed_rate_first"]
        line = (
            f"cores needed to feed {FEED_RATE:,} images/s ({s['description']}): "
            f"{now['median']:.1f} ({now['min']:.1f}-{now['max']:.1f}; goal <= "
            f"{FEED_CORES_GOAL})"
        )
        if "cores_for_feed_rate_accelerator" in s:
            acc = s["cores_for_feed_rate_accelerator"]
            line += f"; view made on the accelerator {acc['median']:.1f}"
        lines.append(f"{line}; first version {first['median']:.1f}")
    return lines


def table(
    result: dict[str, Any],
    fmt_stats: Callable[[dict[str, float], int], str],
    fmt_ratio: Callable[[dict[str, float]], str],
) -> tuple[list[str], list[list[str]]]:
    """The input part's table: per image set, images/s and per core of every contender, and
    the two views' ratios (the CPU-made one, tf.data, and the accelerator-made one's CPU share)."""
    rows = []
    for s in result["sets"].values():
        for label, key in (("images/s", ""), ("per core", "_per_cpu_s")):
            rate, ratio = s["images_per_cpu_s" if key else "images_per_s"], s[f"ratio{key}"]
            made = s.get(f"ratio{key}_accelerator")
            rows.append(
                [s["description"] if label == "images/s" else "", label]
                + [fmt_stats(rate[c], 0) for c in CONTENDERS]
                + [fmt_ratio(ratio[c]) for c in ("first", "PIL", "decode")]
                + [fmt_ratio(made[c]) if made else "-" for c in ("PIL", "decode")]
            )
    header = ["images", "measure", "tf.data", "accelerator-made (CPU share)", "first version"]
    header += ["PIL+NumPy threads", "bare decode_jpeg", "tf.data/first"]
    for view in ("tf.data", "accel."):
        header += [f"{view}/PIL (>={GOALS['PIL']})", f"{view}/decode (>={GOALS['decode']})"]
    return header, rows


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=2000, help="images per set")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--cache-dir", default=None, help="where the generated images are kept")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--worker", choices=CONTENDERS, help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def default_cache_dir() -> str:
    """``$FASHION_KERAS_CACHE/bench`` or ``~/.cache/fashion_keras/bench``."""
    base = os.environ.get("FASHION_KERAS_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "fashion_keras"
    )
    return os.path.join(base, "bench")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        args.contender = args.worker
        _contender(args)
        return 0
    result = run(args.images, args.reps, args.cache_dir or default_cache_dir())
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
