"""Open Inference Protocol v2 for every served model: what Triton and KServe clients, probes and tools speak.

``POST /v2/models/{name}/infer`` takes one input: ``image`` (BYTES [N], encoded image files, preprocessed here
exactly as /predict does) or ``input`` (FP32 [N, *the model's row shape], already preprocessed, or UINT8
[N, H, W, 3] resized pixels for a model that preprocesses them itself). It answers ``probabilities`` (FP32
[N, classes]), or with ``"classification": k`` on the output, BYTES [N, k] strings ``"score:index:label"``. JSON
and the binary tensor data extension both work, either way round. The model repository extension lists, loads and
unloads models.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from resnet_service.core.errors import InvalidInferenceRequest
from resnet_service.core.version import __version__
from resnet_service.inference.model_repository import ModelRepository, ServedModel
from resnet_service.v2.errors import V2Route
from resnet_service.v2.inference import answer, check_version, classify_tensors, describe_model
from resnet_service.v2.inference import repository_index as index_of
from resnet_service.v2.messages import (
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    RepositoryIndexRequest,
    RepositoryModel,
    ServerMetadata,
    V2Error,
    inline_json_schema,
)
from resnet_service.web.deps import ModelsDep, RuntimeDep
from resnet_service.web.disconnect import cancel_on_disconnect
from resnet_service.web.observe import stats_of
from resnet_service.web.runtime import Runtime
from resnet_service.web.upload import read_body

__all__ = ["router", "health_router"]

HEADER_LENGTH = "Inference-Header-Content-Length"
EXTENSIONS = ["binary_tensor_data", "classification", "model_repository"]
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": V2Error, "description": description}
    for status, description in {
        400: "The request breaks the protocol, an image cannot be decoded, or a model failed to load.",
        404: "No such model or version.",
        413: "The body or the image count is over the limit.",
        503: "Not ready, or the queue is full (retry after Retry-After).",
        504: "Not answered within RESNET_REQUEST_TIMEOUT_S.",
    }.items()
}

INFER_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The JSON inference request. With the binary tensor data extension, the tensors' bytes "
        f"follow it and the {HEADER_LENGTH} header gives the JSON's length.",
        "content": {
            "application/json": {"schema": inline_json_schema(InferenceRequest)},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
_INFER_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": InferenceResponse,
        "description": "JSON, or with binary outputs the JSON header and then the tensors' bytes.",
    },
    **_ERRORS,
}

# Probes and metadata stay open when RESNET_API_KEYS is set; only inference is guarded.
health_router = APIRouter(prefix="/v2", tags=["open inference protocol v2"], route_class=V2Route)
router = APIRouter(prefix="/v2", tags=["open inference protocol v2"], route_class=V2Route)

ModelName = Annotated[str, Path(description="A served model's name: GET /models lists them.")]
ModelVersion = Annotated[str, Path(description="Always `1`: a reload replaces a model in place.")]


def _ready(runtime: Runtime) -> JSONResponse:
    return JSONResponse({"ready": runtime.ready}, status_code=200 if runtime.ready else 503)


def _model_ready(runtime: Runtime, models: ModelRepository, name: str) -> JSONResponse:
    models.get(name)
    return _ready(runtime)


@health_router.get("", response_model=ServerMetadata, summary="Server metadata")
async def server_metadata() -> ServerMetadata:
    return ServerMetadata(name="resnet-service", version=__version__, extensions=EXTENSIONS)


@health_router.get("/health/live", summary="Server liveness: 200 while the process answers")
async def server_live() -> dict[str, bool]:
    return {"live": True}


@health_router.get("/health/ready", summary="Server readiness: 200 once the model is warm, else 503")
async def server_ready(runtime: RuntimeDep) -> JSONResponse:
    return _ready(runtime)


@health_router.get("/models/{name}/ready", summary="Model readiness", responses=_ERRORS)
async def model_ready(runtime: RuntimeDep, models: ModelsDep, name: ModelName) -> JSONResponse:
    return _model_ready(runtime, models, name)


@health_router.get("/models/{name}/versions/{version}/ready", summary="Model version readiness", responses=_ERRORS)
async def model_version_ready(
    runtime: RuntimeDep, models: ModelsDep, name: ModelName, version: ModelVersion
) -> JSONResponse:
    check_version(name, version)
    return _model_ready(runtime, models, name)


@health_router.get("/models/{name}", response_model=ModelMetadata, summary="Model metadata", responses=_ERRORS)
async def model_metadata(name: ModelName, models: ModelsDep) -> ModelMetadata:
    return describe_model(models.get(name))


@health_router.get(
    "/models/{name}/versions/{version}",
    response_model=ModelMetadata,
    summary="Model version metadata",
    responses=_ERRORS,
)
async def model_version_metadata(name: ModelName, version: ModelVersion, models: ModelsDep) -> ModelMetadata:
    check_version(name, version)
    return describe_model(models.get(name))


def _split_body(request: Request, body: bytes) -> tuple[InferenceRequest, bytes]:
    """The JSON header and the binary section after it (empty without the binary extension)."""
    if request.headers.get("content-encoding", "identity") != "identity":
        raise InvalidInferenceRequest("compressed request bodies are not supported; send them uncompressed")
    declared = request.headers.get(HEADER_LENGTH)
    if declared is None:
        header_length = len(body)
    elif declared.isdigit() and int(declared) <= len(body):
        header_length = int(declared)
    else:
        raise InvalidInferenceRequest(f"{HEADER_LENGTH} is {declared!r}, but the body has {len(body)} bytes")
    try:
        infer = InferenceRequest.model_validate_json(body[:header_length])
    except ValidationError as exc:
        raise InvalidInferenceRequest(f"the inference request is not valid: {exc.errors()[0]['msg']}") from exc
    return infer, body[header_length:]


def _binary_sections(infer: InferenceRequest, binary: bytes) -> dict[str, bytes | None]:
    sections: dict[str, bytes | None] = {}
    offset = 0
    for tensor in infer.inputs:
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is None:
            sections[tensor.name] = None
            continue
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise InvalidInferenceRequest(f"input '{tensor.name}': binary_data_size {size!r} does not fit the body")
        sections[tensor.name] = binary[offset : offset + size]
        offset += size
    if offset != len(binary):
        raise InvalidInferenceRequest(f"{len(binary) - offset} bytes after the JSON header belong to no input")
    return sections


@router.post(
    "/models/{name}/infer",
    summary="Inference (binary tensor data and classification extensions)",
    responses=_INFER_RESPONSES,
    openapi_extra=INFER_BODY,
)
async def infer(request: Request, models: ModelsDep, name: ModelName) -> Response:
    with models.use(name) as served:
        return await _infer(request, served)


@router.post(
    "/models/{name}/versions/{version}/infer",
    summary="Inference on a model version",
    responses=_INFER_RESPONSES,
    openapi_extra=INFER_BODY,
)
async def infer_version(request: Request, models: ModelsDep, name: ModelName, version: ModelVersion) -> Response:
    check_version(name, version)
    with models.use(name) as served:
        return await _infer(request, served)


async def _infer(request: Request, served: ServedModel) -> Response:
    pipeline = served.pipeline
    slot = await pipeline.admit()
    with slot:
        async with pipeline.deadline():
            infer_request, binary = _split_body(request, await read_body(request, pipeline.settings.max_upload_bytes))
            classify = classify_tensors(served, infer_request, _binary_sections(infer_request, binary), slot)
            results = await cancel_on_disconnect(request.receive, classify)
    stats_of(request.scope).add(results)
    response, raw = answer(served, infer_request, results)
    header = json.dumps(response.model_dump(exclude_none=True)).encode()
    if raw is None:
        return Response(header, media_type="application/json")
    return Response(header + raw, media_type="application/octet-stream", headers={HEADER_LENGTH: str(len(header))})


@router.post(
    "/repository/index",
    response_model=list[RepositoryModel],
    summary="Model repository: every model, loaded or not, with why not",
)
async def repository_index(models: ModelsDep, body: RepositoryIndexRequest | None = None) -> list[RepositoryModel]:
    return index_of(models, ready_only=body is not None and body.ready)


@router.post(
    "/repository/models/{name}/load",
    summary="Load or reload a model from the model folder, then swap it in; the old version serves until then",
    responses=_ERRORS,
)
async def repository_load(models: ModelsDep, name: ModelName) -> dict[str, str]:
    await models.load(name)
    return {}


@router.post(
    "/repository/models/{name}/unload",
    summary="Unload a model once its requests in flight are done (not the default model)",
    responses={**_ERRORS, 409: {"model": V2Error, "description": "The default model cannot be unloaded."}},
)
async def repository_unload(models: ModelsDep, name: ModelName) -> dict[str, str]:
    await models.unload(name)
    return {}
