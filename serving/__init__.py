"""TF Serving for fashion_keras: deployment configs, gRPC/REST clients and a local model server.

- ``models.config``, ``batching_parameters.txt``, ``docker-compose.yml``: run the exported
  SavedModel with the real ``tensorflow_model_server`` (docker image ``tensorflow/serving``).
- :mod:`serving.client`: gRPC (``PredictionServiceStub``) and REST clients that return per-head
  top classes with names; ``python -m serving.client``.
- :mod:`serving.server`: a local server speaking the same gRPC and REST APIs through the official
  ``tensorflow-serving-api`` protos; ``python -m serving.server --model-base-path DIR``. It
  composes :mod:`serving.core` (the servable core), :mod:`serving.grpc_api` and
  :mod:`serving.rest_api` over :mod:`serving.manager` (versions).

``serving/README.md`` is the reference.

Importing this package is cheap; the submodules import TensorFlow. In a process started as one
of the project's commands (``python -m serving.server``, ``serving.client``,
``fashion_keras.<command>``) it first prepares TensorFlow's start-up (its lines once, no spurious
CUDA error; :mod:`serving.startup`); anywhere else it changes nothing.
"""

import os

from serving import startup

#: The model name the configs, the clients and the local server use unless told otherwise.
DEFAULT_MODEL_NAME = "fashion"
#: Ports of TF Serving (and of the local server): gRPC and REST.
DEFAULT_GRPC_PORT = 8500
DEFAULT_REST_PORT = 8501
#: The folder holding the templates (``models.config``, ``batching_parameters.txt``, ...).
CONFIG_DIR = os.path.dirname(os.path.abspath(__file__))


def hostport(host: str, port: int) -> str:
    """``host:port`` for an address, bracketing IPv6 hosts (``[::1]:8500``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


startup.prepare_command_process()  # a no-op unless this process is a project command
