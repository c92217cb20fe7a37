"""Traces over OTLP from `resnet-service serve` to a receiver on a socket, over gRPC and over HTTP."""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import tritonclient.grpc as triton

from bench.otlp_receiver import ReceivedSpan, grpc_receiver, http_receiver
from tests.conftest import ROOT, free_port, start_server, stop_server
from tests.support.images import encode, image_tensor, photo

CAT = encode(photo("chelsea"), "JPEG", quality=90)
STAGES = {"admission", "preprocess", "queue", "inference"}
# Spans leave every 100 ms instead of every 5 s, so the tests wait less.
QUICK_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "100"}


def _traceparent(trace_id: str, span_id: str = "00f067aa0ba902b7") -> str:
    return f"00-{trace_id}-{span_id}-01"


def _one(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    [span] = [span for span in spans if span.name == name]
    return span


def test_http_and_grpc_requests_reach_an_otlp_grpc_receiver_with_their_stages(model_path: Path, tmp_path: Path) -> None:
    grpc_port, log = free_port(), tmp_path / "server.log"
    with grpc_receiver() as receiver:
        env = {
            "RESNET_OTEL_ENDPOINT": receiver.endpoint,
            "RESNET_GRPC_PORT": str(grpc_port),
            "RESNET_LOG_FORMAT": "json",
            **QUICK_EXPORT,
        }
        server = start_server(model_path, env=env, log=log)
        try:
            http_trace, grpc_trace = "0af7651916cd43dd8448eb211c80319c", "5b8efff798038103d269b633813fc60c"
            answer = httpx.post(
                f"{server.url}/predict",
                files={"image": ("cat.jpg", CAT)},
                headers={"traceparent": _traceparent(http_trace), "X-Request-ID": "otlp-http-1"},
            )
            assert answer.status_code == 200
            client = triton.InferenceServerClient(f"127.0.0.1:{grpc_port}")
            client.infer("resnet50", [image_tensor(triton, [CAT])], headers={"traceparent": _traceparent(grpc_trace)})
            client.close()

            request_spans = {"POST /predict"} | STAGES
            http_spans = receiver.trace(http_trace, request_spans)
            grpc_spans = receiver.trace(grpc_trace, {"/inference.GRPCInferenceService/ModelInfer"} | STAGES)
        finally:
            stop_server(server)

    request = _one(http_spans, "POST /predict")
    assert request.parent_span_id == "00f067aa0ba902b7"
    assert request.attributes["resnet.request_id"] == "otlp-http-1"
    assert request.resource["service.name"] == "resnet-service"
    # The batch, alone here, has its span under the request, linked to it and from its inference span.
    assert {span.name for span in http_spans if span.parent_span_id == request.span_id} == STAGES | {"batch"}
    batch, inference = _one(http_spans, "batch"), _one(http_spans, "inference")
    assert inference.links == [(http_trace, batch.span_id)] and batch.links == [(http_trace, request.span_id)]

    call = _one(grpc_spans, "/inference.GRPCInferenceService/ModelInfer")
    assert call.parent_span_id == "00f067aa0ba902b7"
    assert {span.name for span in grpc_spans if span.parent_span_id == call.span_id} == STAGES | {"batch"}

    # The access line names the trace, so a log line leads to its trace.
    access = [json.loads(line) for line in log.read_text().splitlines() if '"resnet_service.access"' in line]
    by_id = {record["request_id"]: record for record in access}
    assert by_id["otlp-http-1"]["trace_id"] == http_trace
    assert by_id[call.attributes["resnet.request_id"]]["trace_id"] == grpc_trace


def test_the_standard_otel_variables_send_traces_over_otlp_http(model_path: Path) -> None:
    with http_receiver() as receiver:
        env = {
            # A bare endpoint: the exporter posts to /v1/traces, which is all this receiver answers.
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_SERVICE_NAME": "classifier-eu",
            **QUICK_EXPORT,
        }
        server = start_server(model_path, env=env)
        try:
            trace_id = "6e0c63257de34c92bf9efcd03927272e"
            headers = {"traceparent": _traceparent(trace_id)}
            assert httpx.post(f"{server.url}/predict", files={"image": CAT}, headers=headers).status_code == 200
            spans = receiver.trace(trace_id, {"POST /predict"} | STAGES)
        finally:
            stop_server(server)
    assert {span.resource["service.name"] for span in spans} == {"classifier-eu"}


def test_a_receiver_that_is_down_costs_the_requests_nothing(model_path: Path, tmp_path: Path) -> None:
    # Nothing listens on this port: every export fails, in the background.
    env = {"RESNET_OTEL_ENDPOINT": f"http://127.0.0.1:{free_port()}", **QUICK_EXPORT}
    log = tmp_path / "server.log"
    server = start_server(model_path, env=env, log=log)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            answers = [http.post("/predict", files={"image": CAT}).status_code for _ in range(20)]
        assert answers == [200] * 20
        server.process.send_signal(signal.SIGTERM)
        stopping = time.monotonic()
        try:
            returncode = server.process.wait(timeout=60)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError("the server did not exit within 60 s of SIGTERM") from exc
        stopped_s = time.monotonic() - stopping
    finally:
        stop_server(server)
    assert returncode == 0
    # The spans still buffered get a few seconds to leave (tracing.FLUSH_ON_EXIT_S), not the exporter's retries.
    assert stopped_s < 8, stopped_s
    assert "the OTLP receiver took no spans within 3 s of shutdown" in log.read_text()


def _example(page: str) -> tuple[dict[str, str], str]:
    """The `... make run` line with RESNET_OTEL_ENDPOINT on ``page``, as its settings and the command."""
    [line] = [line for line in (ROOT / page).read_text().splitlines() if line.startswith("RESNET_OTEL_ENDPOINT=")]
    *assignments, make, run = line.split()
    assert (make, run) == ("make", "run"), line
    return dict(assignment.split("=", 1) for assignment in assignments), line


def _operations_curl() -> str:
    lines = (ROOT / "docs/operations.md").read_text().splitlines()
    start = lines.index(_example("docs/operations.md")[1])
    assert lines[start - 1] == "```" and lines[start + 2] == "```", "the example is one block of two lines"
    return lines[start + 1]


@pytest.mark.parametrize("page", ["docs/operations.md", "README.md"])
def test_the_pages_example_sends_its_trace(model_path: Path, tmp_path: Path, page: str) -> None:
    """The page's `make run` line, as written but for the receiver's and the server's ports, and the operations
    page's traced curl against it."""
    settings, _ = _example(page)
    assert settings.pop("RESNET_OTEL_ENDPOINT") == "http://localhost:4317"
    grpc_port = free_port()
    if settings.pop("RESNET_GRPC_PORT", None) is not None:
        settings["RESNET_GRPC_PORT"] = str(grpc_port)
    assert settings == {} or set(settings) == {"RESNET_GRPC_PORT"}, settings
    curl = _operations_curl()
    (tmp_path / "dog.jpg").write_bytes(CAT)
    with grpc_receiver() as receiver:
        env = {"RESNET_OTEL_ENDPOINT": receiver.endpoint, **settings, **QUICK_EXPORT}
        server = start_server(model_path, env=env)
        try:
            line = curl.replace("http://localhost:8000", server.url)
            answer = subprocess.run(shlex.split(line), cwd=tmp_path, capture_output=True, text=True, check=True)
            assert json.loads(answer.stdout)["success"] is True
            [trace_id] = re.findall(r"traceparent: 00-([0-9a-f]{32})-", curl)
            spans = receiver.trace(trace_id, {"POST /predict"} | STAGES)
            if "RESNET_GRPC_PORT" in settings:
                client = triton.InferenceServerClient(f"127.0.0.1:{grpc_port}")
                assert client.is_server_ready()
                client.close()
        finally:
            stop_server(server)
    assert {span.name for span in spans} == {"POST /predict", "batch"} | STAGES
