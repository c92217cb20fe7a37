"""FastAPI dependencies: what a route needs, read from ``app.state`` where create_app put it.

Each is ``async``: FastAPI runs a plain ``def`` dependency in its threadpool, two thread hops per request for a
lookup.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from resnet_service.errors import ModelNotReady
from resnet_service.labels import Labels
from resnet_service.metrics import Metrics
from resnet_service.pipeline import Pipeline
from resnet_service.url_fetch import UrlPolicy

__all__ = ["LabelsDep", "MetricsDep", "PipelineDep", "UrlPolicyDep"]


async def _pipeline(request: Request) -> Pipeline:
    pipeline: Pipeline | None = request.app.state.pipeline
    # While stopping, readiness is 503 but requests that still reach the app are served: the drain finishes them.
    if pipeline is None or request.app.state.status == "starting":
        raise ModelNotReady("the model is still loading; retry when /health/ready answers 200")
    return pipeline


async def _labels(request: Request) -> Labels:
    return request.app.state.labels


async def _metrics(request: Request) -> Metrics:
    return request.app.state.metrics


async def _url_policy(request: Request) -> UrlPolicy:
    return request.app.state.url_policy


PipelineDep = Annotated[Pipeline, Depends(_pipeline)]
UrlPolicyDep = Annotated[UrlPolicy, Depends(_url_policy)]
LabelsDep = Annotated[Labels, Depends(_labels)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
