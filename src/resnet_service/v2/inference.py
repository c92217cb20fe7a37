"""One v2 inference, whatever carried it: the tensors to classify, and the answer, for HTTP and gRPC alike.

The transports parse their own requests into an ``InferenceRequest`` and one byte section per input (the binary
tensor data extension's layout, which gRPC's ``raw_input_contents`` shares), take the queue place and the
deadline, and write the answer back in their own encoding.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import numpy as np

from resnet_service.core.errors import InvalidInferenceRequest, ModelNotFound, ServiceError
from resnet_service.inference.batcher import Slot
from resnet_service.inference.labels import Labels
from resnet_service.inference.model_repository import ModelRepository, ServedModel
from resnet_service.inference.pipeline import Classified
from resnet_service.v2.messages import (
    IMAGE_INPUT,
    OUTPUT,
    TENSOR_INPUT,
    V2_MODEL_VERSION,
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    RepositoryModel,
    ResponseOutput,
    TensorMetadata,
    bytes_elements,
    serialize_bytes,
    tensor_rows,
)

__all__ = ["answer", "check_version", "classify_tensors", "describe_model", "repository_index"]


def check_version(name: str, version: str) -> None:
    if version != V2_MODEL_VERSION:
        raise ModelNotFound(f"model '{name}' has version {V2_MODEL_VERSION} only, not {version}")


# Triton's names for the two: its ONNX Runtime platform and its OpenVINO backend.
PLATFORMS = {"onnxruntime": "onnxruntime_onnx", "openvino": "openvino"}


def repository_index(models: ModelRepository, ready_only: bool = False) -> list[RepositoryModel]:
    """Every model the folder holds or the server serves, loaded or not, with why not (sorted by name)."""
    sources, problems = models.sources()
    entries = []
    for name in sorted({*sources, *problems, *models.models, *models.failures}):
        served, failure = models.models.get(name), models.failures.get(name)
        reason = failure.message if failure is not None else ""
        if served is not None:
            entries.append(RepositoryModel(name=name, version=V2_MODEL_VERSION, state="READY", reason=reason))
        elif not ready_only:
            entries.append(RepositoryModel(name=name, state="UNAVAILABLE", reason=reason or "not loaded"))
    return entries


def describe_model(served: ServedModel) -> ModelMetadata:
    engine = served.engine
    contract = engine.contract
    return ModelMetadata(
        name=served.name,
        versions=[V2_MODEL_VERSION],
        platform=PLATFORMS[engine.runtime],
        parameters={"runtime": engine.runtime, "provider": engine.provider, "precision": engine.precision},
        inputs=[
            TensorMetadata(name=IMAGE_INPUT, datatype="BYTES", shape=[-1]),
            TensorMetadata(name=TENSOR_INPUT, datatype=contract.input.datatype, shape=[-1, *contract.input.row_shape]),
        ],
        outputs=[TensorMetadata(name=OUTPUT, datatype="FP32", shape=[-1, len(contract.labels.names)])],
    )


def classify_tensors(
    served: ServedModel, infer: InferenceRequest, sections: dict[str, bytes | None], slot: Slot
) -> Awaitable[list[Classified | ServiceError]]:
    """The request's one input, checked, as the pipeline's work: encoded images or preprocessed rows."""
    pipeline, spec = served.pipeline, served.engine.contract.input
    row_shape, datatype = spec.row_shape, spec.datatype
    if len(infer.inputs) != 1:
        raise InvalidInferenceRequest(f"send exactly one input, '{IMAGE_INPUT}' or '{TENSOR_INPUT}'")
    (tensor,) = infer.inputs
    if tensor.name == IMAGE_INPUT and tensor.datatype == "BYTES":
        items: list[Any] = bytes_elements(tensor, sections.get(tensor.name))
        work: Any = pipeline.classify_image
    elif tensor.name == TENSOR_INPUT and tensor.datatype == datatype:
        items = list(tensor_rows(tensor, sections.get(tensor.name), row_shape, datatype)[:, np.newaxis])
        work = pipeline.run_row
    else:
        pixels = " (resized 0-255 RGB pixels: this model preprocesses them itself)" if spec.uint8_pixels else ""
        raise InvalidInferenceRequest(
            f"unknown input '{tensor.name}' ({tensor.datatype}): send '{IMAGE_INPUT}' (BYTES [N]) "
            f"or '{TENSOR_INPUT}' ({datatype} [N, {', '.join(map(str, row_shape))}]{pixels})"
        )
    if not items:
        raise InvalidInferenceRequest(f"input '{tensor.name}' is empty")
    pipeline.check_count(len(items), "rows")
    return pipeline.run_each(items, slot, work)


def answer(
    served: ServedModel, infer: InferenceRequest, results: list[Classified | ServiceError], binary: bool | None = None
) -> tuple[InferenceResponse, bytes | None]:
    """The response, and the output's bytes when it is sent binary (``binary``: None means as requested)."""
    # As Triton does, one failed row fails the request: a tensor answer has no place for a per-row error.
    for index, result in enumerate(results):
        if isinstance(result, ServiceError):
            result.message = f"row {index}: {result.message}"
            raise result
    probabilities = np.stack([result.probabilities for result in results])  # type: ignore[union-attr]
    output, raw = _output(infer, probabilities, served.engine.contract.labels, binary)
    response = InferenceResponse(model_name=served.name, model_version=V2_MODEL_VERSION, id=infer.id, outputs=[output])
    return response, raw


def _output(
    infer: InferenceRequest, probabilities: np.ndarray, labels: Labels, binary: bool | None
) -> tuple[ResponseOutput, bytes | None]:
    """The one output, as requested: probabilities or top-k strings, in JSON or binary."""
    wanted = infer.outputs or []
    if any(output.name != OUTPUT for output in wanted) or len(wanted) > 1:
        raise InvalidInferenceRequest(f"the only output is '{OUTPUT}'")
    parameters = (wanted[0].parameters or {}) if wanted else {}
    if binary is None:
        binary = bool(parameters.get("binary_data", (infer.parameters or {}).get("binary_data_output", False)))
    k = parameters.get("classification", 0)
    if not isinstance(k, int) or not 0 <= k <= len(labels.names):
        raise InvalidInferenceRequest(f"classification must be a number of classes from 1 to {len(labels.names)}")
    if k:
        strings = [
            f"{score:f}:{index}:{labels.names[index]}".encode()
            for row in probabilities
            for index, score in ((int(i), float(row[i])) for i in np.argsort(-row, kind="stable")[:k])
        ]
        shape, datatype = [len(probabilities), k], "BYTES"
        raw, data = serialize_bytes(strings), [text.decode() for text in strings]
    else:
        shape, datatype = list(probabilities.shape), "FP32"
        raw, data = probabilities.astype("<f4").tobytes(), probabilities.ravel().tolist()
    if binary:
        return ResponseOutput(
            name=OUTPUT, shape=shape, datatype=datatype, parameters={"binary_data_size": len(raw)}
        ), raw
    return ResponseOutput(name=OUTPUT, shape=shape, datatype=datatype, data=data), None
