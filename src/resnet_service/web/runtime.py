"""The app's one runtime state: what create_app builds, what the lifespan loads, and whether it serves.

Routes reach it through ``deps.py`` only; the server's signal handler turns it to stopping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import FastAPI

from resnet_service.core.errors import ModelNotReady
from resnet_service.core.metrics import Metrics
from resnet_service.core.settings import Settings
from resnet_service.core.tracing import Tracing, start_tracing
from resnet_service.inference.model_repository import ModelRepository
from resnet_service.web.schemas import Status
from resnet_service.web.url_fetch import UrlPolicy

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

__all__ = ["Runtime", "Status", "runtime_of"]


@dataclass
class Runtime:
    settings: Settings
    metrics: Metrics
    url_policy: UrlPolicy
    status: Status = Status.STARTING
    models: ModelRepository | None = None
    tracing: Tracing | None = None

    @classmethod
    def build(cls, settings: Settings, span_exporter: SpanExporter | None = None) -> Runtime:
        policy = UrlPolicy.from_entries(
            settings.url_inputs, settings.url_allowed_hosts, settings.url_timeout_s, settings.max_upload_bytes
        )
        metrics = Metrics(settings.metrics_multiprocess_dir)
        return cls(settings, metrics, policy, tracing=start_tracing(settings, span_exporter))

    @property
    def state(self) -> Status:
        """The status as probes report it: unavailable once a model's process is gone."""
        if self.status is Status.READY and self.models is not None and not self.models.connected:
            return Status.UNAVAILABLE
        return self.status

    @property
    def ready(self) -> bool:
        """The one readiness answer, for /health/ready and /v2/health/ready."""
        return self.state is Status.READY

    def serving(self) -> ModelRepository:
        """The models, once loaded; while stopping, requests that still reach the app are served to drain them."""
        if self.models is None or self.status is Status.STARTING:
            raise ModelNotReady("the model is still loading; retry when /health/ready answers 200")
        return self.models

    def stop_accepting(self) -> bool:
        """Turn readiness to 503; False, changing nothing, if it was not ready."""
        if not self.ready:
            return False
        self.status = Status.STOPPING
        return True


def runtime_of(app: FastAPI) -> Runtime:
    return app.state.runtime
