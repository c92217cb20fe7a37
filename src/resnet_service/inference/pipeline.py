"""Classification without HTTP: admission, deadline, preprocessing and the batcher, as /predict and v2 share them.

Each image (or v2 tensor row) holds its own place in the batcher's queue, so a request with many images is
bounded by RESNET_MAX_QUEUE like many requests with one. The request's first place is taken on arrival, before
its body is read; the places for its other images are taken once the body says how many there are, and an image
that finds the queue full gets its own ``overloaded`` result instead of failing its siblings.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from resnet_service.api.observe import RequestStats
from resnet_service.errors import DeadlineExceeded, Overloaded, ServiceError, TooManyImages
from resnet_service.inference.batcher import DynamicBatcher, QueueFull, Slot
from resnet_service.inference.decode_gate import DecodeGate
from resnet_service.inference.model_contract import InputSpec
from resnet_service.inference.preprocessing import Preprocessed, preprocess_image
from resnet_service.metrics import ModelMetrics
from resnet_service.settings import Settings

__all__ = ["Pipeline", "RETRY_AFTER_S"]

T = TypeVar("T")

# How long an overloaded service asks clients to wait: a few batches' time on a CPU.
RETRY_AFTER_S = 1


def _timed_preprocess(
    data: bytes, max_pixels: int, fast: bool, spec: InputSpec, gate: DecodeGate
) -> tuple[Preprocessed, float]:
    # Timed in the pool's thread, inside the gate: the preprocessing figure is the work itself, not the wait for a
    # free thread or for the model to finish a run.
    with gate.decoding():
        started = time.perf_counter()
        return preprocess_image(data, max_pixels, fast, spec), time.perf_counter() - started


def _overloaded(exc: QueueFull) -> Overloaded:
    return Overloaded(f"{exc}; retry shortly", headers={"Retry-After": str(RETRY_AFTER_S)})


@dataclass(frozen=True)
class Pipeline:
    """One model's way from bytes to probabilities; the pool and the gate are shared by every model."""

    batcher: DynamicBatcher
    preprocess_pool: ThreadPoolExecutor
    settings: Settings
    metrics: ModelMetrics
    gate: DecodeGate
    spec: InputSpec

    async def admit(self) -> Slot:
        """A place in the queue, waiting up to RESNET_QUEUE_WAIT_S for one, or ``Overloaded`` (503, Retry-After)."""
        try:
            return await self.batcher.reserve_within(self.settings.queue_wait_s)
        except QueueFull as exc:
            raise _overloaded(exc) from exc

    def admit_now(self) -> Slot:
        """A place in the queue, or ``Overloaded`` at once: for a request's second and later images."""
        try:
            return self.batcher.reserve()
        except QueueFull as exc:
            raise _overloaded(exc) from exc

    @asynccontextmanager
    async def deadline(self) -> AsyncIterator[None]:
        """RESNET_REQUEST_TIMEOUT_S for the whole request; queued work still waiting when it passes is dropped."""
        seconds = self.settings.request_timeout_s
        try:
            async with asyncio.timeout(seconds):
                yield
        except TimeoutError as exc:
            raise DeadlineExceeded(f"the request was not answered within its {seconds:g}-second deadline") from exc

    def check_count(self, count: int, what: str) -> None:
        limit = self.settings.max_images_per_request
        if count > limit:
            raise TooManyImages(
                f"this request has {count} {what}; the limit is {limit} (RESNET_MAX_IMAGES_PER_REQUEST)"
            )

    async def classify_image(self, data: bytes, slot: Slot, stats: RequestStats) -> np.ndarray:
        """Encoded image → its (classes,) probabilities."""
        loop = asyncio.get_running_loop()
        settings = self.settings
        fast = settings.resize == "fast"
        image, seconds = await loop.run_in_executor(
            self.preprocess_pool, _timed_preprocess, data, settings.max_image_pixels, fast, self.spec, self.gate
        )
        stats.image_sizes.append(f"{image.width}x{image.height}")
        stats.preprocess_s += seconds
        self.metrics.preprocess_seconds.observe(seconds)
        return await self.run_row(image.tensor, slot, stats)

    async def classify_one(self, data: bytes, slot: Slot, stats: RequestStats) -> np.ndarray:
        """``classify_image`` for a request of one image: its error is the request's, counted like run_each's."""
        try:
            probabilities = await self.classify_image(data, slot, stats)
        except ServiceError as exc:
            self.metrics.count_image(exc.code)
            raise
        self.metrics.count_image("ok")
        return probabilities

    async def run_row(self, row: np.ndarray, slot: Slot, stats: RequestStats) -> np.ndarray:
        """A preprocessed (1, *row_shape) row → its (classes,) probabilities, in whichever batch it lands."""
        probabilities = await self.batcher.submit(row, slot)
        stats.queue_s += slot.queue_s
        stats.inference_s += slot.inference_s
        stats.batch_sizes.append(slot.batch_size)
        self.metrics.queue_seconds.observe(slot.queue_s)
        return probabilities

    async def run_each(
        self, items: Sequence[T], first: Slot, work: Callable[[T, Slot], Awaitable[np.ndarray]]
    ) -> list[np.ndarray | ServiceError]:
        """``work`` on every item at once, each in its own queue place; a ServiceError is that item's result."""

        async def one(item: T, slot: Slot | ServiceError) -> np.ndarray | ServiceError:
            if isinstance(slot, ServiceError):
                return slot
            with slot:
                try:
                    return await work(item, slot)
                except ServiceError as exc:
                    return exc

        slots: list[Slot | ServiceError] = [first]
        for _ in items[1:]:
            try:
                slots.append(self.admit_now())
            except Overloaded as exc:
                slots.append(exc)
        results = await asyncio.gather(*(one(item, slot) for item, slot in zip(items, slots, strict=True)))
        for result in results:
            self.metrics.count_image(result.code if isinstance(result, ServiceError) else "ok")
        return results
