"""Probes and provenance: ``/health/live``, ``/health/ready`` and ``/health``."""

from __future__ import annotations

import platform
from importlib import metadata

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from resnet_service.batcher import DynamicBatcher
from resnet_service.engine import Engine
from resnet_service.schemas import Health, Liveness, ModelInfo, Readiness

__all__ = ["router"]

router = APIRouter(tags=["health"])

RANDOM_WEIGHTS_WARNING = (
    "the model has RANDOM weights: its predictions are meaningless (export with --weights imagenet)"
)
_REPORTED_PACKAGES = ("resnet-service", "onnxruntime", "numpy", "pillow", "fastapi", "uvicorn")


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _REPORTED_PACKAGES:
        versions[name] = metadata.version(name)
    return versions


def _model_info(engine: Engine) -> ModelInfo:
    return ModelInfo(
        path=str(engine.path),
        sha256=engine.sha256,
        weights=engine.weights,
        random_weights=engine.random_weights,
        input_name=engine.input_name,
        input_shape=engine.input_shape,
        output_name=engine.output_name,
        provider=engine.provider,
        batch_sizes=list(engine.batch_sizes),
        warm_up_s=round(engine.warm_up_s, 3),
        cuda_graphs=engine.runner.cuda_graphs if engine.runner is not None else None,
        metadata=engine.metadata,
    )


@router.get("/health/live", response_model=Liveness, summary="Liveness: the process answers")
async def live() -> Liveness:
    return Liveness()


@router.get(
    "/health/ready",
    response_model=Readiness,
    summary="Readiness: 200 once the model is loaded and warmed up, else 503",
    responses={503: {"model": Readiness, "description": "Starting or stopping."}},
)
async def ready(request: Request) -> JSONResponse:
    status = request.app.state.status
    return JSONResponse(Readiness(status=status).model_dump(), status_code=200 if status == "ready" else 503)


# A plain def runs in FastAPI's thread pool, so the first call's file hash never blocks the event loop.
@router.get("/health", response_model=Health, summary="Model provenance, provider and versions")
def health(request: Request) -> Health:
    engine: Engine | None = request.app.state.engine
    batcher: DynamicBatcher | None = request.app.state.batcher
    random = engine is not None and engine.random_weights
    return Health(
        status=request.app.state.status,
        version=metadata.version("resnet-service"),
        model=_model_info(engine) if engine else None,
        warning=RANDOM_WEIGHTS_WARNING if random else None,
        versions=_versions(),
        intra_op_threads=request.app.state.settings.intra_op_threads,
        waiting=batcher.waiting if batcher is not None else 0,
        max_queue=request.app.state.settings.max_queue,
    )
