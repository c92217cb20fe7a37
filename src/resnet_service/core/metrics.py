"""Prometheus metrics, split by stage as Triton splits them: queue wait, preprocessing, inference compute.

Each app has its own registry, so two apps in one process (the tests) never share counts, and ``/metrics``
serves exactly this service's series plus the process's own (RSS, CPU, open files).

With RESNET_WORKERS > 1 each worker process writes its series to files in ``multiprocess_dir``
(prometheus-client's multiprocess mode), and ``/metrics``, whichever worker answers it, adds them up: counters and
histograms summed, the in-flight and queue-depth gauges summed over the live workers. The process series are left
out then, since they would describe only the worker that happened to answer.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    multiprocess,
)

__all__ = ["Metrics", "ModelMetrics"]

# Seconds, from a single fast stage (a few ms) to a request queued behind a full batch under overload.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_SIZE_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128, 256)


class Metrics:
    """The service's series, registered on a registry of their own."""

    def __init__(self, multiprocess_dir: Path | None = None) -> None:
        self.registry = CollectorRegistry()
        self.multiprocess_dir = multiprocess_dir
        if multiprocess_dir is None:
            ProcessCollector(registry=self.registry)
        registry = self.registry
        self.requests = Counter(
            "resnet_requests",
            "HTTP requests answered, by route and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.request_seconds = self._seconds(
            "resnet_request_duration_seconds",
            "Time from the request's first byte to its last response byte.",
            ["method", "route"],
        )
        self.queue_seconds = self._seconds(
            "resnet_queue_wait_seconds",
            "Per image: time from joining the batcher's queue to its batch starting.",
            ["model"],
        )
        self.preprocess_seconds = self._seconds(
            "resnet_preprocess_seconds",
            "Per image: decode, resize and normalise, in the preprocessing pool.",
            ["model"],
        )
        self.inference_seconds = self._seconds(
            "resnet_inference_seconds", "Per batch: ONNX Runtime compute for the whole batch.", ["model"]
        )
        self.batch_size = Histogram(
            "resnet_batch_size", "Rows per ONNX Runtime call.", ["model"], buckets=BATCH_SIZE_BUCKETS, registry=registry
        )
        self.images = Counter(
            "resnet_images",
            "Images (or v2 tensor rows) classified, by model and outcome.",
            ["model", "outcome"],
            registry=registry,
        )
        self.abandoned = Counter(
            "resnet_images_abandoned",
            "Images whose caller gave up (disconnect, deadline): stage=queued, skipped before their batch ran (no "
            "model time spent); stage=computed, run by the model for nobody.",
            ["model", "stage"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "resnet_requests_in_flight",
            "Requests being handled right now, over HTTP and gRPC.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.queue_depth = Gauge(
            "resnet_queue_depth",
            "Images admitted and not yet in a running batch (decoding or queued), per model.",
            ["model"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        # An info metric as a gauge of 1, which is what the text format makes of one, since multiprocess mode
        # has no Info.
        # Each model's info labels, by name: what to take out when it is reloaded or unloaded.
        self._described: dict[str, dict[str, str]] = {}
        self.model = Gauge(
            "resnet_model_info",
            "Each model being served: its file, weights source, runtime, execution provider, precision and version "
            "(loads so far).",
            ["name", "path", "weights", "random_weights", "provider", "runtime", "precision", "version"],
            registry=registry,
            multiprocess_mode="max",
        )

    def _seconds(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Histogram:
        return Histogram(name, documentation, labels, buckets=LATENCY_BUCKETS, registry=self.registry)

    def watch_queue(self, model: str, depth: Callable[[], int]) -> None:
        """Read a model's queue depth at scrape time, so the gauge is never stale (one process only)."""
        self.queue_depth.labels(model).set_function(lambda: float(depth()))

    async def publish_queue_depths(self, depths: Callable[[], dict[str, int]], every_s: float = 0.25) -> None:
        """Write this worker's queue depths to its file every ``every_s``: another worker may answer the scrape."""
        while True:
            for model, depth in depths().items():
                self.queue_depth.labels(model).set(depth)
            await asyncio.sleep(every_s)

    def describe_model(self, labels: dict[str, str]) -> None:
        """One model's info series; a model's earlier versions are taken out, so each name has one series."""
        self._forget_info(labels["name"])
        self.model.labels(**labels).set(1)
        self._described[labels["name"]] = labels

    def _forget_info(self, name: str) -> None:
        earlier = self._described.pop(name, None)
        if earlier is not None:
            self.model.remove(*earlier.values())

    def forget_model(self, name: str) -> None:
        """An unloaded model's info and queue depth leave /metrics; its counters stay, as counters do."""
        self._forget_info(name)
        try:
            self.queue_depth.remove(name)
        except KeyError:
            pass  # never had a queue-depth series (not yet loaded)

    def for_model(self, name: str) -> ModelMetrics:
        return ModelMetrics(self, name)

    def exposition(self) -> bytes:
        """The text format: this process's series, or with workers, every live worker's added up."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(self.multiprocess_dir))
        return generate_latest(registry)

    def close(self) -> None:
        """A worker that stops takes its live gauges (in flight, queue depth) out of the sums."""
        if self.multiprocess_dir is not None:
            multiprocess.mark_process_dead(os.getpid(), str(self.multiprocess_dir))


class ModelMetrics:
    """One model's per-image and per-batch series: the service's, with the model's name as their label."""

    def __init__(self, metrics: Metrics, name: str) -> None:
        self.name = name
        self.queue_seconds = metrics.queue_seconds.labels(name)
        self.preprocess_seconds = metrics.preprocess_seconds.labels(name)
        self._inference_seconds = metrics.inference_seconds.labels(name)
        self._batch_size = metrics.batch_size.labels(name)
        self._images = metrics.images
        self._abandoned = metrics.abandoned

    def count_image(self, outcome: str) -> None:
        self._images.labels(self.name, outcome).inc()

    def observe_abandoned(self, stage: str, count: int) -> None:
        self._abandoned.labels(self.name, stage).inc(count)

    def observe_batch(self, size: int, seconds: float) -> None:
        self._batch_size.observe(size)
        self._inference_seconds.observe(seconds)
