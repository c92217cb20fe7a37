"""`make stack` for real: nginx from the system in front of uvicorn, driven over HTTP through nginx."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from bench.otlp_receiver import SpanStore, grpc_receiver
from resnet_service.process.probe import NotReady, wait_until_ready
from tests.conftest import ROOT, free_port
from tests.support.errors import assert_error, assert_nginx_error
from tests.support.images import encode, image_tensor, photo
from tests.support.load import between_unloaded, run_load
from tests.support.raw_http import headers_only_upload

pytestmark = pytest.mark.stack

JPEG = encode(photo("chelsea"), "JPEG", quality=90)
FLOOD_SOURCES = tuple(f"127.0.0.{host}" for host in range(2, 10))


@dataclass
class Stack:
    url: str
    api_url: str
    run_dir: Path
    process: subprocess.Popen[str]
    output: Path
    grpc_address: str  # nginx's gRPC port, host:port


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def start_stack(model_path: Path, run_dir: Path, env: dict[str, str] | None = None) -> Stack:
    """`make stack` on free ports, returned once nginx answers /health/ready with 200."""
    output = run_dir / "make-stack.out"
    api_port, nginx_port, grpc_port, nginx_grpc_port = free_port(), free_port(), free_port(), free_port()
    command = [
        "make",
        "--no-print-directory",
        "stack",
        f"API_PORT={api_port}",
        f"NGINX_PORT={nginx_port}",
        f"GRPC_PORT={grpc_port}",
        f"NGINX_GRPC_PORT={nginx_grpc_port}",
        f"RUN_DIR={run_dir}",
        f"MODEL={model_path}",
        f"VENV={sys.prefix}",  # the interpreter running the tests, already installed
    ]
    with output.open("w") as sink:
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})}
        )
    urls = f"http://127.0.0.1:{nginx_port}", f"http://127.0.0.1:{api_port}"
    stack = Stack(*urls, run_dir, process, output, f"127.0.0.1:{nginx_grpc_port}")
    try:
        wait_until_ready(f"{stack.url}/health/ready", process, timeout=180)
    except NotReady as exc:
        raise AssertionError(f"make stack, through nginx: {exc}\n{output.read_text()}") from exc
    return stack


def stop_stack(stack: Stack) -> None:
    if stack.process.poll() is None:
        stack.process.terminate()
        stack.process.wait(timeout=60)


@pytest.fixture(scope="module")
def receiver() -> Iterator[SpanStore]:
    with grpc_receiver() as store:
        yield store


@pytest.fixture(scope="module")
def stack(model_path: Path, tmp_path_factory: pytest.TempPathFactory, receiver: SpanStore) -> Iterator[Stack]:
    # Traced, as a deployment with a collector is: every test below runs with traces on.
    traces = {"RESNET_OTEL_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    running = start_stack(model_path, tmp_path_factory.mktemp("stack-run"), env=traces)
    yield running
    stop_stack(running)


@pytest.fixture
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url, timeout=30, trust_env=False) as client:
        yield client


def test_upload_through_nginx_answers_the_seed_json(http: httpx.Client) -> None:
    response = http.post("/predict", files={"image": ("cat.jpg", encode(photo("chelsea"), "JPEG"))})
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["predictions", "success"] and len(body["predictions"]) == 5


def test_tritonclient_binary_inference_and_metrics_work_through_nginx(stack: Stack, http: httpx.Client) -> None:
    client = triton.InferenceServerClient(stack.url.removeprefix("http://"))
    try:
        jpeg = encode(photo("chelsea"), "JPEG")
        images = image_tensor(triton, [jpeg, jpeg])
        probabilities = client.infer("resnet50", [images]).as_numpy("probabilities")
    finally:
        client.close()
    assert probabilities.shape == (2, 1000) and abs(float(probabilities.sum()) - 2.0) < 1e-3
    metrics = http.get("/metrics")
    assert metrics.status_code == 200
    assert 'resnet_requests_total{method="POST",route="/v2/models/{name}/infer",status="200"}' in metrics.text


def test_the_clients_traceparent_passes_through_nginx_over_http_and_grpc(
    stack: Stack, http: httpx.Client, receiver: SpanStore
) -> None:
    http_trace, grpc_trace, client_span = (
        "8a3c60f7d188f8fa79d48a391a778fa6",
        "1f2e3d4c5b6a79881f2e3d4c5b6a7988",
        "b7ad6b7169203331",
    )
    response = http.post(
        "/predict", files={"image": ("cat.jpg", JPEG)}, headers={"traceparent": f"00-{http_trace}-{client_span}-01"}
    )
    assert response.status_code == 200
    client = triton_grpc.InferenceServerClient(stack.grpc_address)
    client.infer(
        "resnet50", [image_tensor(triton_grpc, [JPEG])], headers={"traceparent": f"00-{grpc_trace}-{client_span}-01"}
    )
    client.close()

    stages = {"admission", "preprocess", "queue", "inference"}
    [request] = [s for s in receiver.trace(http_trace, {"POST /predict"} | stages) if s.name == "POST /predict"]
    assert request.parent_span_id == client_span
    # The id nginx gave the request (and returned) is the one on its span.
    assert request.attributes["resnet.request_id"] == response.headers["x-request-id"]
    method = "/inference.GRPCInferenceService/ModelInfer"
    [call] = [s for s in receiver.trace(grpc_trace, {method} | stages) if s.name == method]
    assert call.parent_span_id == client_span


def test_tritonclient_grpc_inference_works_through_nginx(stack: Stack) -> None:
    client = triton_grpc.InferenceServerClient(stack.grpc_address)
    assert client.is_server_ready() and client.is_model_ready("resnet50")
    images = image_tensor(triton_grpc, [JPEG])
    top3 = triton_grpc.InferRequestedOutput("probabilities", class_count=3)
    (row,) = client.infer("resnet50", [images], outputs=[top3]).as_numpy("probabilities")
    assert len(row) == 3
    with pytest.raises(InferenceServerException) as raised:
        client.infer("resnet18", [images])
    assert raised.value.status() == "StatusCode.NOT_FOUND"
    client.close()
    # nginx logged the calls as the HTTP/2 requests they are.
    assert "/inference.GRPCInferenceService/ModelInfer" in (stack.run_dir / "nginx.log").read_text()


def test_server_header_has_no_version(http: httpx.Client) -> None:
    assert http.get("/health/live").headers["server"] == "nginx"


def test_request_id_is_generated_when_absent_kept_when_given_and_sent_once(http: httpx.Client) -> None:
    generated = http.get("/health/live").headers.get_list("x-request-id")
    assert len(generated) == 1 and re.fullmatch(r"[0-9a-f]{32}", generated[0])
    assert http.get("/health/live", headers={"X-Request-ID": "trace-42"}).headers.get_list("x-request-id") == [
        "trace-42"
    ]
    # An id with characters that could break a header, a log line or a JSON body is replaced.
    replaced = http.get("/health/live", headers={"X-Request-ID": 'x"} <b>'}).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", replaced)


def test_an_api_error_through_nginx_carries_the_same_request_id_in_header_and_body(http: httpx.Client) -> None:
    response = http.post("/predict", files={"image": ("e.jpg", b"")}, headers={"X-Request-ID": "trace-43"})
    assert_error(response, 400, "invalid_image")
    assert response.json()["error"]["request_id"] == "trace-43"


def test_huge_request_headers_get_a_json_400_from_nginx(http: httpx.Client) -> None:
    response = http.get("/health/live", headers={"X-Padding": "x" * 64 * 1024})
    assert response.status_code == 400 and response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == "bad_request"


def test_one_client_over_its_rate_is_slowed_down_by_nginx_and_refused_with_json_429s_past_its_burst(
    model_path: Path, tmp_path: Path
) -> None:
    limited = start_stack(model_path, tmp_path, env={"NGINX_RATE_LIMIT": "4r/s", "NGINX_RATE_BURST": "2"})
    try:
        with httpx.Client(base_url=limited.url, timeout=10, trust_env=False) as client:
            # One request at a time never passes the burst: each waits for its turn at 4 a second, none is refused.
            began = time.monotonic()
            sequential = [client.get("/health/live").status_code for _ in range(6)]
            slowed_s = time.monotonic() - began
        assert sequential == [200] * 6 and slowed_s >= 1.0, (sequential, slowed_s)
        responses = asyncio.run(_concurrent_gets(limited.url, 10))
        statuses = [response.status_code for response in responses]
        # One at the rate and two waiting in the burst are served; the other seven are refused at once.
        assert statuses.count(200) >= 1 and statuses.count(429) >= 5, statuses
        refused = next(response for response in responses if response.status_code == 429)
        assert refused.headers["content-type"] == "application/json" and refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "too_many_requests"
        assert refused.json()["error"]["request_id"] == refused.headers["x-request-id"]
    finally:
        stop_stack(limited)


async def _concurrent_gets(url: str, count: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=10, trust_env=False) as http:
        return await asyncio.gather(*(http.get("/health/live") for _ in range(count)))


def test_a_flood_through_nginx_that_ignores_retry_after_cannot_starve_the_model(
    slow_model_path: Path, tmp_path: Path, report_figure: Callable[[str], None]
) -> None:
    flooded = start_stack(slow_model_path, tmp_path, env={"RESNET_MAX_QUEUE": "4", "RESNET_MAX_BATCH_SIZE": "4"})
    try:
        floods = {
            source: lambda sources=sources: run_load(
                flooded.url, JPEG, clients=64, seconds=10, honour_retry_after=False, sources=sources
            )
            for source, sources in (("one address", ()), ("8 addresses", FLOOD_SOURCES))
        }
        for source, run in between_unloaded(flooded.url, JPEG, floods).items():
            flood = run.load
            assert flood.errors == [], (source, flood.errors[:5])
            # nginx delays a client over its rate rather than refusing it, so the API's own 503s are what is left.
            assert set(flood.statuses) <= {200, 429, 503}, (source, flood.summary())
            assert flood.statuses[429] + flood.statuses[503] > 0, ("the flood never filled the queue", flood.summary())
            assert flood.goodput >= 0.8 * run.unloaded_goodput, (source, run.summary())
            report_figure(f"flood through nginx from {source} (64 clients ignoring Retry-After): {flood.summary()}")
            report_figure(f"goodput under the flood from {source} = {run.ratio:.2f} × unloaded")
    finally:
        stop_stack(flooded)


def test_forty_megabyte_upload_gets_a_json_413_from_nginx(stack: Stack) -> None:
    # Only the headers are sent: nginx refuses from Content-Length, before any body byte and before the API.
    response = headers_only_upload(stack.url, 40 * 1000 * 1000)
    assert_nginx_error(response, 413, "payload_too_large")


def test_nginx_answers_json_502_when_the_api_is_down_and_the_stack_stops_cleanly(stack: Stack) -> None:
    api_pid = int((stack.run_dir / "api.pid").read_text())
    nginx_pid = int((stack.run_dir / "nginx.pid").read_text())
    os.kill(api_pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _alive(api_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    with httpx.Client(base_url=stack.url, timeout=10, trust_env=False) as client:
        response = client.get("/health")
    assert response.status_code == 502
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == "bad_gateway" and response.json()["success"] is False
    assert response.headers["x-request-id"]

    stack.process.send_signal(signal.SIGTERM)  # make passes SIGTERM on to scripts/stack.py and waits for it
    stack.process.wait(timeout=60)
    output = stack.output.read_text()
    assert "stack: the API exited" in output and output.rstrip().endswith("stack: stopped"), output
    assert not _alive(nginx_pid)
