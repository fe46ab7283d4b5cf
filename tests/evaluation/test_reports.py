"""Report figures (PNG) and Markdown, and the training-curves callback."""

import csv
import logging
import math
import os

import keras
import numpy as np
import pytest
from PIL import Image

from fashion_keras.evaluation import reports as R
from fashion_keras.evaluation import scoring as S
from fashion_keras.heads import get_heads


def open_png(path):
    """Checks ``path`` is a valid PNG and returns its (width, height)."""
    assert os.path.getsize(path) > 0
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


# --- error analysis figures --------------------------------------------------------------------


def test_confusion_matrix_png_small_and_fifty_classes(tmp_path):
    cm = np.array([[5, 1, 0], [2, 3, 0], [0, 0, 0]])  # an empty true class must not divide by 0
    small = open_png(R.plot_confusion_matrix(cm, ["a", "b", "c"], str(tmp_path / "s.png")))
    rng = np.random.default_rng(0)
    names = get_heads("deepfashion_category")[0].classes
    big_cm = rng.integers(0, 20, (50, 50))
    big = open_png(R.plot_confusion_matrix(big_cm, names, str(tmp_path / "sub" / "b.png"), "cat"))
    assert big[0] > small[0] and big[1] > small[1]  # the figure grows with the class count
    with pytest.raises(ValueError, match=r"shape \(3, 3\), expected \(2, 2\)"):
        R.plot_confusion_matrix(cm, ["a", "b"], str(tmp_path / "x.png"))
    assert not os.path.exists(tmp_path / "x.png")


def test_top_losses_grid(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 24, 16, 3)).astype(np.uint8)
    titles = [R.loss_title("long_sleeve", "sleeveless", 2.5, 0.91) for _ in images]
    assert titles[0] == "true: long_sleeve\npred: sleeveless (0.91)\nloss 2.50"
    w3, h3 = open_png(R.plot_top_losses(images, titles, str(tmp_path / "a.png"), cols=3))
    w5, h5 = open_png(R.plot_top_losses(images, titles, str(tmp_path / "b.png"), cols=5))
    assert w5 > w3 and h3 > h5  # 3 columns x 2 rows against 5 x 1
    # float images in [0, 255] and images of different sizes
    mixed = [rng.uniform(0, 255, (20, 30, 3)), rng.uniform(0, 255, (10, 10, 3))]
    open_png(R.plot_top_losses(mixed, ["x", "y"], str(tmp_path / "c.png"), title="top losses"))
    with pytest.raises(ValueError, match="1 titles for 2 images"):
        R.plot_top_losses(mixed, ["x"], str(tmp_path / "d.png"))
    with pytest.raises(ValueError, match=r"image 0 has shape \(4, 4\), expected \(H, W, 3\)"):
        R.plot_top_losses([np.zeros((4, 4))], ["x"], str(tmp_path / "e.png"))
    with pytest.raises(ValueError, match="no images"):
        R.plot_top_losses([], [], str(tmp_path / "f.png"))


# --- training curves ---------------------------------------------------------------------------


def fake_history(heads, epochs=3):
    hist = {"loss": [], "val_loss": [], "mean_accuracy": [], "val_mean_accuracy": []}
    for h in heads:
        for key in ("loss", "accuracy"):
            hist[f"{h}_{key}"] = []
            hist[f"val_{h}_{key}"] = []
    for e in range(epochs):
        for key in hist:
            hist[key].append(1.0 / (e + 1) if "loss" in key else 0.3 + 0.1 * e)
    return hist


def test_training_curves_from_a_history_dict(tmp_path):
    heads = [h.name for h in get_heads("deepfashion6")]
    assert R.history_heads(fake_history(heads)) == heads  # not "val", "mean" or "loss"
    w, h6 = open_png(R.plot_training_curves(fake_history(heads), None, str(tmp_path / "a.png")))
    # the six heads were inferred from the keys: 8 panels (3 rows) against 2 panels (1 row)
    _, h0 = open_png(R.plot_training_curves(fake_history(heads), [], str(tmp_path / "b.png")))
    assert h6 > 2 * h0
    # the Head objects work too, and so do histories without val_ keys or mean_accuracy
    train_only = {k: v for k, v in fake_history(heads[:2], 1).items() if "val_" not in k}
    del train_only["mean_accuracy"]
    open_png(
        R.plot_training_curves(train_only, get_heads("deepfashion6")[:2], str(tmp_path / "c.png"))
    )
    with pytest.raises(ValueError, match="no epochs to plot"):
        R.plot_training_curves({"loss": []}, None, str(tmp_path / "d.png"))


def write_csv(path, rows):
    keys = ["epoch", "a_accuracy", "a_loss", "loss", "val_a_accuracy", "val_a_loss", "val_loss"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(keys)
        w.writerows(rows)


def test_read_history_csv_keeps_the_latest_run(tmp_path):
    path = str(tmp_path / "history.csv")
    # epochs 0-2 of a first run, then a restarted run (epochs 0-1) appended to the same file;
    # "NA" is what CSVLogger writes for a missing value
    write_csv(
        path,
        [
            [0, 0.1, 2.0, 2.0, 0.1, 2.1, 2.1],
            [1, 0.2, 1.5, 1.5, 0.2, 1.6, 1.6],
            [2, 0.3, 1.0, 1.0, 0.3, 1.1, 1.1],
            [0, 0.5, 0.9, 0.9, "NA", 1.0, 1.0],
            [1, 0.6, 0.8, 0.8, 0.6, 0.9, 0.9],
        ],
    )
    hist = R.read_history_csv(path)
    assert hist["epoch"] == [0.0, 1.0]
    assert hist["a_accuracy"] == [0.5, 0.6]
    assert math.isnan(hist["val_a_accuracy"][0])
    open_png(R.plot_training_curves(path, ["a"], str(tmp_path / "curves.png")))


def tiny_model():
    inputs = keras.Input((4,))
    x = keras.layers.Dense(8, activation="relu")(inputs)
    model = keras.Model(
        inputs,
        {
            "a": keras.layers.Dense(3, activation="softmax", name="a")(x),
            "b": keras.layers.Dense(2, activation="softmax", name="b")(x),
        },
    )
    model.compile(
        optimizer="adam",
        loss={"a": "sparse_categorical_crossentropy", "b": "sparse_categorical_crossentropy"},
        metrics={"a": ["accuracy"], "b": ["accuracy"]},
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = {"a": rng.integers(0, 3, 32), "b": rng.integers(0, 2, 32)}
    return model, x, y


class _ExistsAtEpochEnd(keras.callbacks.Callback):
    def __init__(self, path):
        super().__init__()
        self.path, self.seen = path, []

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append(os.path.isfile(self.path))


def test_callback_draws_after_every_epoch_in_model_fit(tmp_path):
    model, x, y = tiny_model()
    png, csv_path = str(tmp_path / "training_curves.png"), str(tmp_path / "history.csv")
    curves = R.TrainingCurves(png, ["a", "b"], csv_path=csv_path)
    probe = _ExistsAtEpochEnd(png)
    model.fit(
        x,
        y,
        validation_data=(x, y),
        epochs=2,
        batch_size=16,
        verbose=0,
        callbacks=[keras.callbacks.CSVLogger(csv_path), curves, probe],
    )
    assert probe.seen == [True, True]
    open_png(png)
    hist = curves.history()
    assert hist["epoch"] == [0.0, 1.0]
    assert len(hist["val_a_accuracy"]) == 2 and len(hist["b_loss"]) == 2


def test_callback_plots_earlier_epochs_of_a_resumed_run_from_the_csv(tmp_path):
    csv_path = str(tmp_path / "history.csv")
    # the interrupted run's epochs 0-1 are in the CSV; a stale epoch 5 of an older run too
    write_csv(
        csv_path,
        [[0, 0.1, 2.0, 2.0, 0.1, 2.1, 2.1], [5, 0, 0, 0, 0, 0, 0]],
    )
    with open(csv_path, "a", newline="") as f:
        csv.writer(f).writerow([1, 0.2, 1.5, 1.5, 0.2, 1.6, 1.6])  # epoch 1 replaces epoch 5
    model, x, y = tiny_model()
    png = str(tmp_path / "curves.png")
    curves = R.TrainingCurves(png, csv_path=csv_path)  # heads inferred
    model.fit(
        x,
        y,
        validation_data=(x, y),
        initial_epoch=2,
        epochs=3,
        batch_size=16,
        verbose=0,
        callbacks=[keras.callbacks.CSVLogger(csv_path, append=True), curves],
    )
    hist = curves.history()
    assert hist["epoch"] == [0.0, 1.0, 2.0]
    assert hist["a_loss"][:2] == [2.0, 1.5]
    open_png(png)
    # without a CSV file the callback's own logs are the history
    lone = R.TrainingCurves(str(tmp_path / "lone.png"))
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[lone])
    assert lone.history()["epoch"] == [0.0]
    open_png(str(tmp_path / "lone.png"))


def test_callback_logs_a_plotting_error_instead_of_stopping_training(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    curves = R.TrainingCurves(str(blocker / "curves.png"))
    with caplog.at_level(logging.WARNING, logger="fashion_keras"):
        curves.on_epoch_end(0, {"loss": 1.0})
    assert "could not draw the training curves" in caplog.text


# --- Markdown ----------------------------------------------------------------------------------


def test_markdown_table():
    text = R.markdown_table([["a|b", 0.5, 3], ["c", None, 4]], ["name", "acc", "n"])
    assert text.splitlines() == [
        "| name | acc | n |",
        "|---|---:|---:|",
        "| a\\|b | 0.5000 | 3 |",
        "| c | n/a | 4 |",
    ]
    with pytest.raises(ValueError, match=r"row 0 has 1 cells \['x'\], expected 2"):
        R.markdown_table([["x"]], ["a", "b"])


def test_write_markdown_report_links_images_relative_to_the_report(tmp_path):
    score = S.fashionai_score({"t": [[0.9, 0.1], [0.3, 0.7]]}, {"t": ["yn", "yn"]})
    pairs = S.most_confused_pairs([[3, 1], [0, 2]], ["x", "y"])
    png = R.plot_confusion_matrix([[3, 1], [0, 2]], ["x", "y"], str(tmp_path / "fig" / "cm.png"))
    path = R.write_markdown_report(
        str(tmp_path / "report.md"),
        "Evaluation",
        [
            R.Section("FashionAI", "official metric", tables=[R.fashionai_table(score)]),
            R.Section("Confusions", tables=[R.confused_pairs_table(pairs)], images=[png]),
        ],
    )
    text = open(path).read()
    assert text.startswith("# Evaluation\n\n## FashionAI\n\nofficial metric\n\n| task | AP |")
    # AP: P(.9) = 1/1, P(.7) = 1/2 -> 0.75
    assert "| t | 0.7500 | 0.5000 | 2 | 2 | 2 | 0 |" in text
    assert "| x | y | 1 | 0.2500 |" in text
    assert "![cm](fig/cm.png)" in text
