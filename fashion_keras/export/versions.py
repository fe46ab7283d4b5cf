"""Writing a SavedModel version in TF Serving layout (``<export_base>/<version>/``).

:func:`write_version` writes a :class:`~fashion_keras.export.serving_module.ServingModule`
through Keras' ``ExportArchive`` into a staging folder, adds ``assets.extra/`` (the metadata
``fashion_keras.json`` that every predictor reads back, and ``tf_serving_warmup_requests``, one
``PredictionLog`` per signature that TF Serving replays before it serves a new version), then
renames the folder into place: a partial export never appears as a servable version. Folders and
files are created with the user's umask (``drwxr-xr-x`` under the usual 022), so a model server
running as another user can read them. :func:`export_saved_model` does all of it for a model.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from fashion_keras.export.serving_module import (
    EXAMPLE_IMAGE_KEY,
    IMAGES_INPUT,
    SIGNATURES,
    ServingModule,
)
from fashion_keras.heads import AnyHead

METADATA_FILE = "fashion_keras.json"
#: TF Serving replays this TFRecord file of ``PredictionLog`` protos when it loads a version.
WARMUP_FILE = "tf_serving_warmup_requests"


def next_version(export_base: str) -> int:
    """1 + the highest integer version folder under ``export_base`` (1 when there is none)."""
    names = os.listdir(export_base) if os.path.isdir(export_base) else []
    versions = [int(d) for d in names if re.fullmatch(r"\d+", d)]
    return max(versions, default=0) + 1


def write_version(module: ServingModule, export_base: str, version: int | None = None) -> str:
    """Writes ``module`` as ``<export_base>/<version>`` (default: :func:`next_version`).

    Returns the path of the new version folder.
    """
    os.makedirs(export_base, exist_ok=True)
    version = next_version(export_base) if version is None else int(version)
    final = os.path.join(export_base, str(version))
    if os.path.exists(final):
        raise FileExistsError(f"export version folder already exists: {final}")
    # os.makedirs applies the umask (tempfile.mkdtemp would make it owner-only, drwx------)
    staging = os.path.join(export_base, f".tmp-{version}-{uuid.uuid4().hex[:12]}")
    os.makedirs(staging)
    try:
        archive = keras.export.ExportArchive()
        for trackable in module.trackables():
            archive.track(trackable)
        for name, (fn, signature) in module.endpoints().items():
            archive.add_endpoint(name, fn, input_signature=signature)
        archive.write_out(staging, verbose=False)
        extra = os.path.join(staging, "assets.extra")
        os.makedirs(extra, exist_ok=True)
        write_warmup_requests(
            os.path.join(extra, WARMUP_FILE), module.image_size, module.image_inputs()
        )
        with open(os.path.join(extra, METADATA_FILE), "w", encoding="utf-8") as f:
            json.dump(module.metadata(), f, indent=2)
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def export_saved_model(
    model: keras.Model,
    export_base: str,
    *,
    heads: Sequence[AnyHead] | None = None,
    version: int | None = None,
    bbox_margin: float | None = None,
    training_data: Mapping[str, Any] | None = None,
    keypoint_model: keras.Model | None = None,
) -> str:
    """Exports ``model`` (dict outputs keyed by head name) as ``<export_base>/<version>``.

    Args:
      model: a built model with a square image input and the outputs of its heads (a
        ``MultiHeadClassifier``: softmax and keypoint heads, see :class:`ServingModule`).
      heads: defaults to ``model.heads``.
      version: defaults to :func:`next_version`.
      bbox_margin: the garment-box margin of ``predict_examples``; default: the model's own.
      training_data: the data the model was trained on (a ``DataConfig`` as a dict), kept in
        the metadata so ``evaluate`` finds the data of an export by itself.
      keypoint_model: for a model with region crops, the keypoint model that finds the regions
        (:class:`ServingModule`).

    Returns:
      The path of the new version folder.
    """
    asset_src = tempfile.mkdtemp(prefix="fashion_keras_assets_")
    try:
        module = ServingModule(
            model,
            asset_src,
            heads=heads,
            bbox_margin=bbox_margin,
            training_data=training_data,
            keypoint_model=keypoint_model,
        )
        return write_version(module, export_base, version)
    finally:
        shutil.rmtree(asset_src, ignore_errors=True)


def warmup_requests(
    image_size: int, image_inputs: Sequence[str] = (IMAGES_INPUT,)
) -> list[prediction_log_pb2.PredictionLog]:
    """One batch-of-one ``PredictionLog`` per signature (a mid-grey JPEG, zeros, a tf.Example);
    ``image_inputs``: the inputs of ``predict_images`` (a model with region crops has one per
    view, :meth:`ServingModule.image_inputs`), each given zeros."""
    jpeg = tf.io.encode_jpeg(tf.fill([image_size, image_size, 3], tf.constant(128, tf.uint8)))
    jpeg = jpeg.numpy()
    example = tf.train.Example(
        features=tf.train.Features(
            feature={
                EXAMPLE_IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[jpeg]))
            }
        )
    )
    zeros = tf.make_tensor_proto(tf.zeros([1, image_size, image_size, 3], tf.float32).numpy())
    inputs = {
        "serving_default": {
            SIGNATURES["serving_default"]: tf.make_tensor_proto([jpeg], dtype=tf.string)
        },
        "predict_images": {name: zeros for name in image_inputs},
        "predict_examples": {
            SIGNATURES["predict_examples"]: tf.make_tensor_proto(
                [example.SerializeToString()], dtype=tf.string
            )
        },
    }
    logs = []
    for signature, tensors in inputs.items():
        request = predict_pb2.PredictRequest()
        request.model_spec.signature_name = signature
        for name, tensor in tensors.items():
            request.inputs[name].CopyFrom(tensor)
        logs.append(prediction_log_pb2.PredictionLog(predict_log={"request": request}))
    return logs


def write_warmup_requests(
    path: str, image_size: int, image_inputs: Sequence[str] = (IMAGES_INPUT,)
) -> None:
    """Writes :func:`warmup_requests` as the TFRecord file TF Serving replays on load."""
    with tf.io.TFRecordWriter(path) as writer:
        for log in warmup_requests(image_size, image_inputs):
            writer.write(log.SerializeToString())


def load_metadata(version_dir: str) -> dict:
    """Reads ``assets.extra/fashion_keras.json`` of an exported version."""
    with open(os.path.join(version_dir, "assets.extra", METADATA_FILE), encoding="utf-8") as f:
        return json.load(f)
