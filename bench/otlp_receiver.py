"""An OTLP trace receiver for the tests and the tracing benchmark, over gRPC and HTTP, keeping every span sent.

No OpenTelemetry Collector can be installed here (it is a Go binary, not on PyPI, Debian or npm), so this is the
protocol's own generated service from ``opentelemetry-proto``, served by grpcio, and its HTTP binding
(``POST /v1/traces`` with a protobuf body) on the standard library's server: the service's real exporters talk
to it over a real socket.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as service
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as service_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

__all__ = ["ReceivedSpan", "SpanStore", "grpc_receiver", "http_receiver"]


def _value(value: AnyValue) -> object:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind is not None else None


def _attributes(pairs: list[KeyValue]) -> dict[str, object]:
    return {pair.key: _value(pair.value) for pair in pairs}


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as it arrived, with ids in the hex form traceparent and the logs use."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, object]
    links: list[tuple[str, str]]  # (trace id, span id) of each linked span
    resource: dict[str, object]
    kind: int

    @classmethod
    def of(cls, span: Span, resource: dict[str, object]) -> ReceivedSpan:
        return cls(
            name=span.name,
            trace_id=span.trace_id.hex(),
            span_id=span.span_id.hex(),
            parent_span_id=span.parent_span_id.hex(),
            attributes=_attributes(list(span.attributes)),
            links=[(link.trace_id.hex(), link.span_id.hex()) for link in span.links],
            resource=resource,
            kind=span.kind,
        )


@dataclass
class SpanStore:
    """Every span received, and a way to wait for the ones a test expects."""

    endpoint: str = ""
    spans: list[ReceivedSpan] = field(default_factory=list)
    requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, request: service.ExportTraceServiceRequest) -> None:
        received = [
            ReceivedSpan.of(span, _attributes(list(resource_spans.resource.attributes)))
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]
        with self._lock:
            self.requests += 1
            self.spans.extend(received)

    def wait_for(self, found: Callable[[list[ReceivedSpan]], bool], timeout: float = 15.0) -> list[ReceivedSpan]:
        """The spans received once ``found(spans)`` holds; AssertionError with what did arrive if it never does."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                spans = list(self.spans)
            if found(spans):
                return spans
            if time.monotonic() > deadline:
                names = sorted({(span.trace_id, span.name) for span in spans})
                raise AssertionError(f"the expected spans did not arrive within {timeout} s; received: {names}")
            time.sleep(0.05)

    def trace(self, trace_id: str, names: set[str], timeout: float = 15.0) -> list[ReceivedSpan]:
        """The spans of ``trace_id``, once every name in ``names`` is among them."""
        spans = self.wait_for(lambda spans: names <= {s.name for s in spans if s.trace_id == trace_id}, timeout)
        return [span for span in spans if span.trace_id == trace_id]


class _TraceService(service_grpc.TraceServiceServicer):
    def __init__(self, store: SpanStore) -> None:
        self.store = store

    def Export(  # noqa: N802 - the protocol's method name
        self, request: service.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> service.ExportTraceServiceResponse:
        self.store.add(request)
        return service.ExportTraceServiceResponse()


@contextmanager
def grpc_receiver() -> Iterator[SpanStore]:
    """OTLP/gRPC on a free port of 127.0.0.1; ``store.endpoint`` is http://127.0.0.1:PORT."""
    store = SpanStore()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    service_grpc.add_TraceServiceServicer_to_server(_TraceService(store), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    store.endpoint = f"http://127.0.0.1:{port}"
    try:
        yield store
    finally:
        server.stop(grace=None)


@contextmanager
def http_receiver() -> Iterator[SpanStore]:
    """OTLP/HTTP (protobuf) on a free port of 127.0.0.1; ``store.endpoint`` is http://127.0.0.1:PORT, no path."""
    store = SpanStore()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's method name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/x-protobuf":
                self.send_error(404 if self.path != "/v1/traces" else 415)
                return
            store.add(service.ExportTraceServiceRequest.FromString(body))
            answer = service.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's signature
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="otlp-http", daemon=True)
    thread.start()
    store.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield store
    finally:
        server.shutdown()
        server.server_close()
