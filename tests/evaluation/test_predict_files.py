"""``python -m fashion_keras.predict`` on a folder: every file it does not predict is listed
with the decoder's own reason, formats TensorFlow does not decode are converted, images over the
pixel cap are refused from their header, and nothing predicted is an error."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from conftest import encode
from PIL import Image

from fashion_keras import predict
from fashion_keras.evaluation import predict as P
from fashion_keras.heads import get_heads
from fashion_keras.models import build_model
from fashion_keras_datasets.common.images import DEFAULT_MAX_IMAGE_PIXELS
from fashion_keras_datasets.synthetic.dummy_files import bomb_png


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("model") / "m.keras")
    build_model("seresnet_tiny", get_heads("deepfashion6")[:2], image_size=32).save(path)
    return path


def _tiff(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "TIFF")
    return buf.getvalue()


def test_a_folder_of_mixed_files(model_path, tmp_path, capsys):
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jfif").write_bytes(encode(photo))  # a JPEG by another name
    (folder / "b.tif").write_bytes(_tiff(photo))  # TensorFlow does not decode TIFF: converted
    (folder / "c").write_bytes(encode(photo, "PNG"))  # no extension
    (folder / "d.heic").write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(40))  # nothing reads it
    (folder / "e.txt").write_text("a note")
    (folder / "f.png").write_bytes(bomb_png(8000))  # 64 MP in 8000 x 8000, a few KB
    (folder / "g.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    out = tmp_path / "pred.json"
    assert predict.main([model_path, str(folder), "--output", str(out)]) == 0
    result = json.load(open(out))
    predicted = sorted(p["image"].rsplit("/", 1)[-1] for p in result["predictions"])
    assert predicted == ["a.jfif", "b.tif", "c"]
    skipped = {s["image"].rsplit("/", 1)[-1]: s["reason"] for s in result["skipped"]}
    assert sorted(skipped) == ["d.heic", "e.txt", "f.png", "g.jpg"]
    assert skipped["f.png"] == "image of 8000 x 8000 pixels (64.0 MP) is over the 40 MP limit"
    for name in ("d.heic", "e.txt", "g.jpg"):  # the decoder's own message, whole
        reason = skipped[name]
        assert "function_node" not in reason and "[Op:" not in reason and reason.endswith("."), (
            name,
            reason,
        )
    err = capsys.readouterr().err
    assert "3 images predicted, 4 skipped" in err and "skipped " + str(folder / "d.heic") in err


def test_nothing_predicted_is_an_error(model_path, tmp_path, capsys):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "x.heic").write_bytes(b"not an image")
    (folder / "readme").write_text("nothing to see")
    assert predict.main([model_path, str(folder)]) == 1
    err = capsys.readouterr().err
    assert "0 images predicted, 2 skipped" in err
    assert f"error: no image predicted in {folder}" in err
    (folder / "x.heic").unlink()
    (folder / "readme").unlink()
    assert predict.main([model_path, str(folder)]) == 1  # an empty folder


def test_the_pixel_cap_is_the_dataset_builders():
    assert P.MAX_IMAGE_PIXELS == DEFAULT_MAX_IMAGE_PIXELS == 40_000_000


def test_a_bad_model_path_is_one_line_and_debug_shows_the_traceback(tmp_path):
    with pytest.raises(SystemExit, match=r"^error: no such model file or folder: /nope$"):
        predict.main(["/nope", str(tmp_path)])
    with pytest.raises(ValueError, match="no such model file or folder"):
        predict.main(["/nope", str(tmp_path), "--debug"])
