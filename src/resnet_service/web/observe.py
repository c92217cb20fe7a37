"""One pass over each request that feeds both its access log line and the request metrics.

The routes add what the pipeline returned with each image (its size, queue, preprocessing and inference times)
to the request's ``RequestStats``; this middleware adds the status, the bytes each way and the total time, and
reports once the last response byte is sent, or when the request fails or is cancelled. The stage times also go
back to the client as a ``Server-Timing`` header. A plain ASGI middleware, like the request-id one, so the
routes still see the client's disconnect.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from resnet_service.core.errors import ServiceError
from resnet_service.core.log import ACCESS_LOGGER
from resnet_service.core.metrics import Metrics
from resnet_service.inference.pipeline import Classified
from resnet_service.web.request_id import request_id_of

__all__ = ["Exchange", "ObserveMiddleware", "RequestStats", "record", "stats_of"]

access_log = logging.getLogger(ACCESS_LOGGER)

# What a request that matched no route is counted under, so unknown paths cannot grow the label set.
UNMATCHED_ROUTE = "unmatched"


@dataclass
class RequestStats:
    """Per-request figures, summed over the request's images."""

    image_sizes: list[str] = field(default_factory=list)
    queue_s: float = 0.0
    preprocess_s: float = 0.0
    inference_s: float = 0.0
    batch_sizes: list[int] = field(default_factory=list)

    def add(self, results: Iterable[Classified | ServiceError]) -> None:
        for result in results:
            if isinstance(result, ServiceError):
                continue
            if result.image_size is not None:
                self.image_sizes.append(result.image_size)
                self.preprocess_s += result.preprocess_s
            self.queue_s += result.computed.queue_s
            self.inference_s += result.computed.inference_s
            self.batch_sizes.append(result.computed.batch_size)


def stats_of(scope: MutableMapping[str, Any]) -> RequestStats:
    """The stats of the request ``scope`` belongs to; a throwaway one outside the middleware (unit tests)."""
    return scope.get("state", {}).get("stats") or RequestStats()


@dataclass(frozen=True)
class Exchange:
    """What one request was and how it ended, whichever transport carried it."""

    method: str  # the HTTP method, or GRPC
    route: str  # the route template, or the gRPC method's full name
    path: str
    status: int  # the HTTP status, or for gRPC the HTTP status its code stands for
    request_id: str | None


def record(
    metrics: Metrics,
    exchange: Exchange,
    seconds: float,
    stats: RequestStats,
    bytes_in: int,
    bytes_out: int,
    client_ip: str | None,
) -> None:
    """The request metrics and the one access log line, for HTTP (the middleware) and gRPC alike."""
    metrics.requests.labels(exchange.method, exchange.route, str(exchange.status)).inc()
    metrics.request_seconds.labels(exchange.method, exchange.route).observe(seconds)
    fields = {
        "request_id": exchange.request_id,
        "method": exchange.method,
        "route": exchange.route,
        "path": exchange.path,
        "status": exchange.status,
        "duration_ms": _ms(seconds),
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "images": len(stats.image_sizes),
        "image_size": ",".join(stats.image_sizes) or None,
        "queue_ms": _ms(stats.queue_s) if stats.batch_sizes else None,
        "preprocess_ms": _ms(stats.preprocess_s) if stats.image_sizes else None,
        "inference_ms": _ms(stats.inference_s) if stats.batch_sizes else None,
        "batch_size": max(stats.batch_sizes, default=None),
        "client_ip": client_ip,
        "trace_id": _trace_id(),
    }
    access_log.info("%s %s %d", exchange.method, exchange.path, exchange.status, extra={"fields": fields})


def _trace_id() -> str | None:
    """The request's trace, with traces on, so that a log line leads to its trace and back."""
    context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(context.trace_id) if context.is_valid else None


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _server_timing(stats: RequestStats) -> str:
    """The stage times as a Server-Timing header, which browsers' developer tools and the demo page show."""
    stages = []
    if stats.image_sizes:
        stages.append(f"preprocess;dur={_ms(stats.preprocess_s)}")
    if stats.batch_sizes:
        stages += [f"queue;dur={_ms(stats.queue_s)}", f"inference;dur={_ms(stats.inference_s)}"]
    return ", ".join(stages)


class ObserveMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Sequence[BaseRoute] = ()) -> None:
        self.app = app
        self.metrics = metrics
        # The app's live route list: FastAPI records the matched route in the scope only for its API routes.
        self.routes = routes

    def _route_path(self, scope: Scope, arrived: Scope) -> str:
        route = scope.get("route")
        if route is None:
            # Matched against the scope as it arrived: a Mount rewrites root_path while it handles the request.
            route = next((r for r in self.routes if r.matches(arrived)[0] == Match.FULL), None)
        return getattr(route, "path", UNMATCHED_ROUTE)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        stats = RequestStats()
        scope.setdefault("state", {})["stats"] = stats
        arrived = dict(scope)
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before it answers (Starlette's error page)
        bytes_in = bytes_out = 0

        async def counting_receive() -> Message:
            nonlocal bytes_in
            message = await receive()
            if message["type"] == "http.request":
                bytes_in += len(message.get("body", b""))
            return message

        async def counting_send(message: Message) -> None:
            nonlocal status, bytes_out
            if message["type"] == "http.response.start":
                status = message["status"]
                timing = _server_timing(stats)
                if timing:
                    message["headers"] = [*message.get("headers", []), (b"server-timing", timing.encode())]
            elif message["type"] == "http.response.body":
                bytes_out += len(message.get("body", b""))
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, counting_receive, counting_send)
        finally:
            self.metrics.in_flight.dec()
            route_path = self._route_path(scope, arrived)
            client = scope.get("client")
            record(
                self.metrics,
                Exchange(scope["method"], route_path, scope["path"], status, request_id_of(scope)),
                time.perf_counter() - started,
                stats,
                bytes_in,
                bytes_out,
                client[0] if client else None,
            )
