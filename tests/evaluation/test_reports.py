"""Report figures (PNG) and Markdown, and the training-curves callback."""

import csv
import logging
import math
import os

import keras
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
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
    with_balanced = {**fake_history(heads[:2]), "sleeve_balanced_accuracy": [0.5] * 3}
    assert R.history_heads(with_balanced) == heads[:2]  # a head's balanced accuracy
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


def realistic_history(epochs=10):
    """Six heads; fabric and fit have no labelled validation rows (NaN, as Keras logs them)."""
    heads = [h.name for h in get_heads("deepfashion6")]
    hist = fake_history(heads, epochs)
    hist["epoch"] = [float(e) for e in range(epochs)]
    for name in ("fabric", "fit"):
        hist[f"val_{name}_loss"] = [math.nan] * epochs
        hist[f"val_{name}_accuracy"] = [math.nan] * epochs
    return heads, hist


def test_training_curves_are_readable(tmp_path):
    """Train and val differ in colour, one legend sits outside every panel, every label lies
    inside the image, epochs are numbered as in history.csv, baselines are drawn."""
    heads, hist = realistic_history()
    baselines = {"texture": 0.46, "sleeve": 0.52, "length": 0.41, "neckline": 0.708}
    baselines.update(fabric=0.33, fit=0.6)
    fig = R.training_curves_figure(hist, heads, baselines=baselines)
    axes = fig.get_axes()
    assert len(axes) == 2 * (1 + len(heads))  # loss and accuracy: all heads, then each head
    assert all(ax.get_legend() is None for ax in axes) and len(fig.legends) == 1
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[:2] == ["train", "val"] and "baseline" in labels[2]
    by_title = {ax.get_title(loc="left"): ax for ax in axes}
    neck = by_title["neckline: accuracy (majority baseline 0.71)"]
    train, val, base = neck.get_lines()
    assert train.get_color() != val.get_color()
    assert list(train.get_xdata()) == list(range(10))  # the epoch column, 0-based
    assert list(base.get_ydata()) == [0.708, 0.708]
    # no val data for fabric: said in the titles, no val line; the mean baseline is over the
    # four heads with val data, as the val mean accuracy is
    assert len(by_title["fabric: loss (no val data)"].get_lines()) == 1
    assert "fabric: accuracy (majority baseline 0.33; no val data)" in by_title
    mean_title = "mean accuracy over heads (mean majority baseline 0.52)"  # 2.098 / 4
    assert mean_title in by_title
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    drawn = fig.get_tightbbox(renderer)  # inches: every title, label and tick label drawn
    assert drawn.x0 >= 0 and drawn.y0 >= 0
    assert drawn.x1 <= fig.get_figwidth() and drawn.y1 <= fig.get_figheight()
    legend_box = fig.legends[0].get_window_extent(renderer)
    assert all(
        not legend_box.overlaps(ax.get_window_extent(renderer)) for ax in axes
    )  # outside the curves
    # without baselines: no baseline line and no legend entry for it
    plain = R.training_curves_figure(hist, heads)
    assert [t.get_text() for t in plain.legends[0].get_texts()] == ["train", "val"]
    open_png(R.plot_training_curves(hist, heads, str(tmp_path / "c.png"), baselines=baselines))


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
    curves = R.TrainingCurves(png, ["a", "b"], csv_path=csv_path, baselines={"a": 0.4})
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
