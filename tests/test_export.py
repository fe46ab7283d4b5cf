import json
import os

import numpy as np
import pytest
import tensorflow as tf
from conftest import encode

from fashion_keras import export as E
from fashion_keras.data.preprocess import preprocess_for_eval
from fashion_keras.heads import get_heads
from fashion_keras.models import build_model

HEADS = get_heads("deepfashion6")
SIZE = 48


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = build_model("seresnet_tiny", HEADS, image_size=SIZE)
    base = str(tmp_path_factory.mktemp("export"))
    path = E.export_saved_model(model, base)
    return model, base, path


def photos():
    rng = np.random.default_rng(0)
    jpeg = encode(rng.integers(0, 255, (90, 60, 3)))
    png = encode(rng.integers(0, 255, (50, 70, 3)), "PNG")
    return [jpeg, png]


def test_tf_serving_layout_and_metadata(exported):
    _, base, path = exported
    assert path == os.path.join(base, "1")
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))
    assert sorted(os.listdir(base)) == ["1"], "no staging folders left behind"
    for h in HEADS:
        with open(os.path.join(path, "assets", f"{h.name}.classes.txt")) as f:
            assert f.read().splitlines() == list(h.classes)
    meta = E.load_metadata(path)
    assert meta["image_size"] == SIZE
    assert [h["name"] for h in meta["heads"]] == [h.name for h in HEADS]
    assert E.next_version(base) == 2


def test_serving_default_answers_jpeg_and_png_bytes(exported):
    model, _, path = exported
    loaded = tf.saved_model.load(path)
    fn = loaded.signatures["serving_default"]
    assert list(fn.structured_input_signature[1]) == [E.SERVING_INPUT]
    data = photos()
    out = fn(image_bytes=tf.constant(data))
    expected = {n for h in HEADS for n in E.output_names(h)}
    assert set(out) == expected
    views = tf.stack([preprocess_for_eval(tf.constant(b), SIZE) for b in data])
    ref = model(views, training=False)
    for h in HEADS:
        probs = out[f"{h.name}_probs"].numpy()
        assert probs.shape == (2, h.num_classes)
        np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
        np.testing.assert_allclose(probs, np.asarray(ref[h.name]), atol=1e-5)
        cls = out[f"{h.name}_class"].numpy()
        np.testing.assert_array_equal(cls, probs.argmax(-1))
        labels = [s.decode() for s in out[f"{h.name}_label"].numpy()]
        assert labels == [h.classes[i] for i in cls]


def test_predict_images_signature_matches(exported):
    model, _, path = exported
    fn = tf.saved_model.load(path).signatures["predict_images"]
    images = tf.random.uniform([3, SIZE, SIZE, 3], 0, 255, seed=1)
    out = fn(images=images)
    ref = model(images, training=False)
    for h in HEADS:
        np.testing.assert_allclose(out[f"{h.name}_probs"].numpy(), ref[h.name], atol=1e-5)


def test_second_export_gets_next_version_and_existing_is_refused(exported):
    model, base, _ = exported
    with pytest.raises(FileExistsError, match="already exists"):
        E.export_saved_model(model, base, version=1)
    assert sorted(os.listdir(base)) == ["1"]


def test_failed_export_leaves_no_version(tmp_path):
    from fashion_keras.heads import Head

    model = build_model("seresnet_tiny", HEADS[:1], image_size=SIZE)
    bad_heads = (Head("not_an_output", ("a", "b")),)
    with pytest.raises(KeyError):
        E.export_saved_model(model, str(tmp_path), heads=bad_heads)
    assert os.listdir(tmp_path) == []


def test_metadata_is_json(exported):
    _, _, path = exported
    with open(os.path.join(path, "assets.extra", E.METADATA_FILE)) as f:
        assert json.load(f)["preprocessing"]["bbox_margin"] == 0.1
