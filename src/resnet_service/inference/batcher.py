"""Dynamic batching: concurrent requests share one ONNX Runtime call, without ever waiting on an idle model.

One background task owns the model. It takes the first waiting request, adds every request already queued (up to
``max_batch_size``), runs them as one batch, and resolves each caller's future. A request that finds the model
idle therefore runs at once, alone; requests that arrive while the model is busy queue up and form the next
batch. ``max_wait_ms`` > 0 additionally holds an idle model for company, trading a lone client's latency for
fuller batches.

The queue is bounded. A caller ``reserve()``s a place on arrival, before it reads or decodes anything, and holds
it until its request joins a running batch; with ``max_queue`` places taken, ``reserve()`` raises ``QueueFull``
at once, so an overloaded service refuses cheaply instead of queueing without limit. ``reserve_within(seconds)``
instead waits, first come first served, for a place to be given back: a refusal that comes at once invites a
client that ignores Retry-After straight back, and a flood of such clients takes the CPU the model needs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from opentelemetry.context import Context

    from resnet_service.inference.stage_spans import StageSpans

__all__ = ["BatchSizeMismatch", "Computed", "DynamicBatcher", "QueueFull", "Slot"]

logger = logging.getLogger(__name__)

# Takes the batch's (1, ...) rows, unstacked: stacking 32 images is a 19 MB copy, better made off the event loop.
RunBatch = Callable[[list[np.ndarray]], Awaitable[np.ndarray]]
# Told each batch's size and how long the model took on it, for the batch-size and inference metrics.
ObserveBatch = Callable[[int, float], None]
# Told of images whose caller gave up: ("queued", n) skipped before their batch, ("computed", 1) run for nobody.
ObserveAbandoned = Callable[[str, int], None]


@dataclass(frozen=True)
class Computed:
    """One row's output, with what it cost: its wait in the queue, its batch's run time and size."""

    row: np.ndarray
    queue_s: float
    inference_s: float
    batch_size: int


class BatchSizeMismatch(RuntimeError):
    """Raised to every caller of a batch when the model returned a different number of rows than it was given."""


class QueueFull(RuntimeError):
    """Raised by ``reserve()`` when ``max_queue`` requests are already waiting."""


class Slot:
    """A reserved place in the queue; released once, when its request joins a batch or gives up."""

    def __init__(self, batcher: DynamicBatcher) -> None:
        self._batcher = batcher
        self._held = True
        # Set by the batcher once this request's row is computed; a caller that gives up after that wasted it.
        self.computed = False
        self._counted = False

    def release(self) -> None:
        if self._held:
            self._held = False
            self._batcher._give_back()

    def abandon(self) -> None:
        """The caller gave up; count its row as wasted model time if it was (or is later) computed."""
        # Called from both sides (the caller leaving, the batch finishing), in either order; counts once.
        if self.computed and not self._counted:
            self._counted = True
            self._batcher._abandoned_computed()

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        self.release()
        if exc_type is not None:
            self.abandon()


@dataclass
class _Request:
    inputs: np.ndarray
    slot: Slot
    future: asyncio.Future[Computed] = field(repr=False)
    queued_at: float
    # The submitter's trace context, when traces are on and its request is sampled: the batch's spans go under it.
    trace_context: Context | None = field(default=None, repr=False)


def _fail(requests: list[_Request], error: BaseException) -> None:
    for request in requests:
        if not request.future.done():
            request.future.set_exception(error)


class DynamicBatcher:
    """Coalesce ``submit`` calls into batches of at most ``max_batch_size`` rows for ``run_batch``."""

    def __init__(
        self,
        run_batch: RunBatch,
        max_batch_size: int,
        max_wait_ms: float = 0.0,
        max_queue: int = 1_000_000,
        observe_batch: ObserveBatch | None = None,
        observe_abandoned: ObserveAbandoned | None = None,
        spans: StageSpans | None = None,
        max_in_flight: int = 1,
    ) -> None:
        if max_batch_size < 1 or max_queue < 1 or max_in_flight < 1:
            raise ValueError("max_batch_size, max_queue and max_in_flight must be at least 1")
        self._run_batch = run_batch
        self._observe_batch = observe_batch
        self._observe_abandoned = observe_abandoned
        self._spans = spans
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_queue = max_queue
        # Batches handed to run_batch and not yet finished. Above 1, the next batch is formed and started while the
        # last one still runs, for a runtime that queues runs itself (OpenVINO's infer requests).
        self.max_in_flight = max_in_flight
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._waiting = 0
        # Callers of reserve_within waiting for a place, oldest first; a place given back goes to the first.
        self._place_waiters: deque[asyncio.Future[Slot]] = deque()
        self.rows_run = 0
        # Requests skipped because their caller had gone before their batch started: no model time spent.
        self.dropped = 0
        # Rows computed for a caller that gave up while its batch ran, or before it could use the result.
        self.abandoned = 0

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    @property
    def waiting(self) -> int:
        """Requests holding a place: admitted, and not yet in a running batch."""
        return self._waiting

    def reserve(self) -> Slot:
        """A place in the queue for one request, or ``QueueFull`` at once; use it as a context manager."""
        if self._waiting >= self.max_queue:
            raise QueueFull(f"{self._waiting} requests are already waiting (the limit is {self.max_queue})")
        self._waiting += 1
        return Slot(self)

    async def reserve_within(self, seconds: float) -> Slot:
        """``reserve()``, but with the queue full, wait up to ``seconds`` for a place before ``QueueFull``."""
        if self._waiting < self.max_queue or seconds <= 0:
            return self.reserve()
        waiter: asyncio.Future[Slot] = asyncio.get_running_loop().create_future()
        self._place_waiters.append(waiter)
        try:
            async with asyncio.timeout(seconds):
                return await waiter
        except TimeoutError:
            self._forget(waiter)
            raise QueueFull(
                f"{self._waiting} requests are already waiting (the limit is {self.max_queue}) "
                f"and no place came free within {seconds:g} s"
            ) from None
        except BaseException:
            self._forget(waiter)
            raise

    def _forget(self, waiter: asyncio.Future[Slot]) -> None:
        if waiter in self._place_waiters:
            self._place_waiters.remove(waiter)
        elif waiter.done() and not waiter.cancelled():
            # A place was handed over just as this caller gave up (timeout or cancellation): pass it on.
            waiter.result().release()

    def _give_back(self) -> None:
        while self._place_waiters:
            waiter = self._place_waiters.popleft()
            if not waiter.done():
                # The place moves to the waiter as it is: the count of places taken does not change.
                waiter.set_result(Slot(self))
                return
        self._waiting -= 1

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

    async def submit(self, inputs: np.ndarray, slot: Slot | None = None) -> Computed:
        """One (1, ...) input → its (…) output row and timings, computed in whichever batch it lands in.

        ``slot`` is the place ``reserve()`` gave this request; without one, a place is reserved here.
        """
        if self._task is None:
            raise RuntimeError("the batcher is not running")
        slot = slot if slot is not None else self.reserve()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Computed] = loop.create_future()
        trace_context = self._spans.current() if self._spans is not None else None
        self._queue.put_nowait(_Request(inputs, slot, future, time.perf_counter(), trace_context))
        try:
            return await future
        except BaseException:
            slot.abandon()
            raise
        finally:
            slot.release()

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
        for request in batch:
            request.slot.release()
        # A caller that gave up (disconnect, deadline) cancelled its future; its row would be wasted work.
        live = [request for request in batch if not request.future.done()]
        if len(live) < len(batch):
            self.dropped += len(batch) - len(live)
            if self._observe_abandoned is not None:
                self._observe_abandoned("queued", len(batch) - len(live))
        return live

    def _abandoned_computed(self) -> None:
        self.abandoned += 1
        if self._observe_abandoned is not None:
            self._observe_abandoned("computed", 1)

    async def _loop(self) -> None:
        if self.max_in_flight == 1:
            while True:
                batch = await self._next_batch()
                if batch:
                    await self._run(batch)
        places = asyncio.Semaphore(self.max_in_flight)
        running: set[asyncio.Task[None]] = set()

        def finished(task: asyncio.Task[None]) -> None:
            running.discard(task)
            places.release()

        try:
            while True:
                await places.acquire()
                batch = await self._next_batch()
                if not batch:
                    places.release()
                    continue
                task = asyncio.get_running_loop().create_task(self._run(batch), name="dynamic-batcher-run")
                running.add(task)
                task.add_done_callback(finished)
        finally:
            # Stopping: the batches still running fail their callers (in _run), none is left behind.
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    async def _run(self, batch: list[_Request]) -> None:
        # perf_counter, not loop.time(): uvloop's clock ticks in whole milliseconds.
        started = time.perf_counter()
        try:
            self.rows_run += len(batch)
            outputs = await self._run_batch([request.inputs for request in batch])
            if len(outputs) != len(batch):
                raise BatchSizeMismatch(f"the model returned {len(outputs)} rows for a batch of {len(batch)}")
        except asyncio.CancelledError:
            _fail(batch, RuntimeError("the batcher stopped while this request ran"))
            raise
        except Exception as exc:
            # Every caller gets the failure; none is left waiting on a future that never resolves.
            _fail(batch, exc)
            return
        ran_s = time.perf_counter() - started
        if self._observe_batch is not None:
            self._observe_batch(len(batch), ran_s)
        for request, row in zip(batch, outputs, strict=True):
            request.slot.computed = True
            if request.future.done():
                # Its caller was cancelled mid-batch; the row just computed goes unused.
                request.slot.abandon()
            else:
                request.future.set_result(Computed(row, started - request.queued_at, ran_s, len(batch)))
        if self._spans is not None:
            traced = [(r.trace_context, r.queued_at) for r in batch if r.trace_context is not None]
            self._spans.batch(traced, len(batch), started, ran_s)
