"""The servable core: what answers TF Serving's requests on the loaded versions, for any transport.

:class:`ServingCore` takes the API's request messages (``PredictRequest``,
``GetModelMetadataRequest``, ``GetModelStatusRequest``) and returns its response messages, or
raises :class:`serving.errors.ServingError`; :mod:`serving.grpc_api` and :mod:`serving.rest_api`
put it on the wire. Classify and Regress are not served (the gRPC API answers UNIMPLEMENTED).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    predict_pb2,
)

from serving.errors import invalid, lookup
from serving.limits import RequestLimits
from serving.manager import ModelManager
from serving.servable import Servable
from serving.signature import Signature
from serving.tensors import array_to_tensor_proto, tensor_to_array

SUPPORTED_METADATA_FIELDS = ("signature_def",)

#: ``convert(signature, where)``: a request's input arrays for the signature it calls.
ConvertFn = Callable[[Signature, str], dict[str, np.ndarray]]


class ServingCore:
    """The request logic shared by the gRPC servicers and the REST handler."""

    def __init__(
        self, managers: Mapping[str, ModelManager], limits: RequestLimits | None = None
    ) -> None:
        self.managers = dict(managers)
        self.limits = limits or RequestLimits()

    def manager(self, name: str) -> ModelManager:
        """The manager of model ``name``; INVALID_ARGUMENT when empty, NOT_FOUND when unknown."""
        if not name:
            raise invalid(f"model_spec.name is empty; served models: {sorted(self.managers)}")
        return lookup(
            self.managers,
            name,
            f"servable not found for request: model {name!r} is not served; served models: "
            f"{sorted(self.managers)}",
        )

    def predict_arrays(
        self,
        name: str,
        version: int | None,
        label: str | None,
        signature_name: str,
        convert: ConvertFn,
        output_filter: Sequence[str],
        timeout: float | None,
    ) -> tuple[int, str, dict[str, np.ndarray]]:
        """Runs one request on the version it means: ``(version, signature name, outputs)``.

        ``convert`` builds the input arrays once the signature is known (checking what it can
        before allocating); ``output_filter`` names the outputs to return (empty: all of them).
        Batch sizes and encoded images are checked against :attr:`limits` before the model runs.
        """
        manager = self.manager(name)
        with manager.acquire(version, label) as servable:
            sig = servable.signature(signature_name)
            where = f"{servable.where}, signature {sig.name!r}"
            arrays = convert(sig, where)
            sig.check_inputs(arrays, where)
            for key, array in arrays.items():
                self.limits.check_batch(key, array.shape[0], where)
            self.limits.check_images(arrays, where)
            wanted = list(dict.fromkeys(output_filter)) or list(sig.outputs)
            unknown = [k for k in wanted if k not in sig.outputs]
            if unknown:
                raise invalid(
                    f"{where}: output_filter names {unknown[0]!r}, which is not an output; "
                    f"outputs: {list(sig.outputs)}"
                )
            outputs = servable.predict(sig.name, arrays, timeout)
            return servable.version, sig.name, {k: outputs[k] for k in wanted}

    def predict(
        self, request: predict_pb2.PredictRequest, timeout: float | None = None
    ) -> predict_pb2.PredictResponse:
        """``PredictionService.Predict``."""
        spec = request.model_spec
        version, label = _version_choice(spec)

        def convert(sig: Signature, where: str) -> dict[str, np.ndarray]:
            return {
                k: tensor_to_array(k, v, sig, where, self.limits) for k, v in request.inputs.items()
            }

        served, sig_name, outputs = self.predict_arrays(
            spec.name, version, label, spec.signature_name, convert, request.output_filter, timeout
        )
        response = predict_pb2.PredictResponse()
        response.model_spec.name = spec.name
        response.model_spec.version.value = served
        response.model_spec.signature_name = sig_name
        for key, value in outputs.items():
            response.outputs[key].CopyFrom(array_to_tensor_proto(value))
        return response

    def metadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        """``PredictionService.GetModelMetadata`` (the ``signature_def`` field)."""
        fields = list(request.metadata_field)
        if not fields:
            raise invalid(
                "GetModelMetadataRequest.metadata_field is empty; supported fields: "
                f"{list(SUPPORTED_METADATA_FIELDS)}"
            )
        for field in fields:
            if field not in SUPPORTED_METADATA_FIELDS:
                raise invalid(
                    f"metadata field {field!r} is not supported; supported fields: "
                    f"{list(SUPPORTED_METADATA_FIELDS)}"
                )
        spec = request.model_spec
        version, label = _version_choice(spec)
        with self.manager(spec.name).acquire(version, label) as servable:
            return self._metadata_response(spec.name, servable)

    @staticmethod
    def _metadata_response(
        name: str, servable: Servable
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = name
        response.model_spec.version.value = servable.version
        response.metadata["signature_def"].Pack(servable.signature_def_map)
        return response

    def status(
        self, request: get_model_status_pb2.GetModelStatusRequest
    ) -> get_model_status_pb2.GetModelStatusResponse:
        """``ModelService.GetModelStatus``."""
        spec = request.model_spec
        version, label = _version_choice(spec)
        response = get_model_status_pb2.GetModelStatusResponse()
        for v, state in self.manager(spec.name).status(version, label):
            entry = response.model_version_status.add()
            entry.version = v
            entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(state.state)
            entry.status.error_code = state.error_code.value[0]
            entry.status.error_message = state.error_message
        return response


def _version_choice(spec: model_pb2.ModelSpec) -> tuple[int | None, str | None]:
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        return int(spec.version.value), None
    if choice == "version_label":
        if not spec.version_label:
            raise invalid("model_spec.version_label is set but empty")
        return None, spec.version_label
    return None, None
