"""serving/models.config, batching_parameters.txt and docker-compose.yml: parsed with the
official protos, cross-checked with each other, and the model config served by the local server.
"""

import os
import re

import pytest
import yaml
from serving_helpers import add_version, photo, tiny_export
from tensorflow_serving.config import model_server_config_pb2

from serving import CONFIG_DIR, DEFAULT_MODEL_NAME
from serving.batching import BatchingOptions, parse_batching_parameters
from serving.client import GrpcClient, RestClient
from serving.model_config import load_model_server_config, model_configs_from_proto
from serving.server import ModelServer

MODELS_CONFIG = os.path.join(CONFIG_DIR, "models.config")
BATCHING = os.path.join(CONFIG_DIR, "batching_parameters.txt")
COMPOSE = os.path.join(CONFIG_DIR, "docker-compose.yml")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def commented_proto(text, after):
    """The ``#   ...`` snippet lines that follow the comment line containing ``after``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if after in line)
    snippet = []
    for line in lines[start + 1 :]:
        m = re.match(r"\s*#   (.*)$", line)
        if not m:
            break
        snippet.append(m.group(1))
    assert snippet, f"no commented snippet after {after!r}"
    return "\n".join(snippet)


def test_models_config_is_a_model_server_config():
    config = load_model_server_config(MODELS_CONFIG)
    assert isinstance(config, model_server_config_pb2.ModelServerConfig)
    [model] = config.model_config_list.config
    assert model.name == DEFAULT_MODEL_NAME
    assert model.base_path == "/models/fashion"
    assert model.model_platform == "tensorflow"
    assert model.model_version_policy.latest.num_versions == 1
    [parsed] = model_configs_from_proto(config, MODELS_CONFIG)
    assert (parsed.policy, parsed.num_versions, dict(parsed.version_labels)) == ("latest", 1, {})


def canary_config(base_path):
    """models.config with its documented canary snippet enabled and base_path pointed here."""
    text = read(MODELS_CONFIG)
    snippet = commented_proto(text, "enable both blocks together")
    text = re.sub(r"model_version_policy \{.*?\n    \}\n", snippet + "\n", text, flags=re.S)
    return text.replace('base_path: "/models/fashion"', f'base_path: "{base_path}"')


def test_documented_canary_snippet_is_valid(tmp_path):
    path = tmp_path / "models.config"
    path.write_text(canary_config("/models/fashion"))
    [model] = model_configs_from_proto(load_model_server_config(str(path)), str(path))
    assert model.policy == "specific" and model.versions == (1, 2)
    assert dict(model.version_labels) == {"stable": 1, "canary": 2}


def test_local_server_serves_the_model_config_with_labels(tmp_path_factory, tmp_path):
    version_dir = tiny_export(tmp_path_factory)[1]
    base = str(tmp_path / "fashion")
    for v in (1, 2, 3):
        add_version(version_dir, base, v)
    path = tmp_path / "models.config"
    path.write_text(canary_config(base))
    models = model_configs_from_proto(load_model_server_config(str(path)), str(path))
    with ModelServer(models, grpc_port=0, rest_port=0, poll_wait_seconds=0) as server:
        assert server.managers["fashion"].available_versions() == [1, 2], "version 3 not listed"
        for label, version in (("stable", 1), ("canary", 2)):
            with GrpcClient(f"127.0.0.1:{server.grpc_port}", version_label=label, timeout=60) as c:
                assert c.classify([photo(1)])[0].model_version == version
            rest = RestClient(
                f"http://127.0.0.1:{server.rest_port}", version_label=label, timeout=60
            )
            [entry] = rest.status()["model_version_status"]
            assert entry["version"] == str(version)
            assert rest.classify([photo(1)])[0].model_version == version, label
        for pin, version in (({}, 2), ({"version": 1}, 1)):  # the newest; a pinned version
            rest = RestClient(f"http://127.0.0.1:{server.rest_port}", timeout=60, **pin)
            assert rest.classify([photo(1)])[0].model_version == version, pin


@pytest.mark.parametrize(
    "text, message",
    [
        ("model_config_list { config { name: 'a' } }", "'base_path' is empty"),
        (
            "model_config_list { config { name: 'a' base_path: '/m' model_platform: 'onnx' } }",
            "model_platform 'onnx'",
        ),
        (
            "model_config_list { config { name: 'a' base_path: '/m' } "
            "config { name: 'a' base_path: '/n' } }",
            "appear twice: \\['a'\\]",
        ),
        ("model_config_list { confg { } }", "not a valid ModelServerConfig"),
    ],
)
def test_bad_model_configs_name_the_problem(tmp_path, text, message):
    path = tmp_path / "bad.config"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        model_configs_from_proto(load_model_server_config(str(path)), str(path))


def test_batching_parameters_template():
    options = BatchingOptions.from_file(BATCHING)
    assert options == BatchingOptions(
        max_batch_size=32, batch_timeout_micros=2000, max_enqueued_batches=100, num_batch_threads=4
    )
    snippet = commented_proto(read(BATCHING), "padding only costs compute")
    padded = BatchingOptions.from_proto(parse_batching_parameters(read(BATCHING) + "\n" + snippet))
    assert padded.allowed_batch_sizes == (8, 16, 32)


def test_docker_compose_runs_tf_serving_with_the_templates():
    compose = yaml.safe_load(read(COMPOSE))
    [service] = compose["services"].values()
    assert service["image"].startswith("tensorflow/serving:")
    assert service["entrypoint"] == ["tensorflow_model_server"]
    flags = dict(arg.lstrip("-").split("=", 1) for arg in service["command"])
    assert flags["port"] == "8500" and flags["rest_api_port"] == "8501"
    assert flags["enable_batching"] == "true"
    assert sorted(service["ports"]) == ["127.0.0.1:8500:8500", "127.0.0.1:8501:8501"]
    mounts = {}
    for volume in service["volumes"]:
        source, target, mode = volume.rsplit(":", 2)
        assert mode == "ro", volume
        mounts[target] = source
    # the config files the flags name are the templates next to the compose file
    for flag, template in (
        ("model_config_file", MODELS_CONFIG),
        ("batching_parameters_file", BATCHING),
    ):
        source = mounts[flags[flag]]
        assert os.path.samefile(os.path.join(CONFIG_DIR, source), template)
    # the export folder is mounted where models.config looks for versions
    [model] = load_model_server_config(MODELS_CONFIG).model_config_list.config
    assert model.base_path in mounts
    assert "EXPORT_DIR" in mounts[model.base_path]
    assert "8501" in str(service["healthcheck"]["test"])
    assert f"/v1/models/{model.name}" in str(service["healthcheck"]["test"])
