"""SavedModel export in TF Serving layout (``<export_base>/<version>/``) via Keras' ExportArchive.

Signatures:

- ``serving_default``: ``image_bytes`` (tf.string, shape [None]): encoded JPEG/PNG/GIF/BMP/WebP
  bytes of whole photos. The graph runs :func:`~fashion_keras.data.preprocess.preprocess_for_eval`
  (no garment box: the whole image, padded to square, resized, centre crop), exactly the
  evaluation view used in training.
- ``predict_images``: ``images`` (float32, [None, S, S, 3]): RGB in [0, 255], already cropped,
  padded and resized to the model's input size S (the output of ``preprocess_for_eval``); the
  mean/std normalisation is inside the model, so do not normalise.
- ``predict_examples``: ``examples`` (tf.string, [None]): serialized ``tf.train.Example`` protos
  (TFX / TFMA) with the encoded image in the bytes feature :data:`EXAMPLE_IMAGE_KEY` and,
  optionally, the garment box ``(ymin, xmin, ymax, xmax)`` normalised in the float feature
  :data:`EXAMPLE_BBOX_KEY` (the dataset builders' own feature names, so their records feed it
  as-is); the box crop is the one training evaluation applies.

Outputs, per head: ``<head>_probs`` (float32 [None, num_classes], rows sum to 1),
``<head>_class`` (int64 [None], argmax), ``<head>_label`` (string [None], the class name read
from the head's class list, shipped as the asset ``assets/<head>.classes.txt``) and
``<head>_class_names`` (string [None, num_classes], every class name in ``<head>_probs`` column
order, so a remote client can name its top-k classes without a copy of the class list). The head
spec, input size and preprocessing are also written to ``assets.extra/fashion_keras.json``, and
``assets.extra/tf_serving_warmup_requests`` holds one ``PredictionLog`` per signature, which
TF Serving replays before it serves a new version.

A version is written to a temporary folder and renamed into place, so a partial export never
appears as a servable version.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence

import keras
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from fashion_keras.data.preprocess import DEFAULT_BBOX_MARGIN, preprocess_for_eval
from fashion_keras.heads import Head, heads_to_dict

SERVING_INPUT = "image_bytes"
IMAGES_INPUT = "images"
EXAMPLES_INPUT = "examples"
#: tf.Example feature holding the encoded image (the TFDS builders' ``image`` feature).
EXAMPLE_IMAGE_KEY = "image"
#: Optional tf.Example float feature: normalised garment box (ymin, xmin, ymax, xmax).
EXAMPLE_BBOX_KEY = "bbox"
#: Signature name -> its one input name.
SIGNATURES = {
    "serving_default": SERVING_INPUT,
    "predict_images": IMAGES_INPUT,
    "predict_examples": EXAMPLES_INPUT,
}
METADATA_FILE = "fashion_keras.json"
#: TF Serving replays this TFRecord file of ``PredictionLog`` protos when it loads a version.
WARMUP_FILE = "tf_serving_warmup_requests"


def output_names(head: Head) -> tuple[str, str, str, str]:
    """The output names of a head: probabilities, class index, class name, all class names."""
    n = head.name
    return f"{n}_probs", f"{n}_class", f"{n}_label", f"{n}_class_names"


def next_version(export_base: str) -> int:
    """1 + the highest integer version folder under ``export_base`` (1 when there is none)."""
    versions = [int(d) for d in _listdir(export_base) if re.fullmatch(r"\d+", d)]
    return max(versions, default=0) + 1


def _listdir(path: str) -> list[str]:
    return os.listdir(path) if os.path.isdir(path) else []


def _class_table(head: Head, asset_dir: str) -> tf.lookup.StaticHashTable:
    path = os.path.join(asset_dir, f"{head.name}.classes.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(head.classes) + "\n")
    init = tf.lookup.TextFileInitializer(
        path,
        key_dtype=tf.int64,
        key_index=tf.lookup.TextFileIndex.LINE_NUMBER,
        value_dtype=tf.string,
        value_index=tf.lookup.TextFileIndex.WHOLE_LINE,
    )
    return tf.lookup.StaticHashTable(init, default_value="")


def export_saved_model(
    model: keras.Model,
    export_base: str,
    *,
    heads: Sequence[Head] | None = None,
    version: int | None = None,
    bbox_margin: float = DEFAULT_BBOX_MARGIN,
) -> str:
    """Exports ``model`` (dict outputs keyed by head name) as ``<export_base>/<version>``.

    Args:
      model: a built model with a square image input and one softmax output per head.
      heads: defaults to ``model.heads``.
      version: defaults to :func:`next_version`.

    Returns:
      The path of the new version folder.
    """
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            f"SavedModel export needs KERAS_BACKEND=tensorflow, not {keras.backend.backend()!r}"
        )
    heads = tuple(heads if heads is not None else model.heads)
    image_size = model.inputs[0].shape[1]
    if image_size is None or model.inputs[0].shape[2] != image_size:
        raise ValueError(
            f"the model's input shape {model.inputs[0].shape} is not a fixed square image size"
        )
    os.makedirs(export_base, exist_ok=True)
    version = next_version(export_base) if version is None else int(version)
    final = os.path.join(export_base, str(version))
    if os.path.exists(final):
        raise FileExistsError(f"export version folder already exists: {final}")

    staging = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=export_base)
    asset_src = tempfile.mkdtemp(prefix="fashion_keras_assets_")
    try:
        tables = {h.name: _class_table(h, asset_src) for h in heads}
        archive = keras.export.ExportArchive()
        archive.track(model)
        for table in tables.values():
            archive.track(table)

        def _outputs(images: tf.Tensor) -> dict[str, tf.Tensor]:
            probs = model(images, training=False)
            batch = tf.shape(images, out_type=tf.int64)[0]
            out = {}
            for h in heads:
                p_name, c_name, l_name, n_name = output_names(h)
                p = tf.cast(probs[h.name], tf.float32)
                cls = tf.argmax(p, axis=-1, output_type=tf.int64)
                names = tables[h.name].lookup(tf.range(h.num_classes, dtype=tf.int64))
                out[p_name] = tf.identity(p, name=p_name)
                out[c_name] = tf.identity(cls, name=c_name)
                out[l_name] = tf.identity(tables[h.name].lookup(cls), name=l_name)
                out[n_name] = tf.identity(tf.tile(names[None], [batch, 1]), name=n_name)
            return out

        def serve_image_bytes(image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
            images = tf.map_fn(
                lambda b: preprocess_for_eval(b, image_size, None, bbox_margin),
                image_bytes,
                fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32),
            )
            return _outputs(images)

        def predict_images(images: tf.Tensor) -> dict[str, tf.Tensor]:
            return _outputs(tf.cast(images, tf.float32))

        example_spec = {
            EXAMPLE_IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
            EXAMPLE_BBOX_KEY: tf.io.FixedLenFeature([4], tf.float32, [0.0, 0.0, 1.0, 1.0]),
        }

        def predict_examples(examples: tf.Tensor) -> dict[str, tf.Tensor]:
            parsed = tf.io.parse_example(examples, example_spec)
            images = tf.map_fn(
                lambda x: preprocess_for_eval(x[0], image_size, x[1], bbox_margin),
                (parsed[EXAMPLE_IMAGE_KEY], parsed[EXAMPLE_BBOX_KEY]),
                fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32),
            )
            return _outputs(images)

        archive.add_endpoint(
            "serving_default",
            serve_image_bytes,
            input_signature=[tf.TensorSpec([None], tf.string, name=SERVING_INPUT)],
        )
        archive.add_endpoint(
            "predict_images",
            predict_images,
            input_signature=[
                tf.TensorSpec([None, image_size, image_size, 3], tf.float32, name=IMAGES_INPUT)
            ],
        )
        archive.add_endpoint(
            "predict_examples",
            predict_examples,
            input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)],
        )
        archive.write_out(staging, verbose=False)
        extra = os.path.join(staging, "assets.extra")
        os.makedirs(extra, exist_ok=True)
        write_warmup_requests(os.path.join(extra, WARMUP_FILE), int(image_size))
        metadata = {
            **heads_to_dict(heads),
            "image_size": int(image_size),
            "input": {
                "serving_default": {SERVING_INPUT: "encoded image bytes, tf.string [None]"},
                "predict_images": {
                    IMAGES_INPUT: f"float32 RGB 0-255 [None, {image_size}, {image_size}, 3]"
                },
                "predict_examples": {
                    EXAMPLES_INPUT: "serialized tf.Example, tf.string [None]",
                    "features": {
                        EXAMPLE_IMAGE_KEY: "bytes: encoded image",
                        EXAMPLE_BBOX_KEY: "optional float[4]: ymin, xmin, ymax, xmax in [0, 1]",
                    },
                },
            },
            "outputs": {h.name: list(output_names(h)) for h in heads},
            "preprocessing": {
                "bbox_margin": bbox_margin,
                "pad_to_square": "mean colour",
                "resize_then_centre_crop": True,
            },
        }
        with open(os.path.join(extra, METADATA_FILE), "w", encoding="utf-8") as f:
            json.dump(metadata, f, indent=2)
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(asset_src, ignore_errors=True)
    return final


def warmup_requests(image_size: int) -> list[prediction_log_pb2.PredictionLog]:
    """One batch-of-one ``PredictionLog`` per signature (a mid-grey JPEG, zeros, a tf.Example)."""
    jpeg = tf.io.encode_jpeg(tf.fill([image_size, image_size, 3], tf.constant(128, tf.uint8)))
    jpeg = jpeg.numpy()
    example = tf.train.Example(
        features=tf.train.Features(
            feature={
                EXAMPLE_IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[jpeg]))
            }
        )
    )
    inputs = {
        "serving_default": tf.make_tensor_proto([jpeg], dtype=tf.string),
        "predict_images": tf.make_tensor_proto(
            tf.zeros([1, image_size, image_size, 3], tf.float32).numpy()
        ),
        "predict_examples": tf.make_tensor_proto([example.SerializeToString()], dtype=tf.string),
    }
    logs = []
    for signature, tensor in inputs.items():
        request = predict_pb2.PredictRequest()
        request.model_spec.signature_name = signature
        request.inputs[SIGNATURES[signature]].CopyFrom(tensor)
        logs.append(prediction_log_pb2.PredictionLog(predict_log={"request": request}))
    return logs


def write_warmup_requests(path: str, image_size: int) -> None:
    """Writes :func:`warmup_requests` as the TFRecord file TF Serving replays on load."""
    with tf.io.TFRecordWriter(path) as writer:
        for log in warmup_requests(image_size):
            writer.write(log.SerializeToString())


def load_metadata(version_dir: str) -> dict:
    """Reads ``assets.extra/fashion_keras.json`` of an exported version."""
    with open(os.path.join(version_dir, "assets.extra", METADATA_FILE), encoding="utf-8") as f:
        return json.load(f)
