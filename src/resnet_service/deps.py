"""FastAPI dependencies: what a route needs, read from ``app.state`` where create_app put it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Annotated

from fastapi import Depends, Request

from resnet_service.batcher import DynamicBatcher
from resnet_service.errors import ModelNotReady
from resnet_service.labels import Labels
from resnet_service.settings import Settings

__all__ = ["BatcherDep", "LabelsDep", "SettingsDep", "PreprocessPoolDep"]


def _batcher(request: Request) -> DynamicBatcher:
    batcher: DynamicBatcher | None = request.app.state.batcher
    # While stopping, readiness is 503 but requests that still reach the app are served: the drain finishes them.
    if batcher is None or request.app.state.status == "starting":
        raise ModelNotReady("the model is still loading; retry when /health/ready answers 200")
    return batcher


def _labels(request: Request) -> Labels:
    return request.app.state.labels


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _preprocess_pool(request: Request) -> ThreadPoolExecutor:
    return request.app.state.preprocess_pool


BatcherDep = Annotated[DynamicBatcher, Depends(_batcher)]
LabelsDep = Annotated[Labels, Depends(_labels)]
SettingsDep = Annotated[Settings, Depends(_settings)]
PreprocessPoolDep = Annotated[ThreadPoolExecutor, Depends(_preprocess_pool)]
