"""RESNET_WORKERS: full replicas on one port, one /metrics for all of them, a drain across all, one exit status."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import tritonclient.grpc as triton_grpc

from resnet_service.core.exit_status import STARTUP_FAILURE
from tests.conftest import free_port, serve_command, server_env, start_server, stop_server
from tests.support.images import encode, image_tensor, photo
from tests.support.load import sigterm_while_uploading

JPEG = encode(photo("chelsea"), "JPEG", quality=90)
# Each test starts two worker processes and loads the model in each: seconds apiece, so not in `make test-fast`.
pytestmark = pytest.mark.slow

WORKERS = {"RESNET_WORKERS": "2"}


def _workers(parent: int) -> list[int]:
    """The worker processes under ``parent``: the spawned children that run the service, not the helpers."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return [int(pid) for pid in children if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _uploads(url: str, count: int) -> list[int]:
    # A new connection per request, so the kernel can hand each to either worker.
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, timeout=60, trust_env=False, limits=limits) as http:
        semaphore = asyncio.Semaphore(8)

        async def one() -> int:
            async with semaphore:
                return (await http.post("/predict", files={"image": ("c.jpg", JPEG)})).status_code

        return await asyncio.gather(*(one() for _ in range(count)))


def _predict_count(url: str) -> float:
    text = httpx.get(f"{url}/metrics", trust_env=False).text
    match = re.search(r'^resnet_requests_total\{method="POST",route="/predict",status="200"\} (\S+)$', text, re.M)
    assert match, text
    return float(match.group(1))


def test_two_workers_share_the_port_and_metrics_add_up_whichever_worker_answers(slow_model_path: Path) -> None:
    server = start_server(slow_model_path, env=WORKERS)
    try:
        workers = _workers(server.process.pid)
        assert len(workers) == 2, workers
        before = {pid: _cpu_seconds(pid) for pid in workers}
        statuses = asyncio.run(_uploads(server.url, 24))
        assert statuses == [200] * 24
        used = {pid: _cpu_seconds(pid) - before[pid] for pid in workers}
        # Each image costs a worker tens of milliseconds of decoding and model time: both served some.
        assert all(seconds >= 0.05 for seconds in used.values()), used
        # Every scrape, whichever worker answers it, counts the requests of both.
        assert [_predict_count(server.url) for _ in range(6)] == [24.0] * 6
        text = httpx.get(f"{server.url}/metrics", trust_env=False).text
        assert 'resnet_model_info{name="resnet50"' in text
        assert "resnet_requests_in_flight" in text and "resnet_queue_depth" in text
        assert httpx.get(f"{server.url}/health/ready", trust_env=False).status_code == 200
    finally:
        stop_server(server)


def test_sigterm_drains_every_worker_refuses_new_connections_and_exits_0(slow_model_path: Path, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    server = start_server(slow_model_path, env={**WORKERS, "RESNET_MAX_BATCH_SIZE": "1"}, log=log)
    workers = _workers(server.process.pid)
    statuses, _ = sigterm_while_uploading(server.process, server.url, JPEG, lambda: time.sleep(0.3), settle_s=1.0)
    assert statuses == [200] * 8
    assert server.process.wait(timeout=30) == 0
    assert all(not Path(f"/proc/{pid}").exists() for pid in workers)
    assert "Traceback" not in log.read_text()


def test_workers_that_cannot_load_the_model_stop_the_service_with_exit_3(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.onnx"
    command = serve_command(missing, free_port())
    result = subprocess.run(command, env=server_env(WORKERS), capture_output=True, text=True, timeout=120)
    assert result.returncode == STARTUP_FAILURE
    assert f"cannot start: model file {missing} not found: run `make model`" in result.stdout


def test_every_worker_serves_grpc_on_the_one_port_and_the_metrics_add_up(model_path: Path, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "server.log"
    server = start_server(model_path, env={**WORKERS, "RESNET_GRPC_PORT": str(port)}, log=log)
    try:
        images = image_tensor(triton_grpc, [JPEG])
        for _ in range(12):
            # A new channel per call, so the kernel can hand each to either worker.
            client = triton_grpc.InferenceServerClient(f"127.0.0.1:{port}")
            assert client.infer("resnet50", [images]).as_numpy("probabilities").shape == (1, 1000)
            client.close()
        metrics = httpx.get(f"{server.url}/metrics", trust_env=False).text
    finally:
        stop_server(server)
    series = 'resnet_requests_total{method="GRPC",route="/inference.GRPCInferenceService/ModelInfer",status="200"}'
    assert f"{series} 12.0" in metrics, metrics
    # Each worker bound the port itself (grpcio sets SO_REUSEPORT).
    assert log.read_text().count(f"gRPC (Open Inference Protocol v2) on 127.0.0.1:{port}") == 2
