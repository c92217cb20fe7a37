"""RESNET_MODEL_PROCESS with real processes: two workers, one model process, and what happens when one dies."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from pathlib import Path

import httpx
import pytest

from resnet_service.core.exit_status import MODEL_PROCESS_LOST
from tests.conftest import start_server, stop_server
from tests.e2e.test_workers import _uploads, _workers
from tests.support.runtimes import AUTO_ON_CPU, PROVIDERS

# Each test starts three processes: seconds apiece, so not in `make test-fast`.
pytestmark = pytest.mark.slow

SHARED = {"RESNET_WORKERS": "2", "RESNET_MODEL_PROCESS": "true"}


def _model_process_pid(log: Path) -> int:
    match = re.search(r"model process: listening on \S+ \(pid (\d+)\)", log.read_text())
    assert match, log.read_text()
    return int(match.group(1))


def test_two_workers_serve_from_one_model_copy_and_stop_cleanly(model_path: Path, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    server = start_server(model_path, env=SHARED, log=log)
    try:
        statuses = asyncio.run(_uploads(server.url, 24))
        assert statuses == [200] * 24
        health = httpx.get(f"{server.url}/health", trust_env=False).json()
        assert health["status"] == "ready" and health["model"]["provider"] == PROVIDERS[AUTO_ON_CPU]
        text = log.read_text()
        # Both workers opened the model, and it was loaded once.
        assert text.count("model process: loaded") == 1, text
        assert len(_workers(server.process.pid)) == 3  # the model process and the two workers
    finally:
        stop_server(server)
    assert server.process.returncode == 0
    assert "model process: stopped" in log.read_text()


def test_a_killed_worker_is_replaced_and_reopens_the_model(model_path: Path, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    server = start_server(model_path, env=SHARED, log=log)
    try:
        host = _model_process_pid(log)
        worker = next(pid for pid in _workers(server.process.pid) if pid != host)
        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while worker in _workers(server.process.pid) or len(_workers(server.process.pid)) < 3:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        statuses: list[int] = []
        while time.monotonic() < deadline and statuses[-8:] != [200] * 8:
            statuses += asyncio.run(_uploads(server.url, 8))
        assert statuses[-8:] == [200] * 8, log.read_text()
        assert log.read_text().count("model process: loaded") == 1
    finally:
        stop_server(server)


def test_a_dead_model_process_turns_readiness_off_and_stops_the_service_with_exit_4(
    model_path: Path, tmp_path: Path
) -> None:
    log = tmp_path / "serve.log"
    server = start_server(model_path, env=SHARED, log=log)
    try:
        os.kill(_model_process_pid(log), signal.SIGKILL)
        answers = set()
        deadline = time.monotonic() + 30
        while server.process.poll() is None and time.monotonic() < deadline:
            try:
                response = httpx.post(
                    f"{server.url}/predict", files={"image": ("c.jpg", b"x")}, trust_env=False, timeout=5
                )
            except httpx.TransportError:
                continue
            # Never an HTML page or a 500: a refusal that says why, while the workers stop.
            if response.status_code != 400:
                answers.add((response.status_code, response.json()["error"]["code"]))
        assert server.process.wait(timeout=30) == MODEL_PROCESS_LOST
        assert answers <= {(503, "model_not_ready")}, answers
        assert "the model process exited" in log.read_text()
    finally:
        if server.process.poll() is None:
            stop_server(server)
