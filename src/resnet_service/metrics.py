"""Prometheus metrics, split by stage as Triton splits them: queue wait, preprocessing, inference compute.

Each app has its own registry, so two apps in one process (the tests) never share counts, and ``/metrics``
serves exactly this service's series plus the process's own (RSS, CPU, open files).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector

__all__ = ["Metrics"]

# Seconds, from a single fast stage (a few ms) to a request queued behind a full batch under overload.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_SIZE_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128, 256)


class Metrics:
    """The service's series, registered on a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
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
            "resnet_queue_wait_seconds", "Per image: time from joining the batcher's queue to its batch starting."
        )
        self.preprocess_seconds = self._seconds(
            "resnet_preprocess_seconds", "Per image: decode, resize and normalise, in the preprocessing pool."
        )
        self.inference_seconds = self._seconds(
            "resnet_inference_seconds", "Per batch: ONNX Runtime compute for the whole batch."
        )
        self.batch_size = Histogram(
            "resnet_batch_size", "Rows per ONNX Runtime call.", buckets=BATCH_SIZE_BUCKETS, registry=registry
        )
        self.images = Counter(
            "resnet_images", "Images (or v2 tensor rows) classified, by outcome.", ["outcome"], registry=registry
        )
        self.in_flight = Gauge("resnet_requests_in_flight", "HTTP requests being handled right now.", registry=registry)
        self.queue_depth = Gauge(
            "resnet_queue_depth",
            "Images admitted and not yet in a running batch (decoding or queued).",
            registry=registry,
        )
        self.model = Info(
            "resnet_model", "The model being served: weights source and execution provider.", registry=registry
        )

    def _seconds(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Histogram:
        return Histogram(name, documentation, labels, buckets=LATENCY_BUCKETS, registry=self.registry)

    def watch_queue(self, depth: Callable[[], int]) -> None:
        """Read the queue depth at scrape time, so the gauge is never stale."""
        self.queue_depth.set_function(lambda: float(depth()))

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.inference_seconds.observe(seconds)
