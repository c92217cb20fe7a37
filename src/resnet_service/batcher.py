"""Dynamic batching: concurrent requests share one ONNX Runtime call, without ever waiting on an idle model.

One background task owns the model. It takes the first waiting request, adds every request already queued (up to
``max_batch_size``), runs them as one batch, and resolves each caller's future. A request that finds the model
idle therefore runs at once, alone; requests that arrive while the model is busy queue up and form the next
batch. ``max_wait_ms`` > 0 additionally holds an idle model for company, trading a lone client's latency for
fuller batches.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np

__all__ = ["DynamicBatcher", "BatchSizeMismatch"]

logger = logging.getLogger(__name__)

RunBatch = Callable[[np.ndarray], Awaitable[np.ndarray]]


class BatchSizeMismatch(RuntimeError):
    """Raised to every caller of a batch when the model returned a different number of rows than it was given."""


@dataclass
class _Request:
    inputs: np.ndarray
    future: asyncio.Future[np.ndarray] = field(repr=False)


def _fail(requests: list[_Request], error: BaseException) -> None:
    for request in requests:
        if not request.future.done():
            request.future.set_exception(error)


class DynamicBatcher:
    """Coalesce ``submit`` calls into batches of at most ``max_batch_size`` rows for ``run_batch``."""

    def __init__(self, run_batch: RunBatch, max_batch_size: int, max_wait_ms: float = 0.0) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self._run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="dynamic-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        queued = [self._queue.get_nowait() for _ in range(self._queue.qsize())]
        _fail(queued, RuntimeError("the batcher stopped before this request ran"))

    async def submit(self, inputs: np.ndarray) -> np.ndarray:
        """One (1, ...) input → its (…) output row, computed in whichever batch it lands in."""
        if self._task is None:
            raise RuntimeError("the batcher is not running")
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Request(inputs, future))
        return await future

    async def _next_batch(self) -> list[_Request]:
        batch = [await self._queue.get()]
        deadline = asyncio.get_running_loop().time() + self.max_wait_s
        while len(batch) < self.max_batch_size:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        # A caller that gave up (disconnect, timeout) cancelled its future; its row would be wasted work.
        return [request for request in batch if not request.future.done()]

    async def _loop(self) -> None:
        while True:
            batch = await self._next_batch()
            if not batch:
                continue
            try:
                outputs = await self._run_batch(np.concatenate([request.inputs for request in batch]))
                if len(outputs) != len(batch):
                    raise BatchSizeMismatch(f"the model returned {len(outputs)} rows for a batch of {len(batch)}")
            except asyncio.CancelledError:
                _fail(batch, RuntimeError("the batcher stopped while this request ran"))
                raise
            except Exception as exc:
                # Every caller gets the failure; none is left waiting on a future that never resolves.
                _fail(batch, exc)
                continue
            for request, row in zip(batch, outputs, strict=True):
                if not request.future.done():
                    request.future.set_result(row)
