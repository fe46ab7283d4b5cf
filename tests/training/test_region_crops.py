"""Training with region crops: the boxes a run reads, the fallbacks it reports, the two-stage
export it writes, and the with/without comparison on the demo (slow tier)."""

import csv
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_train_config

from fashion_keras import train as cli
from fashion_keras.data import sources
from fashion_keras.data.region_files import read_region_file
from fashion_keras.heads import REGIONS, get_heads
from fashion_keras.models import build_model
from fashion_keras.training import inputs
from fashion_keras.training import trainer as T


def _config(small_demo, tmp_path, **kw):
    kw = {"epochs": 1, "steps_per_epoch": 2, "region_crops": True, **kw}
    return tiny_train_config(small_demo, tmp_path / "run", **kw)


def _region_file_without(small_demo, tmp_path, split: str, drop: int) -> tuple[str, set[str]]:
    """The demo's region file less the collar rows of ``drop`` images of ``split``."""
    source = os.path.join(small_demo["manual_dir"], "regions.csv")
    examples = sources.load_split(small_demo["builder"], split)
    names = [ex["image/filename"].decode() for ex in examples.take(drop).as_numpy_iterator()]
    with open(source, encoding="utf-8") as f:
        rows = list(csv.reader(f))
    kept = [rows[0]] + [r for r in rows[1:] if not (r[0] in names and r[1] == "collar")]
    path = str(tmp_path / "regions.csv")
    with open(path, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(kept)
    return path, set(names)


def test_the_run_reads_region_file_boxes_and_reports_the_fallbacks(small_demo, tmp_path):
    region_file, dropped = _region_file_without(small_demo, tmp_path, "val", 3)
    cfg = _config(small_demo, tmp_path, region_file=region_file)
    result = T.train(cfg, export=False)
    assert result.model.regions == ("collar",)
    assert sorted(i.name for i in result.model.inputs) == ["collar_crop", "image"]
    with open(os.path.join(cfg.runtime.output_dir, "metrics.json"), encoding="utf-8") as f:
        boxes = json.load(f)["region_boxes"]
    assert boxes["train"] == {"examples": 96, "fell_back_to_garment_box": {"collar": 0}}
    assert boxes["val"] == {"examples": 32, "fell_back_to_garment_box": {"collar": len(dropped)}}
    # the validation batches' collar views are the crops of the file's boxes (the garment box
    # for the dropped images)
    heads = get_heads("deepfashion6")
    loaded = inputs.load_examples(cfg, heads)
    table = read_region_file(region_file, tuple(REGIONS))
    for ex in loaded.val.take(8).as_numpy_iterator():
        name = ex["image/filename"].decode()
        height, width = tf.image.extract_jpeg_shape(ex["image"]).numpy()[:2]
        if name in dropped:
            assert not ex["region_found"]["collar"]
            np.testing.assert_allclose(ex["region_boxes"]["collar"], ex["bbox"], atol=1e-6)
        else:
            x1, y1, x2, y2 = table.boxes[(name, "collar")][:4]
            expected = [y1 / height, x1 / width, y2 / height, x2 / width]
            assert ex["region_found"]["collar"]
            np.testing.assert_allclose(ex["region_boxes"]["collar"], expected, atol=1e-5)


def test_the_run_exports_both_stages_with_a_keypoint_model(small_demo, tmp_path):
    keypoints = build_model("seresnet_tiny", "fashionai_keypoints", image_size=32)
    keypoints.save(str(tmp_path / "kp.keras"))
    region_file = os.path.join(small_demo["manual_dir"], "regions.csv")
    cfg = _config(
        small_demo, tmp_path, region_file=region_file, keypoint_model=str(tmp_path / "kp.keras")
    )
    result = T.train(cfg)
    loaded = tf.saved_model.load(result.export_path)
    outputs = loaded.signatures["serving_default"].structured_outputs
    assert {"collar_box", "collar_found", "neckline_probs", "texture_probs"} <= set(outputs)
    image = tf.io.encode_jpeg(tf.zeros([40, 30, 3], tf.uint8))
    out = loaded.signatures["serving_default"](image_bytes=tf.stack([image]))
    box = out["collar_box"].numpy()[0]
    assert 0 <= box[0] < box[2] <= 30 and 0 <= box[1] < box[3] <= 40


def test_without_a_keypoint_source_the_run_warns_and_does_not_export(small_demo, tmp_path, caplog):
    cfg = _config(
        small_demo, tmp_path, region_file=os.path.join(small_demo["manual_dir"], "regions.csv")
    )
    with caplog.at_level("WARNING", logger="fashion_keras"):
        result = T.train(cfg)
    assert result.export_path is None
    assert "not exported" in caplog.text and "--keypoint-model" in caplog.text
    assert os.path.isfile(os.path.join(cfg.runtime.output_dir, "model.keras"))


def test_data_without_any_box_source_falls_back_to_the_garment_box_and_says_so(
    small_demo, tmp_path, caplog
):
    cfg = _config(small_demo, tmp_path)
    with caplog.at_level("WARNING", logger="fashion_keras"):
        data = inputs.run_data(cfg, get_heads("deepfashion6"))
    assert data.region_fallbacks["train"].fallbacks == {"collar": 96}
    assert "every example fell back to the garment box" in caplog.text


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--region-file", "regions.csv"],
            "config field 'region_file' = 'regions.csv' needs 'region_crops' (--region-crops)",
        ),
        (
            ["--heads", "deepfashion_category", "--region-crops"],
            "config field 'region_crops' is set, but no head of 'deepfashion_category' names a "
            "region",
        ),
    ],
)
def test_region_option_errors_are_one_line(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([*argv, "--output-dir", str(tmp_path / "run"), "--epochs", "1"])
    assert e.value.code not in (0, None)
    err = capsys.readouterr().err + str(e.value.code)  # argparse prints; input errors exit
    assert message in err and "Traceback" not in err


def test_a_bad_region_row_names_file_line_and_field(small_demo, tmp_path, capsys):
    path = tmp_path / "regions.csv"
    path.write_text("image,region,x1,y1,x2,y2\nimg/a.jpg,collar,1,2,x,4\n")
    argv = [
        "--heads", "deepfashion6", "--region-crops", "--region-file", str(path),
        "--data-dir", small_demo["manual_dir"], "--tfds-data-dir", small_demo["tfds_dir"],
        "--backbone", "seresnet_tiny", "--image-size", "32", "--epochs", "1",
        "--output-dir", str(tmp_path / "run"),
    ]  # fmt: skip
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert str(e.value.code) == f"error: {path}:2: x2 = 'x': expected a finite number (pixels)"


@pytest.mark.slow
def test_demo_with_and_without_region_crops_both_complete(small_demo, tmp_path):
    """The README's comparison at test size: both runs complete and write their metrics (the
    accuracies themselves are measured on the full demo, not asserted here)."""
    region_file = os.path.join(small_demo["manual_dir"], "regions.csv")
    runs = {
        "without": _config(small_demo, tmp_path / "a", region_crops=False, epochs=2),
        "with": _config(small_demo, tmp_path / "b", region_file=region_file, epochs=2),
    }
    for name, cfg in runs.items():
        T.train(cfg, export=False)
        with open(os.path.join(cfg.runtime.output_dir, "metrics.json"), encoding="utf-8") as f:
            metrics = json.load(f)
        assert 0.0 <= metrics["heads"]["neckline"]["accuracy"] <= 1.0, name
        assert ("region_boxes" in metrics) == (name == "with")
    model = keras.saving.load_model(os.path.join(runs["with"].runtime.output_dir, "model.keras"))
    assert model.regions == ("collar",)
