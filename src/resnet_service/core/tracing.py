"""OpenTelemetry traces over OTLP, on when RESNET_OTEL_ENDPOINT (or OTEL_EXPORTER_OTLP_ENDPOINT) is set.

The SDK is imported only then, so a service without traces loads none of it. What the SDK reads from the standard
environment on its own still applies: OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER and its
argument, OTEL_EXPORTER_OTLP_HEADERS, OTEL_EXPORTER_OTLP_TIMEOUT, OTEL_BSP_* and OTEL_PROPAGATORS.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from resnet_service.core.settings import Settings
from resnet_service.core.version import __version__

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Tracer

__all__ = ["REQUEST_ID_ATTRIBUTE", "Tracing", "start_tracing"]

logger = logging.getLogger(__name__)

SERVICE_NAME = "resnet-service"
# Every request span carries its X-Request-ID, the key to its access line.
REQUEST_ID_ATTRIBUTE = "resnet.request_id"
# Probes and scrapers call these every few seconds; a trace of each would bury the requests worth reading.
UNTRACED_PATHS = "/health/live,/health/ready,/metrics"
# How long the spans still buffered at shutdown may take to leave. The exporter itself retries an absent receiver
# for 10 s (OTEL_EXPORTER_OTLP_TIMEOUT), which on top of the drain would outlast Kubernetes' 30 s grace period.
FLUSH_ON_EXIT_S = 3.0


@dataclass(frozen=True)
class Tracing:
    provider: TracerProvider

    @property
    def tracer(self) -> Tracer:
        return self.provider.get_tracer("resnet_service", __version__)

    def shutdown(self, timeout_s: float = FLUSH_ON_EXIT_S) -> None:
        """Send the spans still buffered, waiting at most ``timeout_s`` for the receiver, then stop the exporter."""
        # In a daemon thread, so that a receiver that does not answer cannot hold the process's exit.
        flush = threading.Thread(target=self.provider.shutdown, name="otel-shutdown", daemon=True)
        flush.start()
        flush.join(timeout_s)
        if flush.is_alive():
            logger.warning(
                "traces: the OTLP receiver took no spans within %g s of shutdown; the rest are dropped", timeout_s
            )


def _exporter(settings: Settings) -> SpanExporter:
    endpoint = settings.otel_endpoint
    assert endpoint is not None
    if settings.otel_protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        # OTLP/HTTP takes the signal's full URL; an endpoint given as a bare host gets the standard path.
        if urlsplit(endpoint).path in ("", "/"):
            endpoint = endpoint.rstrip("/") + "/v1/traces"
        return HttpExporter(endpoint=endpoint)
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

    # An http:// endpoint means plaintext, https:// TLS: the exporter reads that from the scheme.
    return GrpcExporter(endpoint=endpoint)


def start_tracing(settings: Settings, exporter: SpanExporter | None = None) -> Tracing | None:
    """A tracer provider exporting to RESNET_OTEL_ENDPOINT, or to ``exporter`` when given; None when traces are off.

    Spans leave in batches from a background thread, so a slow or absent receiver never holds a request up.
    """
    if exporter is None and not settings.tracing:
        return None
    from opentelemetry.sdk.resources import SERVICE_NAME as SERVICE_NAME_KEY
    from opentelemetry.sdk.resources import SERVICE_VERSION, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({SERVICE_VERSION: __version__})
    if str(resource.attributes.get(SERVICE_NAME_KEY, "")).startswith("unknown_service"):
        # OTEL_SERVICE_NAME, when set, names the service; otherwise it is resnet-service, not the SDK's placeholder.
        resource = resource.merge(Resource({SERVICE_NAME_KEY: SERVICE_NAME}))
    # No exit hook of the SDK's own: Tracing.shutdown bounds the last flush, which the hook would not.
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(exporter if exporter is not None else _exporter(settings)))
    return Tracing(provider)
