import glob
import json
import os
import re
import stat
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import encode
from tensorflow_serving.apis import prediction_log_pb2

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
    assert "keypoints" not in meta, "a softmax-only export's metadata is unchanged"
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


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(exported[2])


def test_class_names_output_lists_every_class_in_probs_order(exported, loaded):
    _, _, path = exported
    out = loaded.signatures["predict_images"](images=tf.zeros([2, SIZE, SIZE, 3]))
    for h in HEADS:
        names = out[f"{h.name}_class_names"].numpy()
        assert names.shape == (2, h.num_classes)
        assert [n.decode() for n in names[1]] == list(h.classes)
    meta = E.load_metadata(path)
    assert meta["outputs"]["sleeve"] == list(E.output_names(HEADS[1]))
    assert meta["input"]["predict_examples"]["features"].keys() == {"image", "bbox"}


def _example(image: bytes, bbox=None) -> bytes:
    feature = {E.EXAMPLE_IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))}
    if bbox is not None:
        feature[E.EXAMPLE_BBOX_KEY] = tf.train.Feature(float_list=tf.train.FloatList(value=bbox))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def test_predict_examples_reads_the_image_and_optional_box(exported, loaded):
    model, _, _ = exported
    fn = loaded.signatures["predict_examples"]
    assert list(fn.structured_input_signature[1]) == [E.EXAMPLES_INPUT]
    jpeg, png = photos()
    box = [0.2, 0.1, 0.9, 0.6]
    out = fn(examples=tf.constant([_example(jpeg), _example(png, box), _example(png)]))
    views = tf.stack(
        [
            preprocess_for_eval(tf.constant(jpeg), SIZE),
            preprocess_for_eval(tf.constant(png), SIZE, tf.constant(box)),
        ]
    )
    ref = model(views, training=False)
    plain = loaded.signatures["serving_default"](image_bytes=tf.constant([jpeg, png]))
    for h in HEADS:
        probs = out[f"{h.name}_probs"].numpy()
        np.testing.assert_allclose(probs[:2], ref[h.name], atol=1e-5)
        # no box: exactly the serving_default view
        np.testing.assert_allclose(probs[[0, 2]], plain[f"{h.name}_probs"], atol=1e-5)
    assert np.abs(out["fabric_probs"][1] - out["fabric_probs"][2]).max() > 0, "the box is used"


def test_predict_examples_rejects_an_example_without_the_image(loaded):
    fn = loaded.signatures["predict_examples"]
    empty = tf.train.Example().SerializeToString()
    with pytest.raises(tf.errors.InvalidArgumentError, match=E.EXAMPLE_IMAGE_KEY):
        fn(examples=tf.constant([empty]))


@pytest.mark.slow
def test_predict_examples_accepts_the_tfds_records(exported, loaded, small_demo):
    """The TFDS builder's own serialized records feed predict_examples as they are."""
    model, _, _ = exported
    [record_file] = glob.glob(
        os.path.join(small_demo["tfds_dir"], "**", "*-test.tfrecord*"), recursive=True
    )
    records = [r.numpy() for r in tf.data.TFRecordDataset(record_file).take(4)]
    out = loaded.signatures["predict_examples"](examples=tf.constant(records))
    views = []
    for record in records:
        feature = tf.train.Example.FromString(record).features.feature
        image = feature[E.EXAMPLE_IMAGE_KEY].bytes_list.value[0]
        bbox = list(feature[E.EXAMPLE_BBOX_KEY].float_list.value)
        assert len(bbox) == 4
        views.append(preprocess_for_eval(tf.constant(image), SIZE, tf.constant(bbox)))
    ref = model(tf.stack(views), training=False)
    for h in HEADS:
        np.testing.assert_allclose(out[f"{h.name}_probs"].numpy(), ref[h.name], atol=1e-5)


def test_warmup_requests_are_prediction_logs_that_run(exported, loaded):
    _, _, path = exported
    warmup = os.path.join(path, "assets.extra", E.WARMUP_FILE)
    logs = [
        prediction_log_pb2.PredictionLog.FromString(r.numpy())
        for r in tf.data.TFRecordDataset(warmup)
    ]
    signatures = [log.predict_log.request.model_spec.signature_name for log in logs]
    assert sorted(signatures) == sorted(E.SIGNATURES)
    for log in logs:
        request = log.predict_log.request
        name = request.model_spec.signature_name
        assert list(request.inputs) == [E.SIGNATURES[name]]
        inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        out = loaded.signatures[name](**inputs)
        assert out["sleeve_probs"].shape == (1, 3), name


def saved_model_cli_show(path: str) -> str:
    """What ``saved_model_cli show --all --dir path`` prints."""
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    result = subprocess.run(
        [cli, "show", "--all", "--dir", path],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def parse_saved_model_cli(text: str) -> dict:
    """signature -> {"inputs"/"outputs": {name: (dtype, shape)}, "method": str}."""
    sigs: dict = {}
    current = tensor = None
    for line in text.splitlines():
        if m := re.match(r"signature_def\['(.+)'\]:$", line):
            current = sigs.setdefault(m[1], {"inputs": {}, "outputs": {}, "method": None})
        elif m := re.match(r"\s+(inputs|outputs)\['(.+)'\] tensor_info:$", line):
            tensor = (m[1], m[2])
            current[m[1]][m[2]] = ()
        elif m := re.match(r"\s+(dtype|shape): (.+)$", line):
            current[tensor[0]][tensor[1]] += (m[2],)
        elif m := re.match(r"\s+Method name is: ?(.*)$", line):
            current["method"] = m[1]
    return sigs


def test_saved_model_cli_shows_clean_names(exported):
    _, _, path = exported
    shown = saved_model_cli_show(path)
    sigs = parse_saved_model_cli(shown)
    assert set(sigs) == set(E.SIGNATURES) | {"__saved_model_init_op"}
    outputs = {}
    for h in HEADS:
        p, c, label, names = E.output_names(h)
        outputs[p] = ("DT_FLOAT", f"(-1, {h.num_classes})")
        outputs[c] = ("DT_INT64", "(-1)")
        outputs[label] = ("DT_STRING", "(-1)")
        outputs[names] = ("DT_STRING", f"(-1, {h.num_classes})")
    inputs = {
        "serving_default": {E.SERVING_INPUT: ("DT_STRING", "(-1)")},
        "predict_images": {E.IMAGES_INPUT: ("DT_FLOAT", f"(-1, {SIZE}, {SIZE}, 3)")},
        "predict_examples": {E.EXAMPLES_INPUT: ("DT_STRING", "(-1)")},
    }
    for sig, expected in inputs.items():
        assert sigs[sig]["inputs"] == expected, sig
        assert sigs[sig]["outputs"] == outputs, sig
        assert sigs[sig]["method"] == "tensorflow/serving/predict"
        assert f"Function Name: '{sig}'" in shown
    # no generated placeholder names (output_0, args_0, input_1, ...) anywhere
    assert not re.search(r"\b(output|args|input)_\d+\b", shown)


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_versions_follow_the_umask_so_a_server_of_another_user_can_read_them(tmp_path, umask):
    """A model server running as another user (a non-root pod) must be able to read every
    folder and file of a version: the same permissions as any folder the user makes."""
    model = build_model("seresnet_tiny", HEADS, image_size=32)
    old = os.umask(umask)
    try:
        path = E.export_saved_model(model, str(tmp_path / "export"))
    finally:
        os.umask(old)
    want_dir, want_file = 0o777 & ~umask, 0o666 & ~umask
    for root, _, files in os.walk(path):
        assert stat.S_IMODE(os.stat(root).st_mode) == want_dir, root
        for name in files:
            mode = stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode)
            assert mode & ~want_file == 0 and mode & 0o444 & ~umask, (name, oct(mode))
    assert {"assets", "assets.extra", "variables"} <= set(os.listdir(path))


def test_the_export_uses_the_margin_the_model_was_trained_with(tmp_path):
    model = build_model("seresnet_tiny", HEADS, image_size=32, preprocessing={"bbox_margin": 0.25})
    path = E.export_saved_model(model, str(tmp_path / "export"))
    assert E.load_metadata(path)["preprocessing"]["bbox_margin"] == 0.25
    rng = np.random.default_rng(1)
    image = encode(rng.integers(0, 255, (80, 60, 3)))
    box = [0.2, 0.1, 0.6, 0.7]
    example = tf.train.Example(
        features=tf.train.Features(
            feature={
                E.EXAMPLE_IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
                E.EXAMPLE_BBOX_KEY: tf.train.Feature(float_list=tf.train.FloatList(value=box)),
            }
        )
    ).SerializeToString()
    out = tf.saved_model.load(path).signatures["predict_examples"](examples=tf.constant([example]))
    for margin, same in ((0.25, True), (0.1, False)):
        view = preprocess_for_eval(image, 32, tf.constant(box), margin)[None]
        want = model(view, training=False)["texture"].numpy()
        assert np.allclose(out["texture_probs"].numpy(), want, atol=1e-5) == same, margin
    # an explicit margin still overrides the model's
    other = E.export_saved_model(model, str(tmp_path / "export"), bbox_margin=0.05)
    assert E.load_metadata(other)["preprocessing"]["bbox_margin"] == 0.05


class Killed(KeyboardInterrupt):
    """Stands for the process being killed in the middle of the export."""


def test_a_version_is_never_partial(tmp_path, monkeypatch):
    """Killed while the SavedModel is written: no version folder appears (a server polling the
    base would try to load it), nothing is left behind, and the next export takes the number."""
    import keras

    model = build_model("seresnet_tiny", HEADS, image_size=32)
    base = tmp_path / "export"
    E.export_saved_model(model, str(base))
    written = []

    def killed(self, filepath, **kwargs):
        written.append(filepath)
        os.makedirs(filepath, exist_ok=True)
        with open(os.path.join(filepath, "saved_model.pb"), "wb") as f:
            f.write(b"\x08\x01")  # the start of a proto
        raise Killed("killed while exporting")

    # ExportArchive() makes the backend's archive class: patch that one
    monkeypatch.setattr(type(keras.export.ExportArchive()), "write_out", killed)
    with pytest.raises(Killed):
        E.export_saved_model(model, str(base))
    monkeypatch.undo()
    assert written and written[0] != str(base / "2")  # written elsewhere, renamed when whole
    assert sorted(os.listdir(base)) == ["1"]
    assert E.next_version(str(base)) == 2
    assert E.export_saved_model(model, str(base)) == str(base / "2")
