"""Export of a model with a keypoint head next to a softmax head: signature outputs, photo-pixel
keypoints equal to the evaluation's, ``predict_examples`` boxes, warm-up, ``saved_model_cli``."""

import os

import numpy as np
import pytest
import tensorflow as tf
from conftest import encode
from tensorflow_serving.apis import prediction_log_pb2
from test_export import parse_saved_model_cli, saved_model_cli_show

from fashion_keras import export as E
from fashion_keras.data import geometry
from fashion_keras.data.preprocess import eval_view, preprocess_for_eval, resize_size
from fashion_keras.evaluation.keypoint_predictions import predict_keypoints
from fashion_keras.heads import KeypointHead, get_heads, heads_to_dict
from fashion_keras.models import build_model

SIZE = 64
SLEEVE = get_heads("deepfashion6")[1]
POINTS = KeypointHead(
    "garment_points",
    ("collar_left", "collar_right", "hem_left", "hem_right", "centre"),
    (("collar_left", "collar_right"), ("hem_left", "hem_right")),
    {
        "top": (
            ("collar_left", "collar_right", "hem_left", "hem_right", "centre"),
            ("collar_left", "collar_right"),
        ),
        "skirt": (("hem_left", "hem_right"), None),
    },
)
HEADS = (SLEEVE, POINTS)
K = POINTS.num_keypoints


def sharpen(model, head: KeypointHead, seed: int = 5) -> None:
    """Re-draws the keypoint head's kernels large, so the untrained heatmaps peak in different
    places for different keypoints and images (their paper init makes them flat)."""
    layer = model.get_layer(head.name)
    rng = np.random.default_rng(seed)
    for w, scale in [(d.kernel, 3.0) for d in layer.deconvs] + [(layer.final.kernel, 60.0)]:
        fan_in = int(np.prod(w.shape[:-1]))
        w.assign(rng.normal(0.0, scale / np.sqrt(fan_in), w.shape).astype("float32"))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = build_model("seresnet_tiny", HEADS, image_size=SIZE, keypoint_filters=16)
    sharpen(model, POINTS)
    base = str(tmp_path_factory.mktemp("export_kp"))
    return model, E.export_saved_model(model, base)


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(exported[1])


def photos() -> list[bytes]:
    """A 90 x 60 (H x W) JPEG and a 50 x 70 PNG: the pad to square is on different sides."""
    rng = np.random.default_rng(0)
    return [
        encode(rng.integers(0, 255, (90, 60, 3))),
        encode(rng.integers(0, 255, (50, 70, 3)), "PNG"),
    ]


def _example(image: bytes, bbox=None) -> bytes:
    feature = {E.EXAMPLE_IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))}
    if bbox is not None:
        feature[E.EXAMPLE_BBOX_KEY] = tf.train.Feature(float_list=tf.train.FloatList(value=bbox))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _reference(model, images, bboxes=None):
    data = {"image": images} if bboxes is None else {"image": images, "bbox": bboxes}
    ds = tf.data.Dataset.from_tensor_slices(data)
    return predict_keypoints(model, ds, HEADS, SIZE, bbox_margin=0.1, labelled_only=False)[
        POINTS.name
    ]


def test_signatures_list_keypoint_and_softmax_outputs(exported, loaded):
    _, path = exported
    assert E.output_names(POINTS) == (
        "garment_points_keypoints",
        "garment_points_scores",
        "garment_points_keypoint_names",
    )
    expected = {
        "sleeve_probs": (tf.float32, [None, SLEEVE.num_classes]),
        "sleeve_class": (tf.int64, [None]),
        "sleeve_label": (tf.string, [None]),
        "sleeve_class_names": (tf.string, [None, SLEEVE.num_classes]),
        "garment_points_keypoints": (tf.float32, [None, K, 2]),
        "garment_points_scores": (tf.float32, [None, K]),
        "garment_points_keypoint_names": (tf.string, [None, K]),
    }
    for name in E.SIGNATURES:
        outputs = loaded.signatures[name].structured_outputs
        got = {k: (v.dtype, v.shape.as_list()) for k, v in outputs.items()}
        assert got == expected, name
    out = loaded.signatures["predict_images"](images=tf.zeros([3, SIZE, SIZE, 3]))
    assert (
        out["garment_points_keypoint_names"].numpy().tolist()
        == [[k.encode() for k in POINTS.keypoints]] * 3
    )
    meta = E.load_metadata(path)
    assert meta["heads"] == heads_to_dict(HEADS)["heads"]
    assert meta["outputs"] == {h.name: list(E.output_names(h)) for h in HEADS}
    assert meta["keypoints"]["heatmap_stride"] == 4
    assert sorted(os.listdir(os.path.join(path, "assets"))) == ["sleeve.classes.txt"]


def test_serving_default_keypoints_are_the_evaluations_in_photo_pixels(exported, loaded):
    model, _ = exported
    images = photos()
    out = loaded.signatures["serving_default"](image_bytes=tf.constant(images))
    ref = _reference(model, images)
    coords = out["garment_points_keypoints"].numpy()
    np.testing.assert_allclose(coords, ref.predicted, atol=1e-3)
    np.testing.assert_allclose(out["garment_points_scores"].numpy(), ref.scores, atol=1e-6)
    assert coords.std(axis=1).min() > 1.0, "the keypoints of one photo are spread out"
    # the softmax head is served as before, from the same call
    views = tf.stack([preprocess_for_eval(tf.constant(b), SIZE) for b in images])
    np.testing.assert_allclose(
        out["sleeve_probs"].numpy(), model(views, training=False)["sleeve"], atol=1e-5
    )

    # predict_images answers in the pixels of the view it is given; the photo's come back
    # through the inverse of the view's matrix
    views, matrices = zip(*(eval_view(tf.constant(b), SIZE) for b in images), strict=True)
    fn = loaded.signatures["predict_images"]
    in_view = fn(images=tf.stack(views))["garment_points_keypoints"].numpy()
    assert np.abs(in_view - coords).max() > 5.0, "view and photo pixels differ"
    np.testing.assert_allclose(
        geometry.to_photo(in_view, tf.stack(matrices)).numpy(), coords, atol=1e-3
    )
    # by hand for the 90 x 60 JPEG: padded to 90 x 90 (15 columns left), resized to `side`,
    # centre crop at `offset`; pixel centres scale about the half-pixel edge
    side = resize_size(SIZE)
    offset = (side - SIZE) // 2
    r = side / 90.0
    x = (in_view[0, :, 0] + offset + 0.5) / r - 0.5 - 15.0
    y = (in_view[0, :, 1] + offset + 0.5) / r - 0.5
    np.testing.assert_allclose(coords[0], np.stack([x, y], axis=-1), atol=1e-3)


def test_predict_examples_maps_keypoints_through_the_box_crop(exported, loaded):
    model, _ = exported
    jpeg, png = photos()
    box = [0.2, 0.1, 0.9, 0.6]
    out = loaded.signatures["predict_examples"](
        examples=tf.constant([_example(png, box), _example(jpeg), _example(png)])
    )
    coords = out["garment_points_keypoints"].numpy()
    boxed = _reference(model, [png], [box])
    np.testing.assert_allclose(coords[:1], boxed.predicted, atol=1e-3)
    np.testing.assert_allclose(out["garment_points_scores"].numpy()[:1], boxed.scores, atol=1e-6)
    plain = loaded.signatures["serving_default"](image_bytes=tf.constant([jpeg, png]))
    np.testing.assert_allclose(coords[1:], plain["garment_points_keypoints"], atol=1e-3)
    assert np.abs(coords[0] - coords[2]).max() > 1.0, "the box is used"
    # the box plus margin is columns 3-45 and rows 6-48 of the 50 x 70 photo: the keypoints
    # (expectations over the view) fall inside it, in photo pixels
    assert ((coords[0, :, 0] >= 3) & (coords[0, :, 0] <= 46)).all()
    assert ((coords[0, :, 1] >= 6) & (coords[0, :, 1] <= 49)).all()


def test_warmup_requests_run_on_the_keypoint_model(exported, loaded):
    _, path = exported
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
        out = loaded.signatures[request.model_spec.signature_name](**inputs)
        assert out["garment_points_keypoints"].shape == (1, K, 2)
        assert np.isfinite(out["garment_points_keypoints"].numpy()).all()


def test_saved_model_cli_lists_the_keypoint_outputs(exported):
    _, path = exported
    sigs = parse_saved_model_cli(saved_model_cli_show(path))
    for sig in E.SIGNATURES:
        outputs = sigs[sig]["outputs"]
        assert outputs["garment_points_keypoints"] == ("DT_FLOAT", f"(-1, {K}, 2)"), sig
        assert outputs["garment_points_scores"] == ("DT_FLOAT", f"(-1, {K})"), sig
        assert outputs["garment_points_keypoint_names"] == ("DT_STRING", f"(-1, {K})"), sig
        assert outputs["sleeve_probs"] == ("DT_FLOAT", f"(-1, {SLEEVE.num_classes})"), sig
        assert len(outputs) == 7, sig


def test_a_keypoint_only_model_exports(tmp_path):
    model = build_model("seresnet_tiny", (POINTS,), image_size=32, keypoint_filters=8)
    path = E.export_saved_model(model, str(tmp_path))
    assert "heads" in E.load_metadata(path) and not os.listdir(os.path.join(path, "assets"))
    fn = tf.saved_model.load(path).signatures["serving_default"]
    images = photos()
    out = fn(image_bytes=tf.constant(images))
    assert set(out) == set(E.output_names(POINTS))
    ds = tf.data.Dataset.from_tensor_slices({"image": images})
    ref = predict_keypoints(model, ds, (POINTS,), 32, labelled_only=False)[POINTS.name]
    np.testing.assert_allclose(out["garment_points_keypoints"], ref.predicted, atol=1e-3)
