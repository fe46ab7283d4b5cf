"""Which data a command that scores trained models reads: the data the model was trained on,
unless the command line names other data."""

from __future__ import annotations

import logging

import numpy as np
import tensorflow as tf

from fashion_keras.evaluate import build_parser
from fashion_keras.evaluation.eval_data import EvalData, concat_eval_data, data_config_for
from fashion_keras.heads import Head
from fashion_keras.training.config import TrainConfig


def _run(tmp_path, name: str, **fields) -> str:
    folder = tmp_path / name
    folder.mkdir()
    TrainConfig(output_dir=str(folder), **fields).save(str(folder / "config.json"))
    return str(folder)


def _args(*argv: str):
    return build_parser().parse_args(["model", *argv])


def test_a_run_folder_remembers_its_dataset_folder_and_splits(tmp_path, caplog):
    run = _run(
        tmp_path, "a", dataset="custom_csv", data_dir="/data/shop", val_split="holdout",
        skip_bad_rows=True, tfds_data_dir="/data/tfds",
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="fashion_keras"):
        cfg = data_config_for([f"{run}/model.keras"], _args())
    assert (cfg.dataset, cfg.data_dir, cfg.val_split) == ("custom_csv", "/data/shop", "holdout")
    assert cfg.skip_bad_rows and cfg.tfds_data_dir == "/data/tfds"
    assert f"custom_csv in /data/shop, as the model was trained (from {run}/config.json)" in (
        caplog.text
    )
    # a single field given on the command line overrides just that field
    cfg = data_config_for([run], _args("--tfds-data-dir", "/elsewhere"))
    assert (cfg.dataset, cfg.data_dir, cfg.tfds_data_dir) == (
        "custom_csv",
        "/data/shop",
        "/elsewhere",
    )


def test_naming_other_data_replaces_the_whole_trained_location(tmp_path):
    sources = "fashionai_attributes=/data/fai,deepfashion_attributes=/data/df"
    run = _run(tmp_path, "joint", sources=sources, source_weights="1,1")
    assert data_config_for([run], _args()).sources == sources
    cfg = data_config_for([run], _args("--data-dir", "/data/shop", "--dataset", "custom_csv"))
    assert (cfg.dataset, cfg.data_dir, cfg.sources, cfg.source_weights) == (
        "custom_csv",
        "/data/shop",
        None,
        None,
    )
    cfg.validate()  # no 'sources and data_dir exclude each other'


def test_no_recorded_data_means_the_flags_alone_and_ensembles_on_other_data_warn(tmp_path, caplog):
    assert data_config_for([str(tmp_path / "x.keras")], _args()).uses_demo_data
    a = _run(tmp_path, "a", dataset="custom_csv", data_dir="/data/shop")
    b = _run(tmp_path, "b", dataset="custom_csv", data_dir="/data/other")
    with caplog.at_level(logging.WARNING, logger="fashion_keras"):
        assert data_config_for([a, b], _args()).data_dir == "/data/shop"
    assert f"{b} on custom_csv in /data/other" in caplog.text


def _part(dataset: str, labels: list[int], files: list[str]) -> EvalData:
    n = len(labels)
    return EvalData(
        examples=tf.data.Dataset.from_tensor_slices(
            {"image": [f.encode() for f in files], "bbox": np.zeros((n, 4), np.float32)}
        ),
        labels={"fit": np.array(labels)},
        m_masks={"fit": np.zeros((n, 2), bool)},
        filenames=files,
        dataset=dataset,
    )


def test_joint_sources_are_evaluated_together_in_order():
    heads = (Head("fit", ("loose", "tight")),)
    joint = concat_eval_data(
        [_part("a", [0, 1], ["x.jpg", "y.jpg"]), _part("b", [-1, 1, 0], ["p", "q", "r"])], heads
    )
    assert joint.dataset == "a+b" and joint.num_examples == 5
    assert joint.filenames == ["a:x.jpg", "a:y.jpg", "b:p", "b:q", "b:r"]
    assert joint.labels["fit"].tolist() == [0, 1, -1, 1, 0]
    images = [ex["image"] for ex in joint.examples.as_numpy_iterator()]
    assert images == [b"x.jpg", b"y.jpg", b"p", b"q", b"r"]  # rows line up with their truth
    cut = concat_eval_data([_part("a", [0, 1], ["x", "y"]), _part("b", [1], ["z"])], heads, 2)
    assert cut.num_examples == 2 and len(list(cut.examples)) == 2
