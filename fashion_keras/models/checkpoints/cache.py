"""``--weights`` to a checkpoint file: a local path, or a name fetched into the Keras cache.

A local file is used as it is. ``imagenet`` (the backbone's ``presets.PRETRAINED`` entry), a
timm Hugging Face id (``timm/seresnet50.a1_in1k``, ``hf://timm/...``) and an ``https://`` URL
are looked up in ``$KERAS_HOME/models`` (or ``~/.keras/models``) and, when absent, downloaded
there once and verified by :mod:`.download`; a file already there is re-checked with no network
request. For ``imagenet`` every name :meth:`PretrainedInfo.file_names` lists is accepted (a
converted ``<backbone>.weights.h5``, the Hugging Face layout, the release ``.pth``).
"""

from __future__ import annotations

import os

from fashion_keras.models.checkpoints.download import fetch, remote_checkpoint, verify_cached
from fashion_keras.models.checkpoints.files import CheckpointError
from fashion_keras.models.presets import PRETRAINED, PretrainedInfo


def keras_cache_dir() -> str:
    """Where Keras keeps downloaded weights: ``$KERAS_HOME/models`` or ``~/.keras/models``."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "models")


def checkpoint_path(weights: str | os.PathLike, backbone: str, cache_dir: str | None = None) -> str:
    """The checkpoint file for ``--weights``: a local path, or ``imagenet`` / a timm id / a URL
    found in (or downloaded into) the Keras cache folder ``cache_dir``.

    Raises :class:`CheckpointError` naming the missing file, or the URL and where to put the
    file by hand when it cannot be downloaded.
    """
    spec = os.fspath(weights)
    cache_dir = cache_dir or keras_cache_dir()
    if spec == "imagenet":  # any name the checkpoint may have been put there under
        info = PRETRAINED.get(backbone, PretrainedInfo(None))
        for name in info.file_names(backbone):
            path = os.path.join(cache_dir, name)
            if os.path.isfile(path):
                verify_cached(path)
                return path
    try:
        remote = remote_checkpoint(spec, backbone)
    except CheckpointError as e:
        if spec != "imagenet":
            raise
        converted = os.path.join(cache_dir, f"{backbone}.weights.h5")
        raise CheckpointError(f"{e} (a converted {converted} is used if present)") from e
    if remote is None:
        path = os.path.expanduser(spec)
        if not os.path.isfile(path):
            raise CheckpointError(
                f"--weights {spec!r}: no such file; expected a checkpoint path, 'imagenet', a "
                "timm id (timm/<arch>.<tag>) or an https:// URL"
            )
        return path
    return fetch(remote, cache_dir, backbone)
