"""Starting and stopping as an orchestrator does: clear startup errors, and a SIGTERM that drains, then exits 0."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from resnet_service import Settings, create_app
from resnet_service.core.exit_status import STARTUP_FAILURE
from resnet_service.process.server import DrainingServer
from tests.conftest import free_port, serve_command, server_env, start_server
from tests.support.images import encode, photo
from tests.support.load import sigterm_while_uploading

JPEG = encode(photo("chelsea"), "JPEG", quality=90)


def test_sigterm_turns_readiness_503_at_once_while_requests_already_in_are_still_served(settings: Settings) -> None:
    app = create_app(settings)
    with TestClient(app) as client:
        assert client.get("/health/ready").status_code == 200
        server = DrainingServer(uvicorn.Config(app), app)
        server.handle_exit(signal.SIGTERM, None)
        assert server.should_exit
        assert client.get("/health/ready").status_code == 503
        assert client.get("/health/ready").json() == {"status": "stopping"}
        assert client.post("/predict", files={"image": ("c.jpg", JPEG)}).status_code == 200


def test_sigterm_drains_every_queued_upload_refuses_new_connections_and_exits_0(
    slow_model_path: Path, tmp_path: Path, report_figure: Callable[[str], None]
) -> None:
    log = tmp_path / "server.log"
    # One image per batch, so eight uploads queue up behind each other for a few hundred milliseconds.
    server = start_server(slow_model_path, env={"RESNET_MAX_BATCH_SIZE": "1"}, log=log)
    waiting = 0

    def queued_up() -> None:
        nonlocal waiting
        deadline = time.monotonic() + 10
        while (waiting := httpx.get(f"{server.url}/health", trust_env=False).json()["waiting"]) < 3:
            assert time.monotonic() < deadline, "the uploads never queued up"

    statuses, signalled = sigterm_while_uploading(server.process, server.url, JPEG, queued_up, settle_s=0.3)
    assert statuses == [200] * 8
    assert server.process.wait(timeout=30) == 0
    report_figure(
        f"SIGTERM with {waiting} of 8 uploads waiting: {statuses.count(200)} answered 200, "
        f"exit 0 {time.monotonic() - signalled:.2f} s after the signal"
    )
    output = log.read_text()
    assert "SIGTERM: readiness is now 503" in output, output


def _serve(model: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = serve_command(model, free_port())
    result = subprocess.run(command, env=server_env(env), capture_output=True, text=True, timeout=60)
    # Logs go to stdout, the startup failure's included; stderr is left to Python itself.
    assert "cannot start" not in result.stderr
    return result


def test_a_missing_model_file_stops_startup_with_a_message_that_names_the_file_and_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.onnx"
    result = _serve(missing, {})
    assert result.returncode == STARTUP_FAILURE
    assert f"cannot start: model file {missing} not found: run `make model`" in result.stdout


def test_a_corrupt_model_file_stops_startup_with_a_message_that_names_the_file_and_the_fix(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07not a protobuf" * 100)
    result = _serve(corrupt, {})
    assert result.returncode == STARTUP_FAILURE
    assert f"cannot start: model file {corrupt} could not be loaded" in result.stdout
    assert "re-export it with `make model`" in result.stdout


def test_device_cuda_without_cuda_stops_startup(model_path: Path) -> None:
    result = _serve(model_path, {"RESNET_DEVICE": "cuda"})
    assert result.returncode == STARTUP_FAILURE
    assert "cannot start: RESNET_DEVICE=cuda" in result.stdout and "RESNET_DEVICE=cpu" in result.stdout


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_a_server_stopped_while_idle_exits_0_without_a_traceback(
    model_path: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    log = tmp_path / "server.log"
    server = start_server(model_path, log=log)
    server.process.send_signal(sig)
    assert server.process.wait(timeout=30) == 0
    assert "Traceback" not in log.read_text()
