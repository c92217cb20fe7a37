"""FastAPI dependencies: what a route needs, read from ``app.state`` where create_app and its lifespan put it.

Each is ``async``: FastAPI runs a plain ``def`` dependency in its threadpool, two thread hops per request for a
lookup.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from resnet_service.api.url_fetch import UrlPolicy
from resnet_service.errors import ModelNotReady
from resnet_service.inference.model_repository import ModelRepository
from resnet_service.metrics import Metrics

__all__ = ["MetricsDep", "ModelsDep", "UrlPolicyDep"]


async def _models(request: Request) -> ModelRepository:
    models: ModelRepository | None = request.app.state.models
    # While stopping, readiness is 503 but requests that still reach the app are served: the drain finishes them.
    if models is None or request.app.state.status == "starting":
        raise ModelNotReady("the model is still loading; retry when /health/ready answers 200")
    return models


async def _metrics(request: Request) -> Metrics:
    return request.app.state.metrics


async def _url_policy(request: Request) -> UrlPolicy:
    return request.app.state.url_policy


ModelsDep = Annotated[ModelRepository, Depends(_models)]
UrlPolicyDep = Annotated[UrlPolicy, Depends(_url_policy)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
