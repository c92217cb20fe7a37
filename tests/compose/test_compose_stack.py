"""docker-compose.yml as users run it: the images built from the Dockerfile, the containers healthy by their own
HEALTHCHECKs, and every request through the nginx container. The fault tests come last: they stop and kill the API.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import tritonclient.grpc as triton_grpc
import yaml

from resnet_service import Settings
from resnet_service.process.local import classify_files
from tests.support.compose_stack import API_PORT, NGINX_GRPC_PORT, ComposeStack
from tests.support.errors import assert_nginx_error
from tests.support.images import encode, image_tensor, photo
from tests.support.raw_http import headers_only_upload

pytestmark = pytest.mark.compose

JPEG = encode(photo("chelsea"), "JPEG", quality=90)
SERVICES = ("api", "nginx")
RUNTIME_UID = 10001


@pytest.fixture
def http(nginx_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=nginx_url, timeout=60, trust_env=False) as client:
        yield client


def _exec(stack: ComposeStack, service: str, *command: str) -> tuple[int, str]:
    result = stack.engine.run("exec", stack.container(service), *command, timeout=120, check=False)
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize("service", SERVICES)
def test_each_container_is_healthy_by_the_healthcheck_the_compose_file_gives_it(
    stack: ComposeStack, service: str
) -> None:
    rendered = yaml.safe_load(stack.file.read_text())["services"][service]
    container = stack.inspect(service)
    assert container["State"]["Health"]["Status"] == "healthy"
    assert container["Config"]["Healthcheck"]["Test"] == rendered["healthcheck"]["test"]
    assert container["HostConfig"]["NetworkMode"] == "host"
    assert container["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"


def test_the_runtime_image_runs_as_an_unprivileged_user_without_tensorflow(
    stack: ComposeStack, report_figure: Callable[[str], None]
) -> None:
    image = json.loads(stack.engine.run("image", "inspect", "resnet-service:latest").stdout)[0]
    assert image["Config"]["User"] == str(RUNTIME_UID)
    assert _exec(stack, "api", "id", "-u") == (0, f"{RUNTIME_UID}\n")
    status, output = _exec(stack, "api", "python", "-c", "import tensorflow")
    assert status == 1 and "ModuleNotFoundError: No module named 'tensorflow'" in output, output
    status, output = _exec(stack, "api", "python", "-c", "import onnxruntime, openvino, resnet_service")
    assert status == 0, output
    report_figure(f"runtime image resnet-service:latest: {image['Size'] / 1e6:.0f} MB")


def test_predict_through_nginx_answers_the_seed_json_with_the_models_own_probabilities(
    stack: ComposeStack, http: httpx.Client, tmp_path: Path, clean_env: None
) -> None:
    # The CPU image carries OpenVINO, so RESNET_RUNTIME=auto runs the model on it.
    model_health = http.get("/health").json()["model"]
    assert (model_health["runtime"], model_health["precision"]) == ("openvino", "fp32")
    response = http.post("/predict", files={"image": ("cat.jpg", JPEG)})
    assert response.status_code == 200, response.text
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])
    body = response.json()
    assert list(body) == ["predictions", "success"] and body["success"] is True
    assert len(body["predictions"]) == 5

    # The same file outside the container, through the installed package: the answer is the model's, not a stub's.
    model = tmp_path / "resnet50.onnx"
    stack.engine.run("cp", f"{stack.container('api')}:/models/resnet50.onnx", str(model))
    photo_path = tmp_path / "cat.jpg"
    photo_path.write_bytes(JPEG)
    out, err = io.StringIO(), io.StringIO()
    assert classify_files([photo_path], Settings(model_path=model), out, err) == 0, err.getvalue()
    local = json.loads(out.getvalue())
    assert [p["label"] for p in body["predictions"]] == [p["label"] for p in local["predictions"]]
    for served, computed in zip(body["predictions"], local["predictions"], strict=True):
        assert served["probability"] == pytest.approx(computed["probability"], abs=1e-5)


def test_an_oversize_upload_gets_nginxs_json_413_before_reaching_the_api(nginx_url: str) -> None:
    response = headers_only_upload(nginx_url, 40 * 1000 * 1000)
    assert_nginx_error(response, 413, "payload_too_large")


def test_the_docs_page_and_every_asset_it_loads_come_from_the_stack_itself(http: httpx.Client) -> None:
    page = http.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    urls = re.findall(r"(?:src|href)=\"([^\"]+)\"", page.text)
    assert urls and [url for url in urls if "//" in url] == []
    for url in [*urls, "/openapi.json"]:
        asset = http.get(url)
        assert asset.status_code == 200 and len(asset.content) > 1000, url


def test_v2_model_infer_over_grpc_through_nginx() -> None:
    client = triton_grpc.InferenceServerClient(f"127.0.0.1:{NGINX_GRPC_PORT}")
    try:
        assert client.is_server_ready() and client.is_model_ready("resnet50")
        probabilities = client.infer("resnet50", [image_tensor(triton_grpc, [JPEG])]).as_numpy("probabilities")
    finally:
        client.close()
    assert probabilities.shape == (1, 1000) and abs(float(probabilities.sum()) - 1.0) < 1e-3


def test_metrics_through_nginx_count_the_uploads(http: httpx.Client) -> None:
    assert http.post("/predict", files={"image": ("cat.jpg", JPEG)}).status_code == 200
    metrics = http.get("/metrics")
    assert metrics.status_code == 200
    assert 'resnet_requests_total{method="POST",route="/predict",status="200"}' in metrics.text


def _upload_four(url: str) -> int:
    files = [("image", (f"cat-{n}.jpg", JPEG)) for n in range(4)]
    return httpx.post(f"{url}/predict", files=files, timeout=120, trust_env=False).status_code


def test_compose_stop_drains_eight_uploads_in_flight_and_the_api_exits_0(
    stack: ComposeStack, nginx_url: str, report_figure: Callable[[str], None]
) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        uploads = [pool.submit(_upload_four, nginx_url) for _ in range(8)]
        deadline = time.monotonic() + 30
        while (waiting := httpx.get(f"{nginx_url}/health", trust_env=False).json()["waiting"]) < 3:
            assert time.monotonic() < deadline, "the uploads never queued up"
        unfinished = sum(not upload.done() for upload in uploads)
        started = time.monotonic()
        stack.compose("stop", "api", timeout=90)
        stopped_s = time.monotonic() - started
        statuses = [upload.result(timeout=60) for upload in uploads]
    assert statuses == [200] * 8
    state = stack.inspect("api")["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 0, state
    logs = stack.compose("logs", "--no-color", "api", timeout=60).stdout
    assert "SIGTERM: readiness is now 503" in logs
    report_figure(
        f"compose stop api with {unfinished} of 8 uploads (4 images each) unfinished, {waiting} waiting: "
        f"{statuses.count(200)} answered 200, the container exited 0 after {stopped_s:.1f} s"
    )
    stack.compose("start", "api", timeout=60)
    report_figure(f"api healthy again {stack.wait_healthy('api', timeout=120):.1f} s after compose start")


def _answer(client: httpx.Client) -> tuple[int, str, str]:
    """GET /health/ready through nginx: status, content type and the error code (empty for a 200)."""
    response = client.get("/health/ready")
    if response.status_code == 200:
        return 200, response.headers["content-type"], ""
    if response.headers["content-type"] != "application/json":
        return response.status_code, response.headers["content-type"], ""
    body = response.json()
    # nginx's own answers carry an error code; the API's readiness while it loads, its status.
    return response.status_code, "application/json", body["error"]["code"] if "error" in body else body["status"]


def _model_loads(stack: ComposeStack) -> int:
    """How many times the API container has loaded its model, by its own log."""
    return stack.compose("logs", "--no-color", "api", timeout=60).stdout.count("loaded and warmed up in")


def test_a_killed_api_is_restarted_by_docker_while_nginx_answers_json_instead(
    stack: ComposeStack, nginx_url: str, report_figure: Callable[[str], None]
) -> None:
    before, loads = stack.inspect("api"), _model_loads(stack)
    assert before["State"]["Health"]["Status"] == "healthy"
    os.kill(before["State"]["Pid"], signal.SIGKILL)
    killed = time.monotonic()
    answers: list[tuple[int, str, str]] = []
    with httpx.Client(base_url=nginx_url, timeout=10, trust_env=False) as client:
        while not answers or answers[-1][0] != 200 or stack.inspect("api")["RestartCount"] == before["RestartCount"]:
            assert time.monotonic() - killed < 120, f"no recovery within 120 s; answers {sorted(set(answers))}"
            answers.append(_answer(client))
            time.sleep(0.1)
    ready_s = time.monotonic() - killed
    failures = [answer for answer in answers if answer[0] != 200]
    assert failures, "nginx never saw the API gone"
    assert {status for status, _, _ in failures} <= {502, 503}, sorted(set(failures))
    assert all(content_type == "application/json" and detail for _, content_type, detail in failures), failures
    healthy_s = stack.wait_healthy("api", timeout=120) + ready_s
    # The same container again, its process started afresh: not a second container beside it.
    assert stack.inspect("api")["Id"] == before["Id"] and _model_loads(stack) == loads + 1
    assert stack.health("nginx") == "healthy"
    report_figure(
        f"SIGKILL of the API: {len(failures)} JSON answers {sorted({s for s, _, _ in failures})} from nginx meanwhile, "
        f"ready again through nginx after {ready_s:.1f} s, healthy by its HEALTHCHECK after {healthy_s:.1f} s"
    )
    running = stack.compose("ps", "--status", "running", "--quiet", timeout=30).stdout.split()
    assert len(running) == len(SERVICES), running
    assert httpx.get(f"http://127.0.0.1:{API_PORT}/health/ready", trust_env=False).status_code == 200
