"""DynamicBatcher with a stand-in model: batches are proven by what each caller gets back."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pytest

from resnet_service.inference.batcher import BatchSizeMismatch, DynamicBatcher, QueueFull


class GatedModel:
    """Returns each row's first value times ten, and records every batch; can hold a batch until released."""

    def __init__(self, held: bool = False) -> None:
        self.batches: list[list[float]] = []
        # Set: batches run through; held: each batch waits until the test sets it.
        self.gate = asyncio.Event()
        if not held:
            self.gate.set()
        self.started = asyncio.Event()

    async def __call__(self, rows: list[np.ndarray]) -> np.ndarray:
        inputs = np.concatenate(rows)
        self.batches.append([float(v) for v in inputs[:, 0]])
        self.started.set()
        await self.gate.wait()
        return inputs[:, :1] * 10


def row(value: float) -> np.ndarray:
    return np.full((1, 3), value, dtype=np.float32)


def in_loop(test: Callable[[], Awaitable[None]]) -> Callable[[], None]:
    """Run an async test in a fresh event loop."""

    @functools.wraps(test)
    def run() -> None:
        asyncio.run(test())

    return run


@asynccontextmanager
async def started(
    model: Callable[[list[np.ndarray]], Awaitable[np.ndarray]], **options: Any
) -> AsyncIterator[DynamicBatcher]:
    """A running batcher over ``model``, stopped at the end (stopping twice is harmless)."""
    batcher = DynamicBatcher(model, **options)
    batcher.start()
    try:
        yield batcher
    finally:
        await batcher.stop()


@in_loop
async def test_a_lone_request_runs_at_once_alone() -> None:
    model = GatedModel()
    async with started(model, max_batch_size=8, max_wait_ms=0) as batcher:
        loop = asyncio.get_running_loop()
        began = loop.time()
        result = await batcher.submit(row(1))
        assert loop.time() - began < 0.5
        assert result.row.tolist() == [10.0] and model.batches == [[1.0]]
        assert result.batch_size == 1 and result.queue_s < 0.5 and result.inference_s >= 0


@in_loop
async def test_requests_arriving_while_the_model_is_busy_share_the_next_batch() -> None:
    model = GatedModel(held=True)
    async with started(model, max_batch_size=8) as batcher:
        first = asyncio.create_task(batcher.submit(row(1)))
        await model.started.wait()
        waiting = [asyncio.create_task(batcher.submit(row(v))) for v in (2, 3, 4)]
        await asyncio.sleep(0.01)
        model.gate.set()
        results = await asyncio.gather(first, *waiting)
        assert [r.row.tolist() for r in results] == [[10.0], [20.0], [30.0], [40.0]]
        assert model.batches == [[1.0], [2.0, 3.0, 4.0]]
        # Each row comes back with its own wait and its batch's size and run time.
        assert [r.batch_size for r in results] == [1, 3, 3, 3]
        assert all(r.queue_s >= 0.01 for r in results[1:]) and results[0].queue_s < results[1].queue_s
        assert results[1].inference_s == results[2].inference_s == results[3].inference_s


@in_loop
async def test_batches_never_exceed_the_maximum() -> None:
    model = GatedModel(held=True)
    async with started(model, max_batch_size=2) as batcher:
        tasks = [asyncio.create_task(batcher.submit(row(v))) for v in range(5)]
        await asyncio.sleep(0.01)
        model.gate.set()
        await asyncio.gather(*tasks)
        assert [len(b) for b in model.batches] == [2, 2, 1]


@in_loop
async def test_a_failing_batch_fails_every_caller_in_it_with_the_same_error() -> None:
    error = RuntimeError("session.run failed")
    calls = 0

    async def failing(rows: list[np.ndarray]) -> np.ndarray:
        nonlocal calls
        calls += 1
        raise error

    async with started(failing, max_batch_size=8, max_wait_ms=50) as batcher:
        results = await asyncio.gather(batcher.submit(row(1)), batcher.submit(row(2)), return_exceptions=True)
        assert results == [error, error] and calls == 1
        # The loop survives the failure and serves the next request.
        batcher._run_batch = GatedModel()
        assert (await batcher.submit(row(3))).row.tolist() == [30.0]


@in_loop
async def test_a_wrong_number_of_rows_is_a_typed_error_for_every_caller() -> None:
    async def short(rows: list[np.ndarray]) -> np.ndarray:
        return rows[0]

    async with started(short, max_batch_size=8, max_wait_ms=50) as batcher:
        results = await asyncio.gather(batcher.submit(row(1)), batcher.submit(row(2)), return_exceptions=True)
        assert all(isinstance(r, BatchSizeMismatch) for r in results)


@in_loop
async def test_a_cancelled_request_is_dropped_before_it_costs_model_time() -> None:
    model = GatedModel(held=True)
    async with started(model, max_batch_size=8) as batcher:
        first = asyncio.create_task(batcher.submit(row(1)))
        await model.started.wait()
        abandoned = asyncio.create_task(batcher.submit(row(2)))
        kept = asyncio.create_task(batcher.submit(row(3)))
        await asyncio.sleep(0.01)
        abandoned.cancel()
        model.gate.set()
        await asyncio.gather(first, kept)
        assert model.batches == [[1.0], [3.0]]


@in_loop
async def test_a_batch_timeout_holds_an_idle_model_for_company() -> None:
    model = GatedModel()
    async with started(model, max_batch_size=8, max_wait_ms=200) as batcher:
        first = asyncio.create_task(batcher.submit(row(1)))
        await asyncio.sleep(0.02)
        second = asyncio.create_task(batcher.submit(row(2)))
        await asyncio.gather(first, second)
        assert model.batches == [[1.0, 2.0]]


@in_loop
async def test_stop_fails_running_and_queued_requests_instead_of_leaving_them_waiting() -> None:
    model = GatedModel(held=True)
    async with started(model, max_batch_size=1) as batcher:
        running = asyncio.create_task(batcher.submit(row(1)))
        await model.started.wait()
        queued = asyncio.create_task(batcher.submit(row(2)))
        await asyncio.sleep(0.01)
        await batcher.stop()
        with pytest.raises(RuntimeError, match="stopped before"):
            await queued
        with pytest.raises(RuntimeError, match="stopped while"):
            await running


@in_loop
async def test_submit_before_start_is_refused() -> None:
    with pytest.raises(RuntimeError, match="not running"):
        await DynamicBatcher(GatedModel(), max_batch_size=2).submit(row(1))


@in_loop
async def test_the_queue_refuses_at_once_when_max_queue_requests_wait_and_a_running_batch_frees_places() -> None:
    model = GatedModel(held=True)
    async with started(model, max_batch_size=2, max_queue=2) as batcher:
        running = [asyncio.create_task(batcher.submit(row(v))) for v in (1, 2)]
        await model.started.wait()
        # Both joined the running batch, so they no longer hold places: two more may wait.
        assert batcher.waiting == 0
        waiting = [asyncio.create_task(batcher.submit(row(v))) for v in (3, 4)]
        await asyncio.sleep(0.01)
        assert batcher.waiting == 2
        with pytest.raises(QueueFull, match="2 requests are already waiting"):
            batcher.reserve()
        model.gate.set()
        assert [r.row.tolist() for r in await asyncio.gather(*running, *waiting)] == [[10.0], [20.0], [30.0], [40.0]]
        assert batcher.waiting == 0 and batcher.rows_run == 4


@in_loop
async def test_a_reserved_place_is_given_back_when_its_request_fails_before_submitting() -> None:
    async with started(GatedModel(), max_batch_size=2, max_queue=1) as batcher:
        with pytest.raises(ValueError), batcher.reserve():
            assert batcher.waiting == 1
            raise ValueError("the upload was not an image")
        assert batcher.waiting == 0
        with batcher.reserve() as slot:
            assert (await batcher.submit(row(5), slot)).row.tolist() == [50.0]
        assert batcher.waiting == 0


@in_loop
async def test_a_request_that_finds_the_queue_full_waits_for_the_next_place_given_back() -> None:
    async with started(GatedModel(), max_batch_size=1, max_queue=1) as batcher:
        held = batcher.reserve()
        waiter = asyncio.create_task(batcher.reserve_within(5.0))
        await asyncio.sleep(0.01)
        assert not waiter.done() and batcher.waiting == 1
        held.release()
        # The place moved to the waiter as it was: still one taken, never a moment with the queue open to others.
        assert batcher.waiting == 1
        with await waiter as slot:
            assert (await batcher.submit(row(2), slot)).row.tolist() == [20.0]
        assert batcher.waiting == 0


@in_loop
async def test_requests_waiting_for_a_place_get_one_first_come_first_served() -> None:
    batcher = DynamicBatcher(GatedModel(), max_batch_size=1, max_queue=1)
    held = batcher.reserve()
    waiters = []
    for _ in range(3):
        waiters.append(asyncio.create_task(batcher.reserve_within(5.0)))
        await asyncio.sleep(0)
    held.release()
    await asyncio.sleep(0)
    assert [w.done() for w in waiters] == [True, False, False]
    waiters[0].result().release()
    await asyncio.sleep(0)
    assert [w.done() for w in waiters] == [True, True, False]
    waiters[1].result().release()
    (await waiters[2]).release()
    assert batcher.waiting == 0


@in_loop
async def test_a_request_that_waits_longer_than_its_limit_is_refused_and_takes_no_place() -> None:
    batcher = DynamicBatcher(GatedModel(), max_batch_size=1, max_queue=1)
    held = batcher.reserve()
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(QueueFull, match="no place came free within 0.05 s"):
        await batcher.reserve_within(0.05)
    assert loop.time() - began >= 0.05
    held.release()
    # The refused waiter left the line: the place given back is free, not handed to it.
    assert batcher.waiting == 0
    batcher.reserve().release()


@in_loop
async def test_a_place_handed_to_a_waiter_that_was_cancelled_at_that_moment_passes_to_the_next() -> None:
    batcher = DynamicBatcher(GatedModel(), max_batch_size=1, max_queue=1)
    held = batcher.reserve()
    first = asyncio.create_task(batcher.reserve_within(5.0))
    second = asyncio.create_task(batcher.reserve_within(5.0))
    await asyncio.sleep(0)
    # The place goes to the first waiter, whose caller is cancelled before it can take it up.
    held.release()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    (await second).release()
    assert batcher.waiting == 0


@in_loop
async def test_with_no_wait_a_full_queue_refuses_at_once() -> None:
    batcher = DynamicBatcher(GatedModel(), max_batch_size=1, max_queue=1)
    batcher.reserve()
    with pytest.raises(QueueFull, match="1 requests are already waiting"):
        await batcher.reserve_within(0)


@in_loop
async def test_a_cancelled_request_gives_its_place_back_and_is_counted_as_dropped() -> None:
    model = GatedModel(held=True)
    told: list[tuple[str, int]] = []
    async with started(model, max_batch_size=1, max_queue=4, observe_abandoned=lambda *a: told.append(a)) as batcher:
        first = asyncio.create_task(batcher.submit(row(1)))
        await model.started.wait()
        abandoned = asyncio.create_task(batcher.submit(row(2)))
        await asyncio.sleep(0.01)
        assert batcher.waiting == 1
        abandoned.cancel()
        await asyncio.sleep(0.01)
        assert batcher.waiting == 0
        model.gate.set()
        await first
        await asyncio.sleep(0.01)
        assert batcher.dropped == 1 and batcher.rows_run == 1 and model.batches == [[1.0]]
        assert told == [("queued", 1)]  # what the resnet_images_abandoned metric counts


@in_loop
async def test_a_request_cancelled_while_its_batch_runs_is_counted_as_abandoned_not_dropped() -> None:
    model = GatedModel(held=True)
    told: list[tuple[str, int]] = []
    async with started(model, max_batch_size=2, max_queue=4, observe_abandoned=lambda *a: told.append(a)) as batcher:
        running = asyncio.create_task(batcher.submit(row(1)))
        await model.started.wait()
        running.cancel()
        model.gate.set()
        await asyncio.sleep(0.01)
        assert running.cancelled()
        assert (batcher.rows_run, batcher.dropped, batcher.abandoned) == (1, 0, 1)
        assert told == [("computed", 1)]


@in_loop
async def test_with_two_batches_in_flight_the_next_starts_while_the_first_runs_and_each_caller_gets_its_row() -> None:
    model = GatedModel(held=True)
    async with started(model, max_batch_size=2, max_in_flight=2) as batcher:
        first = [asyncio.create_task(batcher.submit(row(v))) for v in (1, 2)]
        await model.started.wait()
        second = [asyncio.create_task(batcher.submit(row(v))) for v in (3, 4)]
        third = asyncio.create_task(batcher.submit(row(5)))
        await asyncio.sleep(0.05)
        # Two batches were handed over with the first still held; the third waits for a place.
        assert model.batches == [[1.0, 2.0], [3.0, 4.0]] and not third.done()
        model.gate.set()
        results = await asyncio.gather(*first, *second, third)
        assert [r.row.tolist() for r in results] == [[10.0], [20.0], [30.0], [40.0], [50.0]]
        assert model.batches[2] == [5.0]


@in_loop
async def test_stop_fails_every_batch_in_flight() -> None:
    model = GatedModel(held=True)
    async with started(model, max_batch_size=1, max_in_flight=2) as batcher:
        running = [asyncio.create_task(batcher.submit(row(v))) for v in (1, 2)]
        queued = asyncio.create_task(batcher.submit(row(3)))
        await asyncio.sleep(0.05)
        assert len(model.batches) == 2
        await batcher.stop()
        for task in running:
            with pytest.raises(RuntimeError, match="stopped while"):
                await task
        with pytest.raises(RuntimeError, match="stopped before"):
            await queued
