"""RESNET_MODEL_PROCESS in one event loop: the model host on a real Unix socket and shared memory, and the
workers' stand-in engines talking to it. The processes around them are tested in tests/e2e/test_model_process.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest

from resnet_service.core.errors import ModelNotReady, StartupError
from resnet_service.core.settings import Settings
from resnet_service.inference.engine import Engine
from resnet_service.inference.model_process.host import ModelHost
from resnet_service.inference.model_process.remote_engine import RemoteEngine
from resnet_service.inference.preprocessing import preprocess
from tests.conftest import ROOT

CAT = (ROOT / "tests/data/cat.jpg").read_bytes()


@asynccontextmanager
async def _host(tmp_path: Path) -> AsyncIterator[tuple[ModelHost, Path, asyncio.Server]]:
    host = ModelHost(Settings(intra_op_threads=1, max_batch_size=8, runtime="onnxruntime"))
    socket = tmp_path / "model.sock"
    server = await asyncio.start_unix_server(host.serve, path=str(socket))
    try:
        yield host, socket, server
    finally:
        server.close()


def _rows(count: int) -> list[np.ndarray]:
    generator = np.random.default_rng(count)
    return [generator.uniform(-120, 150, (1, 224, 224, 3)).astype(np.float32) for _ in range(count)]


def test_workers_share_one_loaded_model_and_get_what_a_local_engine_gives(tmp_path: Path, model_path: Path) -> None:
    local = Engine.load(model_path, "cpu", 1)
    expected = local.run_sync([preprocess(CAT, 10**9)] + _rows(3))
    local.close()

    async def scenario() -> None:
        async with _host(tmp_path) as (host, socket, _):
            first, second = await asyncio.gather(
                RemoteEngine.open(socket, model_path), RemoteEngine.open(socket, model_path)
            )
            assert len(host._models) == 1 and next(iter(host._models.values())).users == 2
            assert first.contract == second.contract and first.provider == "CPUExecutionProvider"
            assert first.connected and first.random_weights and first.warm_up_s > 0
            rows = [preprocess(CAT, 10**9)] + _rows(3)
            answers = await asyncio.gather(first.run(rows), second.run(rows[:2]))
            np.testing.assert_allclose(answers[0], expected, atol=1e-6)
            np.testing.assert_allclose(answers[1], expected[:2], atol=1e-6)
            # Each answer is the caller's own, not a view of the shared memory the next batch overwrites.
            kept = answers[0].copy()
            await first.run(_rows(4))
            np.testing.assert_array_equal(answers[0], kept)
            first.close()
            second.close()
            for _ in range(100):
                if not host._models:
                    break
                await asyncio.sleep(0.01)
            assert host._models == {}

    asyncio.run(scenario())


def test_a_file_the_model_process_cannot_load_fails_the_open_with_its_reason(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with _host(tmp_path) as (_, socket, _):
            with pytest.raises(StartupError, match=r"could not load .*missing.onnx: model file .* not found"):
                await RemoteEngine.open(socket, tmp_path / "missing.onnx")
        with pytest.raises(StartupError, match="does not answer"):
            await RemoteEngine.open(tmp_path / "no.sock", tmp_path / "missing.onnx")

    asyncio.run(scenario())


def test_when_the_model_process_goes_the_engine_says_so_and_refuses_runs(tmp_path: Path, model_path: Path) -> None:
    async def scenario() -> None:
        async with _host(tmp_path) as (host, socket, server):
            engine = await RemoteEngine.open(socket, model_path)
            await engine.run(_rows(1))
            server.close()
            # What a dead process leaves: the connection closes under the worker.
            engine._writer.transport.abort()
            for _ in range(100):
                if not engine.connected:
                    break
                await asyncio.sleep(0.01)
            assert not engine.connected
            with pytest.raises(ModelNotReady, match="the model process has stopped"):
                await engine.run(_rows(1))
            engine.close()

    asyncio.run(scenario())
