"""The model process: every model once, one batcher each, fed by all the workers' batches.

A worker's model opens a connection and names its file. The first connection for a file loads and warms it up;
later ones (other workers, or a worker that was replaced) share that engine, and the last one to close frees it.
Each connection gets its own shared memory: room for one batch of rows and its probabilities. The worker writes a
batch there and sends its row count; every row joins this process's batcher, where rows from all the workers form
the model's batches; the probabilities go back into the same memory, and the reply names the batch it answers.

Bounds and deadlines stay with the workers: each holds its queue (RESNET_MAX_QUEUE) and its requests' deadlines,
and has at most one batch here at a time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass, field
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path
from typing import Any

import numpy as np

from resnet_service.core.errors import ServiceError, StartupError
from resnet_service.core.settings import Settings
from resnet_service.inference.batcher import DynamicBatcher
from resnet_service.inference.engine import Engine, load_engine
from resnet_service.inference.model_contract import ContractDefaults
from resnet_service.inference.model_process.wire import batch_arrays, batch_bytes, read_message, write_message

__all__ = ["ModelHost", "describe", "run_host"]

logger = logging.getLogger(__name__)


@dataclass
class _Hosted:
    engine: Engine
    batcher: DynamicBatcher
    users: int = 0


def describe(engine: Engine) -> dict[str, Any]:
    """What a worker needs to stand in for ``engine``: its contract's source and its provenance."""
    return {
        "provider": engine.provider,
        "runtime": engine.runtime,
        "precision": engine.precision,
        "input_name": engine.input_name,
        "input_shape": engine.input_shape,
        "input_type": np.dtype(engine.contract.input.dtype).name,
        "output_name": engine.output_name,
        "classes": len(engine.contract.labels.names),
        "metadata": engine.metadata,
        "batch_sizes": list(engine.batch_sizes),
        "warm_up_s": engine.warm_up_s,
        "cuda_graphs": engine.cuda_graphs,
    }


@dataclass
class ModelHost:
    settings: Settings
    _models: dict[tuple[str, str | None, str | None], _Hosted] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def _acquire(self, key: tuple[str, str | None, str | None]) -> _Hosted:
        async with self._lock:
            hosted = self._models.get(key)
            if hosted is None:
                path, preprocessing, labels = key
                defaults = ContractDefaults(preprocessing, labels)  # type: ignore[arg-type]
                engine = await asyncio.to_thread(load_engine, Path(path), self.settings, defaults)
                try:
                    await engine.warm_up()
                except BaseException:
                    await asyncio.to_thread(engine.close)
                    raise
                batcher = DynamicBatcher(
                    engine.run,
                    self.settings.max_batch_size,
                    self.settings.batch_timeout_ms,
                    max_in_flight=engine.in_flight,
                )
                batcher.start()
                hosted = self._models[key] = _Hosted(engine, batcher)
                logger.info(
                    "model process: loaded %s on %s, warmed up in %.2f s", path, engine.provider, engine.warm_up_s
                )
            hosted.users += 1
            return hosted

    async def _release(self, key: tuple[str, str | None, str | None]) -> None:
        async with self._lock:
            hosted = self._models[key]
            hosted.users -= 1
            if hosted.users == 0:
                del self._models[key]
                await hosted.batcher.stop()
                await asyncio.to_thread(hosted.engine.close)
                logger.info("model process: closed %s, which no worker uses now", key[0])

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One worker's one model, from its opening message until the worker closes the connection."""
        try:
            opening = await read_message(reader)
            if opening is None:
                return
            key = (str(opening["path"]), opening.get("preprocessing"), opening.get("labels"))
            try:
                hosted = await self._acquire(key)
            except StartupError as exc:
                write_message(writer, {"error": str(exc)})
                await writer.drain()
                return
            try:
                await self._run_batches(hosted, reader, writer)
            finally:
                await self._release(key)
        finally:
            writer.close()

    async def _run_batches(self, hosted: _Hosted, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        engine = hosted.engine
        spec = engine.contract.input
        classes = len(engine.contract.labels.names)
        capacity = self.settings.max_batch_size
        memory = SharedMemory(create=True, size=batch_bytes(capacity, spec, classes))
        inputs, outputs = batch_arrays(memory.buf, capacity, spec, classes)
        try:
            write_message(writer, {"engine": describe(engine), "shared_memory": memory.name, "capacity": capacity})
            await writer.drain()
            while (message := await read_message(reader)) is not None:
                count = int(message["rows"])
                try:
                    # Each row is its own request here, so rows from every worker share the model's batches.
                    computed = await asyncio.gather(*(hosted.batcher.submit(inputs[i : i + 1]) for i in range(count)))
                except ServiceError as exc:
                    write_message(writer, {"seq": message["seq"], "error": exc.message})
                else:
                    outputs[:count] = np.stack([result.row for result in computed])
                    write_message(writer, {"seq": message["seq"]})
                await writer.drain()
        finally:
            # The arrays are views of the memory: drop them before closing it.
            del inputs, outputs
            memory.close()
            memory.unlink()


async def _serve(settings: Settings, socket_path: Path) -> None:
    host = ModelHost(settings)
    server = await asyncio.start_unix_server(host.serve, path=str(socket_path))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    logger.info("model process: listening on %s (pid %d)", socket_path, os.getpid())
    async with server:
        await stop.wait()
    logger.info("model process: stopped")


def run_host(settings: Settings, socket_path: Path, log_config: dict[str, Any]) -> None:
    """The model process's main: serve on ``socket_path`` until SIGTERM."""
    import logging.config

    logging.config.dictConfig(log_config)
    # Ctrl-C reaches the whole process group; the workers must drain first, on these models, before the parent
    # stops this process with SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(_serve(settings, socket_path))
