"""``--weights imagenet``: timm's checkpoint of a backbone in the Keras cache folder.

Nothing is downloaded: the file must already be in ``$KERAS_HOME/models`` (or
``~/.keras/models``) under one of the names :meth:`PretrainedInfo.file_names` lists, and the
error says which file was expected and where it comes from.
"""

from __future__ import annotations

import os

from fashion_keras.models.checkpoints.files import CheckpointError
from fashion_keras.models.presets import PRETRAINED


def keras_cache_dir() -> str:
    """Where Keras keeps downloaded weights: ``$KERAS_HOME/models`` or ``~/.keras/models``."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "models")


def checkpoint_path(weights: str | os.PathLike, backbone: str, cache_dir: str | None = None) -> str:
    """The checkpoint file for ``--weights``: a path, or ``imagenet`` (the Keras cache).

    Nothing is downloaded: for ``imagenet`` the error says which files were looked for.
    """
    spec = os.fspath(weights)
    if spec != "imagenet":
        path = os.path.expanduser(spec)
        if not os.path.isfile(path):
            raise CheckpointError(f"--weights {spec!r}: no such file")
        return path
    cache_dir = cache_dir or keras_cache_dir()
    info = PRETRAINED.get(backbone)
    if info is None or (info.tag is None and not info.url):
        alternatives = [n for n, i in PRETRAINED.items() if i.tag and n.endswith(backbone)]
        hint = f"; use {alternatives[0]} instead" if alternatives else ""
        extra = [os.path.join(cache_dir, f"{backbone}.weights.h5")]
        if os.path.isfile(extra[0]):
            return extra[0]
        raise CheckpointError(
            f"--weights imagenet: timm publishes no ImageNet weights for backbone {backbone!r}"
            f"{hint} (a converted {extra[0]} would be used if present)"
        )
    candidates = [os.path.join(cache_dir, name) for name in info.file_names(backbone)]
    for path in candidates:
        if os.path.isfile(path):
            return path
    origin = (
        f"timm's model.safetensors from the Hugging Face repo {info.hf_hub_id}"
        if info.hf_hub_id
        else f"the release file {info.url}"
    )
    primary = os.path.join(cache_dir, info.primary_file(backbone) or "")
    raise CheckpointError(
        f"--weights imagenet: no ImageNet checkpoint for {backbone!r} in {cache_dir} (nothing is "
        f"downloaded). Expected {primary} ({origin}); also accepted: "
        f"{', '.join(c for c in candidates if c != primary)}. Copy the file there, or pass "
        "--weights PATH."
    )
