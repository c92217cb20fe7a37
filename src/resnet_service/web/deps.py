"""FastAPI dependencies: the runtime state create_app builds, and the parts of it a route needs.

Each is ``async``: FastAPI runs a plain ``def`` dependency in its threadpool, two thread hops per request for a
lookup.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from resnet_service.core.metrics import Metrics
from resnet_service.inference.model_repository import ModelRepository
from resnet_service.web.runtime import Runtime, runtime_of
from resnet_service.web.url_fetch import UrlPolicy

__all__ = ["MetricsDep", "ModelsDep", "RuntimeDep", "UrlPolicyDep"]


async def _runtime(request: Request) -> Runtime:
    return runtime_of(request.app)


RuntimeDep = Annotated[Runtime, Depends(_runtime)]


async def _models(runtime: RuntimeDep) -> ModelRepository:
    return runtime.serving()


async def _metrics(runtime: RuntimeDep) -> Metrics:
    return runtime.metrics


async def _url_policy(runtime: RuntimeDep) -> UrlPolicy:
    return runtime.url_policy


ModelsDep = Annotated[ModelRepository, Depends(_models)]
UrlPolicyDep = Annotated[UrlPolicy, Depends(_url_policy)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
