"""A worker's stand-in for an ``Engine`` whose model lives in the model process.

It has what the routes, /health and the batcher read from an engine (the contract, the provider, the provenance)
and ``run``: the batch's rows go into the connection's shared memory, the model process computes them among every
worker's rows, and the probabilities come back the same way. If the model process goes away, ``connected`` turns
False (readiness answers 503) and every run is refused with ``ModelNotReady``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path
from typing import Any

import numpy as np

from resnet_service.core.errors import InferenceFailed, ModelNotReady, StartupError
from resnet_service.inference.engine import ModelFacts
from resnet_service.inference.model_contract import ContractDefaults, read_contract
from resnet_service.inference.model_process.wire import batch_arrays, read_message, write_message

__all__ = ["RemoteEngine"]

logger = logging.getLogger(__name__)


def _attach(name: str) -> SharedMemory:
    memory = SharedMemory(name=name)
    # Python 3.11's resource tracker also claims memory a process only attaches to, and would unlink it when this
    # worker exits; the model process, which made it, unlinks it.
    resource_tracker.unregister(memory._name, "shared_memory")  # type: ignore[attr-defined]
    return memory


@dataclass(kw_only=True)
class RemoteEngine(ModelFacts):
    cuda_graphs: bool | None
    _reader: asyncio.StreamReader = field(repr=False)
    _writer: asyncio.StreamWriter = field(repr=False)
    _memory: SharedMemory = field(repr=False)
    _inputs: np.ndarray = field(repr=False)
    _outputs: np.ndarray = field(repr=False)
    # One batch at a time: the memory holds one.
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    _replies: asyncio.Queue[dict[str, Any] | None] = field(default_factory=asyncio.Queue, repr=False)
    _lost: str | None = None
    _seq: int = 0
    _listener: asyncio.Task[None] | None = field(default=None, repr=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    # The batcher reads these as it does an Engine's.
    gate: Any = None
    in_flight: int = 1

    @classmethod
    async def open(cls, socket: Path, path: Path, defaults: ContractDefaults | None = None) -> RemoteEngine:
        """Ask the model process for ``path`` (it loads and warms it up, unless another worker already has)."""
        defaults = defaults or ContractDefaults()
        try:
            reader, writer = await asyncio.open_unix_connection(str(socket))
        except OSError as exc:
            raise StartupError(f"the model process does not answer on {socket}: {exc}") from exc
        write_message(writer, {"path": str(path), "preprocessing": defaults.preprocessing, "labels": defaults.labels})
        await writer.drain()
        answer = await read_message(reader)
        if answer is None or "error" in answer:
            writer.close()
            reason = answer["error"] if answer else "it closed the connection"
            raise StartupError(f"the model process could not load {path}: {reason}")
        described, capacity = answer["engine"], int(answer["capacity"])
        contract = read_contract(
            described["metadata"],
            described["input_shape"],
            described["classes"],
            path,
            defaults,
            described["input_type"],
        )
        spec, classes = contract.input, described["classes"]
        memory = _attach(answer["shared_memory"])
        inputs, outputs = batch_arrays(memory.buf, capacity, spec, classes)
        engine = cls(
            path=path,
            provider=described["provider"],
            runtime=described["runtime"],
            precision=described["precision"],
            input_name=described["input_name"],
            input_shape=described["input_shape"],
            output_name=described["output_name"],
            metadata=described["metadata"],
            contract=contract,
            batch_sizes=tuple(described["batch_sizes"]),
            warm_up_s=described["warm_up_s"],
            cuda_graphs=described["cuda_graphs"],
            _reader=reader,
            _writer=writer,
            _memory=memory,
            _inputs=inputs,
            _outputs=outputs,
        )
        engine._loop = asyncio.get_running_loop()
        engine._listener = engine._loop.create_task(engine._listen(), name=f"model-process-{path.name}")
        return engine

    @property
    def connected(self) -> bool:
        return self._lost is None

    async def _listen(self) -> None:
        while (message := await read_message(self._reader)) is not None:
            await self._replies.put(message)
        if self._lost is None:
            self._lost = "the model process has stopped"
            logger.error("%s: %s is no longer served", self._lost, self.path)
        await self._replies.put(None)

    async def warm_up(self) -> None:
        """Nothing to do: the model process warmed the model up before it answered ``open``."""

    async def run(self, rows: Sequence[np.ndarray]) -> np.ndarray:
        """(1, *row_shape) rows → their (len(rows), classes) probabilities, computed in the model process."""
        async with self._lock:
            if self._lost is not None:
                raise ModelNotReady(f"{self._lost}; retry when /health/ready answers 200")
            count = len(rows)
            np.concatenate(rows, out=self._inputs[:count])
            self._seq += 1
            write_message(self._writer, {"seq": self._seq, "rows": count})
            await self._writer.drain()
            # A reply to a run whose caller was cancelled may still be queued: skip to this one's.
            while (reply := await self._replies.get()) is not None and reply["seq"] != self._seq:
                pass
            if reply is None:
                raise ModelNotReady(f"{self._lost}; retry when /health/ready answers 200")
            if "error" in reply:
                raise InferenceFailed(reply["error"])
            return self._outputs[:count].copy()

    def close(self) -> None:
        """Close the connection (the model process frees the model once no worker uses it); from any thread."""
        self._lost = "this version of the model was closed"
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._writer.close)
        self._inputs = self._outputs = np.empty(0)
        self._memory.close()
