"""What to serve: :class:`ModelConfig` and TF Serving's ``--model_config_file`` (``ModelServerConfig``).

A config names a model, its base path holding ``<version>/`` folders, the version policy
(``latest`` N, ``all`` or ``specific`` versions) and version labels such as ``stable`` and
``canary``; :func:`model_configs_from_proto` reads the ``model_config_list`` of a
``ModelServerConfig`` text proto loaded by :func:`load_model_server_config`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """One served model: name, base path, version policy and version labels."""

    name: str
    base_path: str
    policy: str = "latest"  # "latest" | "all" | "specific"
    num_versions: int = 1
    versions: tuple[int, ...] = ()
    version_labels: Mapping[str, int] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("model config: 'name' is empty")
        if not self.base_path:
            raise ValueError(f"model config {self.name!r}: 'base_path' is empty")
        if self.policy not in ("latest", "all", "specific"):
            raise ValueError(f"model config {self.name!r}: unknown version policy {self.policy!r}")
        if self.policy == "latest" and self.num_versions < 1:
            raise ValueError(
                f"model config {self.name!r}: latest.num_versions = {self.num_versions} must be >= 1"
            )
        if self.policy == "specific" and not self.versions:
            raise ValueError(f"model config {self.name!r}: specific policy lists no versions")

    def select(self, on_disk: Sequence[int]) -> set[int]:
        """The versions this policy wants among those on disk."""
        if self.policy == "all":
            return set(on_disk)
        if self.policy == "specific":
            return set(on_disk) & set(self.versions)
        return set(sorted(on_disk)[-self.num_versions :])


def load_model_server_config(path: str) -> model_server_config_pb2.ModelServerConfig:
    """Parses a ``--model_config_file`` (``ModelServerConfig`` text proto)."""
    config = model_server_config_pb2.ModelServerConfig()
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as e:
        raise ValueError(f"{path}: not a valid ModelServerConfig text proto: {e}") from e
    return config


def model_configs_from_proto(
    config: model_server_config_pb2.ModelServerConfig, source: str = "<config>"
) -> list[ModelConfig]:
    """The model list of a ``ModelServerConfig`` (``model_config_list`` only)."""
    if config.WhichOneof("config") != "model_config_list":
        raise ValueError(f"{source}: only model_config_list is supported")
    result = []
    for i, m in enumerate(config.model_config_list.config):
        where = f"{source}: model_config_list.config[{i}]"
        if m.model_platform not in ("", "tensorflow"):
            raise ValueError(f"{where}: model_platform {m.model_platform!r} is not 'tensorflow'")
        policy = m.model_version_policy.WhichOneof("policy_choice") or "latest"
        try:
            result.append(
                ModelConfig(
                    name=m.name,
                    base_path=m.base_path,
                    policy=policy,
                    num_versions=m.model_version_policy.latest.num_versions or 1,
                    versions=tuple(int(v) for v in m.model_version_policy.specific.versions),
                    version_labels={k: int(v) for k, v in m.version_labels.items()},
                )
            )
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from e
    names = [c.name for c in result]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{source}: model names appear twice: {dupes}")
    if not result:
        raise ValueError(f"{source}: model_config_list has no models")
    return result
