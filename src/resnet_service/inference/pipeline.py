"""Classification without HTTP: admission, deadline, preprocessing and the batcher, as /predict and v2 share them.

``run_each`` is the one way in, for one image or many: it returns each item's ``Classified`` (probabilities and
timings, for the route to answer and log) or its error, and records the per-image metrics. Each image (or v2
tensor row) holds its own place in the batcher's queue, so a request with many images is
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
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from resnet_service.core.errors import DeadlineExceeded, Overloaded, ServiceError, TooManyImages
from resnet_service.core.metrics import ModelMetrics
from resnet_service.core.settings import Settings
from resnet_service.inference.batcher import Computed, DynamicBatcher, QueueFull, Slot
from resnet_service.inference.decode_gate import DecodeGate
from resnet_service.inference.model_contract import InputSpec
from resnet_service.inference.preprocessing import Preprocessed, preprocess_image

if TYPE_CHECKING:
    from resnet_service.inference.stage_spans import StageSpans

__all__ = ["Classified", "Pipeline", "RETRY_AFTER_S"]

T = TypeVar("T")

# How long an overloaded service asks clients to wait: a few batches' time on a CPU.
RETRY_AFTER_S = 1


def _timed_preprocess(
    data: bytes, max_pixels: int, fast: bool, spec: InputSpec, gate: DecodeGate
) -> tuple[Preprocessed, float, float]:
    """The preprocessed image, when its preprocessing started (perf_counter) and how long it took."""
    # Timed in the pool's thread, inside the gate: the preprocessing figure is the work itself, not the wait for a
    # free thread or for the model to finish a run.
    with gate.decoding():
        started = time.perf_counter()
        return preprocess_image(data, max_pixels, fast, spec), started, time.perf_counter() - started


def _overloaded(exc: QueueFull) -> Overloaded:
    return Overloaded(f"{exc}; retry shortly", headers={"Retry-After": str(RETRY_AFTER_S)})


@dataclass(frozen=True)
class Classified:
    """One image's (or tensor row's) probabilities, with the figures its request reports and the metrics record."""

    computed: Computed
    preprocess_s: float = 0.0
    # "WIDTHxHEIGHT" of an image the service decoded; None for a tensor sent already preprocessed.
    image_size: str | None = None

    @property
    def probabilities(self) -> np.ndarray:
        return self.computed.row


@dataclass(frozen=True)
class Pipeline:
    """One model's way from bytes to probabilities; the pool and the gate are shared by every model."""

    batcher: DynamicBatcher
    preprocess_pool: ThreadPoolExecutor
    settings: Settings
    metrics: ModelMetrics
    gate: DecodeGate
    spec: InputSpec
    spans: StageSpans | None = None

    async def admit(self) -> Slot:
        """A place in the queue, waiting up to RESNET_QUEUE_WAIT_S for one, or ``Overloaded`` (503, Retry-After)."""
        started = time.perf_counter()
        admitted = False
        try:
            slot = await self.batcher.reserve_within(self.settings.queue_wait_s)
            admitted = True
            return slot
        except QueueFull as exc:
            raise _overloaded(exc) from exc
        finally:
            if self.spans is not None:
                self.spans.stage("admission", started, time.perf_counter(), attributes={"resnet.admitted": admitted})

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

    async def classify_image(self, data: bytes, slot: Slot) -> Classified:
        """Encoded image → its (classes,) probabilities and what it cost."""
        loop = asyncio.get_running_loop()
        settings = self.settings
        fast = settings.resize == "fast"
        image, started, seconds = await loop.run_in_executor(
            self.preprocess_pool, _timed_preprocess, data, settings.max_image_pixels, fast, self.spec, self.gate
        )
        size = f"{image.width}x{image.height}"
        if self.spans is not None:
            self.spans.stage("preprocess", started, started + seconds, attributes={"resnet.image.size": size})
        computed = await self.batcher.submit(image.tensor, slot)
        return Classified(computed, preprocess_s=seconds, image_size=size)

    async def run_row(self, row: np.ndarray, slot: Slot) -> Classified:
        """A preprocessed (1, *row_shape) row → its (classes,) probabilities, in whichever batch it lands."""
        return Classified(await self.batcher.submit(row, slot))

    async def run_each(
        self, items: Sequence[T], first: Slot, work: Callable[[T, Slot], Awaitable[Classified]]
    ) -> list[Classified | ServiceError]:
        """``work`` on every item at once, each in its own queue place; a ServiceError is that item's result."""

        async def one(item: T, slot: Slot | ServiceError) -> Classified | ServiceError:
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
            self._observe(result)
        return results

    def _observe(self, result: Classified | ServiceError) -> None:
        """The one place per-image metrics are recorded (the batcher records per-batch ones)."""
        if isinstance(result, ServiceError):
            self.metrics.count_image(result.code)
            return
        self.metrics.count_image("ok")
        self.metrics.queue_seconds.observe(result.computed.queue_s)
        if result.image_size is not None:
            self.metrics.preprocess_seconds.observe(result.preprocess_s)
