"""Traces, with OpenTelemetry's in-memory exporter in place of OTLP: the spans each request makes, and how they
hang together. tests/e2e/test_tracing.py sends them over OTLP to a receiver on a socket."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import tritonclient.grpc as triton
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, format_span_id, format_trace_id

from resnet_service import Settings, create_app
from resnet_service.core.tracing import start_tracing
from resnet_service.web.runtime import runtime_of
from tests.conftest import free_port, threaded_server
from tests.support.images import encode, image_tensor, photo

CAT = encode(photo("chelsea"), "JPEG", quality=90)
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CLIENT_SPAN_ID}-01"
STAGES = ["admission", "preprocess", "queue", "inference"]


def _trace(spans: list[ReadableSpan], trace_id: str) -> list[ReadableSpan]:
    return [span for span in spans if format_trace_id(span.context.trace_id) == trace_id]


def _named(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def _span_id(span: ReadableSpan) -> str:
    return format_span_id(span.context.span_id)


def _parent_id(span: ReadableSpan) -> str | None:
    return format_span_id(span.parent.span_id) if span.parent is not None else None


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def traced(settings: Settings, exporter: InMemorySpanExporter) -> Iterator[TestClient]:
    with TestClient(create_app(settings, span_exporter=exporter)) as client:
        yield client


def _finished(client: TestClient, exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    """Every span, once the batch processor has handed them over."""
    tracing = runtime_of(client.app).tracing
    assert tracing is not None
    assert tracing.provider.force_flush(10_000)
    return list(exporter.get_finished_spans())


def test_a_request_continues_the_clients_trace_with_a_span_per_stage(
    traced: TestClient, exporter: InMemorySpanExporter
) -> None:
    response = traced.post("/predict", files={"image": ("cat.jpg", CAT)}, headers={"traceparent": TRACEPARENT})
    assert response.status_code == 200
    spans = _trace(_finished(traced, exporter), TRACE_ID)

    [request] = _named(spans, "POST /predict")
    assert request.kind is SpanKind.SERVER and _parent_id(request) == CLIENT_SPAN_ID
    assert request.attributes["resnet.request_id"] == response.headers["x-request-id"]
    assert request.attributes["http.route"] == "/predict" and request.attributes["http.status_code"] == 200
    assert request.resource.attributes["service.name"] == "resnet-service"
    for name in STAGES:
        [stage] = _named(spans, name)
        assert _parent_id(stage) == _span_id(request), name
        assert stage.attributes["resnet.model"] == "resnet50"
        assert request.start_time <= stage.start_time <= stage.end_time <= request.end_time, name
    [preprocess] = _named(spans, "preprocess")
    assert preprocess.attributes["resnet.image.size"] == "451x300"
    [queue], [inference] = _named(spans, "queue"), _named(spans, "inference")
    assert queue.end_time <= inference.start_time
    # The figures the response reports are the spans' own.
    timing = dict(part.split(";dur=") for part in response.headers["server-timing"].split(", "))
    assert (inference.end_time - inference.start_time) / 1e6 == pytest.approx(float(timing["inference"]), abs=0.02)


def test_the_batch_has_a_span_of_its_own_linked_to_every_request_in_it(
    model_path: Path, clean_env: None, exporter: InMemorySpanExporter
) -> None:
    # Held for company long enough that four requests sent together share one batch.
    settings = Settings(model_path=model_path, batch_timeout_ms=500, max_batch_size=8)
    with TestClient(create_app(settings, span_exporter=exporter)) as client:
        answers: list[int] = []
        senders = [
            threading.Thread(target=lambda: answers.append(client.post("/predict", files={"image": CAT}).status_code))
            for _ in range(4)
        ]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        assert answers == [200] * 4
        spans = _finished(client, exporter)

    requests = {_span_id(span): span for span in _named(spans, "POST /predict")}
    [batch] = _named(spans, "batch")
    # Under one of its requests (sampled whenever that one is), linked to all four.
    assert _parent_id(batch) in requests and batch.attributes["resnet.batch.size"] == 4
    assert sorted(format_span_id(link.context.span_id) for link in batch.links) == sorted(requests)
    # Each request's own inference span covers the batch's run and links back to it.
    inferences = _named(spans, "inference")
    assert sorted(_parent_id(span) for span in inferences) == sorted(requests)
    for inference in inferences:
        assert [link.context.span_id for link in inference.links] == [batch.context.span_id]
        assert (inference.start_time, inference.end_time) == (batch.start_time, batch.end_time)
        assert inference.attributes["resnet.batch.size"] == 4


def test_several_images_in_one_request_get_a_stage_span_each_and_one_batch_link(
    traced: TestClient, exporter: InMemorySpanExporter
) -> None:
    files = [("image", ("a.jpg", CAT)), ("image", ("b.jpg", CAT)), ("image", ("c.jpg", CAT))]
    assert traced.post("/predict", files=files, headers={"traceparent": TRACEPARENT}).status_code == 200
    spans = _trace(_finished(traced, exporter), TRACE_ID)
    assert {name: len(_named(spans, name)) for name in STAGES} == {
        "admission": 1,
        "preprocess": 3,
        "queue": 3,
        "inference": 3,
    }
    [request] = _named(spans, "POST /predict")
    batches = _named(_finished(traced, exporter), "batch")
    for batch in batches:
        assert [format_span_id(link.context.span_id) for link in batch.links] == [_span_id(request)]
    assert sum(batch.attributes["resnet.batch.size"] for batch in batches) == 3


def test_a_refused_request_is_traced_with_its_error(traced: TestClient, exporter: InMemorySpanExporter) -> None:
    response = traced.post(
        "/predict", files={"image": ("x.jpg", b"not an image")}, headers={"traceparent": TRACEPARENT}
    )
    assert response.status_code == 400
    spans = _trace(_finished(traced, exporter), TRACE_ID)
    [request] = _named(spans, "POST /predict")
    assert request.attributes["http.status_code"] == 400
    assert request.attributes["resnet.request_id"] == response.headers["x-request-id"]
    # It got a queue place, and failed in preprocessing: no model time, so no queue or inference span.
    assert [span.name for span in spans if span is not request] == ["admission"]


def test_a_request_the_sampler_leaves_out_makes_no_spans_and_a_sampled_one_is_traced_whole(
    settings: Settings, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only requests whose client sampled them (traceparent flag 01) are traced.
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_always_off")
    with TestClient(create_app(settings, span_exporter=exporter)) as client:
        assert client.post("/predict", files={"image": CAT}).status_code == 200
        assert client.post("/predict", files={"image": CAT}, headers={"traceparent": TRACEPARENT}).status_code == 200
        spans = _finished(client, exporter)
    assert {format_trace_id(span.context.trace_id) for span in spans} == {TRACE_ID}
    assert sorted(span.name for span in spans) == sorted(["POST /predict", "batch", *STAGES])


def test_probes_and_scrapes_make_no_traces(traced: TestClient, exporter: InMemorySpanExporter) -> None:
    for path in ("/health/live", "/health/ready", "/v2/health/ready", "/metrics"):
        assert traced.get(path).status_code == 200
    assert traced.get("/health").status_code == 200
    assert sorted(span.name for span in _finished(traced, exporter)) == ["GET /health"]


def test_grpc_calls_continue_the_trace_in_their_metadata(
    model_path: Path, clean_env: None, exporter: InMemorySpanExporter
) -> None:
    port = free_port()
    with threaded_server(Settings(model_path=model_path, grpc_port=port), span_exporter=exporter) as server:
        client = triton.InferenceServerClient(f"127.0.0.1:{port}")
        assert client.is_server_ready()
        client.infer(
            "resnet50",
            [image_tensor(triton, [CAT])],
            headers={"traceparent": TRACEPARENT, "x-request-id": "grpc-trace-1"},
        )
        client.close()
        tracing = runtime_of(server.app).tracing
        assert tracing is not None and tracing.provider.force_flush(10_000)
    spans = list(exporter.get_finished_spans())
    [call] = _named(spans, "/inference.GRPCInferenceService/ModelInfer")
    assert format_trace_id(call.context.trace_id) == TRACE_ID and _parent_id(call) == CLIENT_SPAN_ID
    assert call.kind is SpanKind.SERVER and call.attributes["resnet.request_id"] == "grpc-trace-1"
    for name in STAGES:
        [stage] = _named(spans, name)
        assert _parent_id(stage) == _span_id(call), name
    # Readiness probes stay out of the traces, as on HTTP.
    assert not [span for span in spans if span.name.endswith("ServerReady")]


@pytest.mark.process
def test_traces_are_off_by_default_and_the_sdk_is_not_even_imported(model_path: Path) -> None:
    script = (
        "import sys\n"
        "from fastapi.testclient import TestClient\n"
        "from resnet_service import Settings, create_app\n"
        "from resnet_service.web.runtime import runtime_of\n"
        f"app = create_app(Settings(model_path={str(model_path)!r}))\n"
        "with TestClient(app) as client:\n"
        "    assert client.post('/predict', files={'image': open(sys.argv[1], 'rb')}).status_code == 200\n"
        "assert runtime_of(app).tracing is None\n"
        "sdk = ('opentelemetry.sdk', 'opentelemetry.instrumentation', 'opentelemetry.exporter')\n"
        "loaded = sorted(name for name in sys.modules if name.startswith(sdk))\n"
        "print(loaded)\n"
    )
    image = Path(__file__).resolve().parents[1] / "data" / "cat.jpg"
    env = {"PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", script, str(image)], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_standard_variables_turn_traces_on_and_name_the_service(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector.example:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "classifier-eu")
    settings = Settings()
    assert settings.tracing and settings.otel_protocol == "http/protobuf"
    tracing = start_tracing(settings)
    assert tracing is not None
    try:
        assert tracing.provider.resource.attributes["service.name"] == "classifier-eu"
    finally:
        tracing.shutdown()
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not Settings().tracing and start_tracing(Settings()) is None


def test_a_blank_endpoint_means_no_traces(clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESNET_OTEL_ENDPOINT", " ")
    assert Settings().otel_endpoint is None and not Settings().tracing
