"""Helpers and fixtures of the TFX tier (imported as ``tfx_helpers``, like ``serving_helpers``;
no conftest.py here, so ``from conftest import ...`` elsewhere keeps meaning tests/conftest.py).

The repository root is on sys.path (pytest.ini's ``pythonpath``): ``pipelines`` is not
installed, and TFMA imports ``pipelines.metrics`` by name. The tier needs TFX 1.21 (glibc >= 2.39): every module starts
with ``pytest.importorskip("tfx")``, so elsewhere it is skipped with the reason; ``make
test-tfx`` runs it in the Debian 13 root (scripts/tfx_root.sh).
"""

from __future__ import annotations

import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TFX_SKIP_REASON = (
    "tfx is not importable here (TFX 1.21 needs glibc >= 2.39): run `make test-tfx`, which runs "
    "this tier in a Debian 13 root (scripts/tfx_root.sh), or `pip install .[tfx]` on such a host"
)

#: Tiny training settings: the test backbone at 32 px.
TINY_TRAIN_CONFIG = {
    "backbone": "seresnet_tiny",
    "image_size": 32,
    "batch_size": 8,
    "epochs": 1,
    "learning_rate": 3e-3,
}


def write_example_gen_split(builder, tfds_split: str, out_dir: str) -> str:
    """Copies a prepared builder's split records into ``out_dir`` as ExampleGen writes them
    (GZIP TFRecords of the same serialized examples); returns the file pattern."""
    import tensorflow as tf

    files = tf.io.gfile.glob(f"{builder.data_path}/*-{tfds_split}.tfrecord-*")
    assert files, f"no {tfds_split} records in {builder.data_path}"
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "data_tfrecord-00000-of-00001.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for record in tf.data.TFRecordDataset(files):
            writer.write(record.numpy())
    return os.path.join(out_dir, "*")


def _dummy_dir(dataset: str) -> str:
    return os.path.join(REPO, "datasets", dataset, "dummy_data")


_PREPARED: dict[str, object] = {}


def fashionai_dummy(tmp_path_factory):
    """The fashionai_attributes builder (m_half: soft targets) prepared from its dummy data
    (once per session)."""
    from fashion_keras.data import sources

    if "fashionai" not in _PREPARED:
        _PREPARED["fashionai"] = sources.get_builder(
            "fashionai_attributes/m_half",
            _dummy_dir("fashionai_attributes"),
            str(tmp_path_factory.mktemp("fashionai_tfds")),
        )
    return _PREPARED["fashionai"]


def custom_heads_file() -> str:
    """The custom_csv dummy data's own head spec (sleeve, colour)."""
    return os.path.join(_dummy_dir("custom_csv"), "heads.yaml")


def custom_csv_dummy(tmp_path_factory):
    """The custom_csv builder prepared from its dummy data with its heads.yaml (once)."""
    from fashion_keras.data import sources
    from fashion_keras.heads import get_heads

    if "custom" not in _PREPARED:
        _PREPARED["custom"] = sources.get_builder(
            "custom_csv",
            _dummy_dir("custom_csv"),
            str(tmp_path_factory.mktemp("custom_tfds")),
            heads=get_heads(custom_heads_file()),
        )
    return _PREPARED["custom"]
