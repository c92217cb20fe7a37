"""A worker's app on a model process (here a host in a thread of the test): it serves through it, and when the
model process goes, readiness says so and predictions are refused with a 503, not a 500."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from resnet_service.app import create_app
from resnet_service.core.settings import Settings
from resnet_service.inference.model_process.host import ModelHost
from tests.conftest import ROOT

CAT = (ROOT / "tests/data/cat.jpg").read_bytes()


class _HostThread:
    """The model host on its own event loop, as the model process runs it, until ``stop()``."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listening = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()
        assert self._listening.wait(10)

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        host = ModelHost(Settings(intra_op_threads=1, runtime="onnxruntime"))
        async with await asyncio.start_unix_server(host.serve, path=str(self.socket)):
            self._listening.set()
            await self._stop.wait()
        # Leaving asyncio.run cancels the connections' tasks, which close them: what a dead process does.

    def stop(self) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture
def host(tmp_path: Path) -> Iterator[_HostThread]:
    running = _HostThread(tmp_path / "model.sock")
    yield running
    if running._thread.is_alive():
        running.stop()


def test_the_app_serves_through_the_model_process_and_reports_when_it_is_gone(
    host: _HostThread, model_path: Path, clean_env: None
) -> None:
    settings = Settings(model_path=model_path, model_process_socket=host.socket)
    with TestClient(create_app(settings)) as client:
        assert client.get("/health/ready").json() == {"status": "ready"}
        answer = client.post("/predict", files={"image": ("cat.jpg", CAT)})
        assert answer.status_code == 200 and len(answer.json()["predictions"]) == 5
        host.stop()
        for _ in range(100):
            if client.get("/health/ready").status_code == 503:
                break
            time.sleep(0.02)
        ready = client.get("/health/ready")
        assert ready.status_code == 503 and ready.json() == {"status": "unavailable"}
        assert client.get("/health").json()["status"] == "unavailable"
        refused = client.post("/predict", files={"image": ("cat.jpg", CAT)})
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "model_not_ready"
        assert "the model process has stopped" in refused.json()["error"]["message"]
