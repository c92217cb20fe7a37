"""FastAPI dependencies: what a route needs, read from ``app.state`` where create_app put it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Annotated

from fastapi import Depends, Request

from resnet_service.engine import Engine
from resnet_service.errors import ModelNotReady
from resnet_service.labels import Labels
from resnet_service.settings import Settings

__all__ = ["EngineDep", "LabelsDep", "SettingsDep", "PreprocessPoolDep"]


def _engine(request: Request) -> Engine:
    engine: Engine | None = request.app.state.engine
    if engine is None or request.app.state.status != "ready":
        raise ModelNotReady("the model is still loading; retry when /health/ready answers 200")
    return engine


def _labels(request: Request) -> Labels:
    return request.app.state.labels


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _preprocess_pool(request: Request) -> ThreadPoolExecutor:
    return request.app.state.preprocess_pool


EngineDep = Annotated[Engine, Depends(_engine)]
LabelsDep = Annotated[Labels, Depends(_labels)]
SettingsDep = Annotated[Settings, Depends(_settings)]
PreprocessPoolDep = Annotated[ThreadPoolExecutor, Depends(_preprocess_pool)]
