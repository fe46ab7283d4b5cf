"""Two-stage export of a model with region crops (issue 18): the keypoint stage's ``<region>_box``
equals the box computed independently from the model's keypoints, the attribute heads read the
view of that box, a separate keypoint model, ``predict_images`` with one input per view, the
metadata, the warm-up requests and ``saved_model_cli``."""

import os

import numpy as np
import pytest
import tensorflow as tf
from conftest import encode
from tensorflow_serving.apis import prediction_log_pb2
from test_export import parse_saved_model_cli, saved_model_cli_show

from fashion_keras import export as E
from fashion_keras.data.preprocess import eval_view
from fashion_keras.evaluation.keypoint_predictions import predict_keypoints
from fashion_keras.export.region_stage import (
    RegionStage,
    keypoint_stage_model,
    region_output_names,
)
from fashion_keras.export.serving_module import serialize_examples
from fashion_keras.heads import get_heads, keypoint_heads, softmax_heads
from fashion_keras.heads.region_boxes import region_boxes
from fashion_keras.heads.regions import get_region
from fashion_keras.models import build_model

SIZE = 32
KEYPOINT_SIZE = 48
REGION = "collar"
BOX, FOUND = region_output_names(REGION)
POINTS = get_heads("fashionai_keypoints")[0]
COLLAR = [POINTS.index(k) for k in get_region(REGION).keypoints]
#: visibility logits of the collar keypoints: three present (found), or one (not found)
FOUND_BIAS = (4.0, -4.0, 4.0, 4.0, -4.0)
MISSING_BIAS = (4.0, -4.0, -4.0, -4.0, -4.0)


def sharpen(model, visible, seed: int = 5) -> None:
    """Re-draws the keypoint head's kernels large (the untrained heatmaps then peak in different
    places per keypoint and photo) and fixes its visibility: a zero kernel and the bias
    ``visible`` on the collar keypoints (every other keypoint absent)."""
    layer = model.get_layer(POINTS.name)
    rng = np.random.default_rng(seed)
    for w, scale in [(d.kernel, 3.0) for d in layer.deconvs] + [(layer.final.kernel, 60.0)]:
        fan_in = int(np.prod(w.shape[:-1]))
        w.assign(rng.normal(0.0, scale / np.sqrt(fan_in), w.shape).astype("float32"))
    set_visibility(model, visible)


def set_visibility(model, visible) -> None:
    layer = model.get_layer(POINTS.name).visibility
    bias = np.full(POINTS.num_keypoints, -4.0, np.float32)
    bias[COLLAR] = visible
    layer.kernel.assign(np.zeros(layer.kernel.shape, np.float32))
    layer.bias.assign(bias)


def photos() -> list[bytes]:
    """A 90 x 60 (H x W) JPEG, a 50 x 70 PNG and a 64 x 40 JPEG: padded on different sides."""
    rng = np.random.default_rng(0)
    return [
        encode(rng.integers(0, 255, (90, 60, 3))),
        encode(rng.integers(0, 255, (50, 70, 3)), "PNG"),
        encode(rng.integers(0, 255, (64, 40, 3))),
    ]


SIZES = np.array([(60, 90), (70, 50), (40, 64)], np.float64)  # (width, height)


@pytest.fixture(scope="module")
def joint(tmp_path_factory):
    """The joint model (attributes + fashionai_keypoints, neckline on the collar crop) exported
    twice: version 1 with the collar found, version 2 with it missing."""
    model = build_model(
        "seresnet_tiny",
        "deepfashion6,fashionai_keypoints",
        image_size=SIZE,
        regions=(REGION,),
        keypoint_filters=16,
    )
    sharpen(model, FOUND_BIAS)
    base = str(tmp_path_factory.mktemp("export_region"))
    found = E.export_saved_model(model, base)
    set_visibility(model, MISSING_BIAS)
    missing = E.export_saved_model(model, base)
    set_visibility(model, FOUND_BIAS)
    return model, found, missing


@pytest.fixture(scope="module")
def loaded(joint):
    return tf.saved_model.load(joint[1]), tf.saved_model.load(joint[2])


def reference_boxes(model, images, image_size=SIZE, bboxes=None):
    """(pixel boxes, found) by the numpy rules from the Keras model's own keypoints: v = 1
    where the score is >= 0.5, else -1; the garment box (whole photo) where not found."""
    data = {"image": images} if bboxes is None else {"image": images, "bbox": bboxes}
    ds = tf.data.Dataset.from_tensor_slices(data)
    pred = predict_keypoints(
        keypoint_stage_model(model),
        ds,
        keypoint_heads(model.heads),
        image_size,
        bbox_margin=0.1,
        labelled_only=False,
    )[POINTS.name]
    v = np.where(pred.scores >= 0.5, 1.0, -1.0)
    points = np.concatenate([pred.predicted, v[..., None]], axis=-1)
    sizes = SIZES[: len(images)]
    boxes, found = region_boxes(REGION, points, POINTS, sizes)
    garment = np.array([[0.0, 0.0, w, h] for w, h in sizes])
    if bboxes is not None:
        b = np.asarray(bboxes, np.float64)
        garment = np.stack(
            [
                b[:, 1] * sizes[:, 0],
                b[:, 0] * sizes[:, 1],
                b[:, 3] * sizes[:, 0],
                b[:, 2] * sizes[:, 1],
            ],
            axis=1,
        )
    return np.where(found[:, None], boxes, garment), found, pred


def reference_probs(model, images, boxes, sizes=SIZES):
    """The Keras model on the garment view and the view of each photo's collar box."""
    garment, crops = [], []
    for image, box, (w, h) in zip(images, boxes, sizes[: len(images)], strict=True):
        x1, y1, x2, y2 = box
        normalised = tf.constant([y1 / h, x1 / w, y2 / h, x2 / w], tf.float32)
        garment.append(eval_view(tf.constant(image), SIZE)[0])
        crops.append(eval_view(tf.constant(image), SIZE, normalised, 0.0)[0])
    return model({"image": tf.stack(garment), "collar_crop": tf.stack(crops)}, training=False)


def test_the_box_is_the_keypoints_box_and_the_neckline_reads_its_view(joint, loaded):
    model, _, _ = joint
    images = photos()
    out = loaded[0].signatures["serving_default"](image_bytes=tf.constant(images))
    boxes, found, pred = reference_boxes(model, images)
    assert found.all(), "the test exercises found boxes"
    assert out[BOX].dtype == tf.float32 and out[BOX].shape == (3, 4)
    np.testing.assert_array_equal(out[FOUND].numpy(), found)
    np.testing.assert_allclose(out[BOX].numpy(), boxes, atol=1e-2)
    # the export's own keypoints are the same ones, in photo pixels
    np.testing.assert_allclose(out[f"{POINTS.name}_keypoints"], pred.predicted, atol=1e-3)
    # real boxes: inside the photo, not the whole photo, different per photo
    whole = np.array([[0, 0, w, h] for w, h in SIZES])
    assert np.abs(boxes - whole).max(axis=1).min() > 1.0
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= SIZES).all()
    assert np.abs(boxes[0] - boxes[2]).max() > 0.5
    ref = reference_probs(model, images, boxes)
    for head in softmax_heads(model.heads):
        np.testing.assert_allclose(out[f"{head.name}_probs"], ref[head.name], atol=1e-4)
    # the crop matters: the whole-photo view gives other neckline probabilities
    whole_view = reference_probs(model, images, whole)
    assert np.abs(whole_view["neckline"] - ref["neckline"]).max() > 1e-4


def test_not_found_falls_back_to_the_whole_photo(joint, loaded):
    model, _, _ = joint
    images = photos()
    out = loaded[1].signatures["serving_default"](image_bytes=tf.constant(images))
    set_visibility(model, MISSING_BIAS)
    try:
        boxes, found, _ = reference_boxes(model, images)
        ref = reference_probs(model, images, boxes)
    finally:
        set_visibility(model, FOUND_BIAS)
    assert not found.any()
    assert not out[FOUND].numpy().any()
    whole = np.array([[0, 0, w, h] for w, h in SIZES], np.float32)
    np.testing.assert_allclose(out[BOX].numpy(), whole, atol=1e-2)
    np.testing.assert_allclose(boxes, whole, atol=1e-2)
    np.testing.assert_allclose(out["neckline_probs"], ref["neckline"], atol=1e-4)


def test_predict_examples_uses_the_garment_box(joint, loaded):
    model, _, _ = joint
    images = photos()[:2]
    bboxes = [[0.1, 0.05, 0.9, 0.8], [0.2, 0.1, 0.9, 0.6]]
    found_fn, missing_fn = (m.signatures["predict_examples"] for m in loaded)
    out = found_fn(examples=serialize_examples(images, bboxes))
    boxes, found, pred = reference_boxes(model, images, bboxes=bboxes)
    assert found.all()
    np.testing.assert_allclose(out[f"{POINTS.name}_keypoints"], pred.predicted, atol=1e-3)
    np.testing.assert_allclose(out[BOX].numpy(), boxes, atol=1e-2)
    plain = loaded[0].signatures["serving_default"](image_bytes=tf.constant(images))
    assert np.abs(out[BOX].numpy() - plain[BOX].numpy()).max() > 0.5, "the garment box is used"
    # not found: the garment box itself, in photo pixels
    out = missing_fn(examples=serialize_examples(images, bboxes))
    assert not out[FOUND].numpy().any()
    b = np.array(bboxes)
    garment = np.stack(
        [
            b[:, 1] * SIZES[:2, 0],
            b[:, 0] * SIZES[:2, 1],
            b[:, 3] * SIZES[:2, 0],
            b[:, 2] * SIZES[:2, 1],
        ],
        axis=1,
    )
    np.testing.assert_allclose(out[BOX].numpy(), garment, atol=1e-2)


def test_predict_images_reads_one_input_per_view(joint, loaded):
    model, path, _ = joint
    fn = loaded[0].signatures["predict_images"]
    assert sorted(fn.structured_input_signature[1]) == ["collar_crop", E.IMAGES_INPUT]
    assert BOX not in fn.structured_outputs and FOUND not in fn.structured_outputs
    rng = np.random.default_rng(1)
    garment = rng.uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
    crop = rng.uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
    out = fn(images=tf.constant(garment), collar_crop=tf.constant(crop))
    ref = model({"image": garment, "collar_crop": crop}, training=False)
    for head in softmax_heads(model.heads):
        np.testing.assert_allclose(out[f"{head.name}_probs"], ref[head.name], atol=1e-4)
    with pytest.raises(TypeError, match="collar_crop"):
        fn(images=tf.constant(garment))
    meta = E.load_metadata(path)
    assert list(meta["input"]["predict_images"]) == [E.IMAGES_INPUT, "collar_crop"]
    regions = meta["regions"]
    assert regions["names"] == [REGION]
    assert regions["outputs"] == {REGION: [BOX, FOUND]}
    assert regions["keypoint_heads"] == {REGION: POINTS.name}
    assert regions["keypoint_model"] == {"image_size": SIZE, "bbox_margin": 0.1}
    assert regions["min_score"] == 0.5


def test_warmup_requests_run_on_the_region_export(joint, loaded):
    _, path, _ = joint
    warmup = os.path.join(path, "assets.extra", E.WARMUP_FILE)
    logs = [
        prediction_log_pb2.PredictionLog.FromString(r.numpy())
        for r in tf.data.TFRecordDataset(warmup)
    ]
    assert sorted(log.predict_log.request.model_spec.signature_name for log in logs) == sorted(
        E.SIGNATURES
    )
    for log in logs:
        request = log.predict_log.request
        inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        out = loaded[0].signatures[request.model_spec.signature_name](**inputs)
        assert out["neckline_probs"].shape == (1, get_heads("deepfashion6")[3].num_classes)


def test_saved_model_cli_lists_the_region_outputs(joint):
    _, path, _ = joint
    sigs = parse_saved_model_cli(saved_model_cli_show(path))
    for name in ("serving_default", "predict_examples"):
        outputs = sigs[name]["outputs"]
        assert outputs[BOX] == ("DT_FLOAT", "(-1, 4)"), name
        assert outputs[FOUND] == ("DT_BOOL", "(-1)"), name
        assert outputs["neckline_probs"][0] == "DT_FLOAT"
    assert BOX not in sigs["predict_images"]["outputs"]
    assert sigs["predict_images"]["inputs"] == {
        E.IMAGES_INPUT: ("DT_FLOAT", f"(-1, {SIZE}, {SIZE}, 3)"),
        "collar_crop": ("DT_FLOAT", f"(-1, {SIZE}, {SIZE}, 3)"),
    }


@pytest.fixture(scope="module")
def separate(tmp_path_factory):
    """An attribute model with the collar crop but no keypoint head, and a keypoint model of
    another input size."""
    model = build_model("seresnet_tiny", "deepfashion6", image_size=SIZE, regions=(REGION,))
    points = build_model(
        "seresnet_tiny", "fashionai_keypoints", image_size=KEYPOINT_SIZE, keypoint_filters=16
    )
    sharpen(points, FOUND_BIAS, seed=7)
    return model, points, str(tmp_path_factory.mktemp("export_separate"))


def test_a_region_model_without_keypoint_heads_needs_a_keypoint_model(separate):
    model, _, base = separate
    with pytest.raises(ValueError, match="keypoint_model=") as err:
        E.export_saved_model(model, base)
    assert "collar" in str(err.value) and "--keypoint-model" in str(err.value)
    assert not [d for d in os.listdir(base) if not d.startswith(".")]


def test_a_separate_keypoint_model_gives_the_boxes(separate):
    model, points, base = separate
    path = E.export_saved_model(model, base, keypoint_model=points)
    loaded = tf.saved_model.load(path)
    images = photos()
    out = loaded.signatures["serving_default"](image_bytes=tf.constant(images))
    assert not any(k.startswith(POINTS.name) for k in out), "no keypoint outputs"
    boxes, found, _ = reference_boxes(points, images, image_size=KEYPOINT_SIZE)
    assert found.all()
    np.testing.assert_allclose(out[BOX].numpy(), boxes, atol=1e-2)
    np.testing.assert_array_equal(out[FOUND].numpy(), found)
    ref = reference_probs(model, images, boxes)
    for head in softmax_heads(model.heads):
        np.testing.assert_allclose(out[f"{head.name}_probs"], ref[head.name], atol=1e-4)
    # the stage is RegionStage's, in-process
    stage = RegionStage(points, (REGION,)).boxes(tf.constant(images))
    np.testing.assert_allclose(stage.pixels[REGION].numpy(), boxes, atol=1e-2)
    fn = loaded.signatures["predict_images"]
    assert sorted(fn.structured_input_signature[1]) == ["collar_crop", E.IMAGES_INPUT]
    meta = E.load_metadata(path)
    assert meta["regions"]["keypoint_model"] == {"image_size": KEYPOINT_SIZE, "bbox_margin": 0.1}
    assert "keypoints" not in meta
    sigs = parse_saved_model_cli(saved_model_cli_show(path))
    assert sigs["serving_default"]["outputs"][BOX] == ("DT_FLOAT", "(-1, 4)")
