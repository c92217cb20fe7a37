"""Probes and provenance: ``/health/live``, ``/health/ready`` and ``/health``."""

from __future__ import annotations

import platform
from importlib import metadata

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from resnet_service.inference.model_repository import LoadFailure, ServedModel
from resnet_service.web.deps import RuntimeDep
from resnet_service.web.schemas import Health, InputContract, Liveness, ModelInfo, Readiness

__all__ = ["router"]

router = APIRouter(tags=["health"])

RANDOM_WEIGHTS_WARNING = "RANDOM weights, meaningless predictions: {} (export with --weights imagenet)"
_REPORTED_PACKAGES = ("resnet-service", "onnxruntime", "numpy", "pillow", "fastapi", "uvicorn")
# Reported when installed.
_OPTIONAL_PACKAGES = ("openvino",)


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _REPORTED_PACKAGES:
        versions[name] = metadata.version(name)
    for name in _OPTIONAL_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _model_info(served: ServedModel, failure: LoadFailure | None) -> ModelInfo:
    engine = served.engine
    contract = engine.contract
    return ModelInfo(
        name=served.name,
        version=served.version,
        loaded_at=round(served.loaded_at, 3),
        last_error=failure.message if failure is not None and failure.at > served.loaded_at else None,
        waiting=served.batcher.waiting,
        architecture=contract.architecture,
        classes=len(contract.labels.names),
        input=InputContract(**contract.input.describe()),
        path=str(engine.path),
        sha256=engine.sha256,
        weights=engine.weights,
        random_weights=engine.random_weights,
        input_name=engine.input_name,
        input_shape=engine.input_shape,
        output_name=engine.output_name,
        runtime=engine.runtime,
        provider=engine.provider,
        precision=engine.precision,
        batch_sizes=list(engine.batch_sizes),
        # Microseconds: a small model warms up in well under a millisecond, which 3 decimals would report as 0.
        warm_up_s=round(engine.warm_up_s, 6),
        cuda_graphs=engine.cuda_graphs,
        metadata=engine.metadata,
    )


@router.get("/health/live", response_model=Liveness, summary="Liveness: the process answers")
async def live() -> Liveness:
    return Liveness()


@router.get(
    "/health/ready",
    response_model=Readiness,
    summary="Readiness: 200 once the model is loaded and warmed up, else 503",
    responses={
        503: {"model": Readiness, "description": "Starting, stopping, or unavailable (the model process is gone)."}
    },
)
async def ready(runtime: RuntimeDep) -> JSONResponse:
    answer = Readiness(status=runtime.state).model_dump()
    return JSONResponse(answer, status_code=200 if runtime.ready else 503)


# A plain def runs in FastAPI's thread pool, so the first call's file hash never blocks the event loop.
@router.get("/health", response_model=Health, summary="Every model's provenance, provider and state; versions")
def health(runtime: RuntimeDep) -> Health:
    models, settings = runtime.models, runtime.settings
    infos, failures = [], {}
    if models is not None:
        infos = [_model_info(served, models.failures.get(served.name)) for served in models.in_order()]
        failures = {name: f.message for name, f in models.failures.items() if name not in models.models}
    random = [info.name for info in infos if info.random_weights]
    return Health(
        status=runtime.state,
        version=metadata.version("resnet-service"),
        model=next((info for info in infos if models and info.name == models.default_name), None),
        models=infos,
        failures=failures,
        warning=RANDOM_WEIGHTS_WARNING.format(", ".join(random)) if random else None,
        versions=_versions(),
        intra_op_threads=settings.intra_op_threads,
        waiting=sum(info.waiting for info in infos),
        max_queue=settings.max_queue,
    )
