"""``python -m fashion_keras.export``: a trained model's SavedModel, two stages for a model with
region crops."""

import os

import pytest
import tensorflow as tf

from fashion_keras.export.__main__ import main
from fashion_keras.models import build_model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("export_command")
    regions = build_model("seresnet_tiny", "deepfashion6", image_size=32, regions=("collar",))
    keypoints = build_model("seresnet_tiny", "fashionai_keypoints", image_size=32)
    os.makedirs(root / "run")
    regions.save(str(root / "run" / "model.keras"))
    keypoints.save(str(root / "kp.keras"))
    return root


def test_a_region_model_is_exported_with_its_keypoint_model(models, capsys):
    assert main([str(models / "run"), "--keypoint-model", str(models / "kp.keras")]) == 0
    version = models / "run" / "export" / "1"
    assert f"Exported SavedModel (TF Serving layout): {version}" in capsys.readouterr().out
    serve = tf.saved_model.load(str(version)).signatures["serving_default"]
    image = tf.io.encode_png(tf.zeros([20, 30, 3], tf.uint8))
    out = serve(image_bytes=tf.stack([image]))
    assert out["collar_box"].shape == (1, 4) and out["neckline_probs"].shape == (1, 4)


def test_without_a_keypoint_model_the_error_names_the_flag(models, tmp_path):
    with pytest.raises(SystemExit) as e:
        main([str(models / "run" / "model.keras"), "--export-dir", str(tmp_path / "export")])
    message = str(e.value.code)
    assert message.startswith("error: the model crops the regions ['collar']")
    assert "--keypoint-model KEYPOINT_MODEL" in message
    assert not os.path.exists(tmp_path / "export" / "1")
