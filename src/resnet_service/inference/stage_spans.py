"""Trace spans for a request's stages: its wait for a queue place, its preprocessing, its wait for a batch, and
the batch it ran in.

The spans are made after the fact from the times the stages already measure for the metrics, so tracing adds no
clock reads to the work itself. A batch serves several requests, so it gets a span of its own, under the first of
them and linked to each, and each request gets an ``inference`` span for its share, linked back to the batch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, Tracer
from opentelemetry.util.types import AttributeValue

__all__ = ["StageSpans"]


def _wall_offset_ns() -> int:
    """What turns a ``time.perf_counter()`` reading into the wall-clock nanoseconds spans are stamped with."""
    return time.time_ns() - round(time.perf_counter() * 1e9)


@dataclass(frozen=True)
class StageSpans:
    """Spans for one model's stages, as children of the request span current where each stage was entered."""

    tracer: Tracer
    model: str

    def stage(
        self,
        name: str,
        started: float,
        ended: float,
        parent: Context | None = None,
        links: Sequence[Link] = (),
        attributes: dict[str, AttributeValue] | None = None,
        offset_ns: int | None = None,
    ) -> None:
        """A span over [started, ended] (perf_counter readings) under ``parent`` or the current context's span, when
        that one is sampled: a request the sampler left out costs no stage spans.

        Spans made together share one ``offset_ns``, so that equal readings stay equal times.
        """
        if trace.get_current_span(parent).is_recording():
            self._span(name, started, ended, parent, links, attributes, offset_ns)

    def _span(
        self,
        name: str,
        started: float,
        ended: float,
        parent: Context | None,
        links: Sequence[Link] = (),
        attributes: dict[str, AttributeValue] | None = None,
        offset_ns: int | None = None,
    ) -> Span:
        offset_ns = _wall_offset_ns() if offset_ns is None else offset_ns
        span = self.tracer.start_span(
            name,
            context=parent,
            links=links,
            attributes={"resnet.model": self.model, **(attributes or {})},
            start_time=offset_ns + round(started * 1e9),
        )
        span.end(end_time=offset_ns + round(ended * 1e9))
        return span

    @staticmethod
    def current() -> Context | None:
        """The context a row is submitted from, if its request is sampled: its queue and inference spans are made
        later, in the batcher."""
        context = otel_context.get_current()
        return context if trace.get_current_span(context).is_recording() else None

    def batch(self, requests: Sequence[tuple[Context, float]], size: int, started: float, ran_s: float) -> None:
        """One batch's span, linked to each sampled request in it, and each one's queue and inference spans.

        ``requests``: each sampled row's submitting context and its perf_counter time of joining the queue (a
        request's row is here even if it has given up since); ``size``: every row in the batch.
        """
        if not requests:
            return
        ended = started + ran_s
        # One link per request, however many of its images share the batch.
        request_spans = {}
        for parent, _ in requests:
            span_context = trace.get_current_span(parent).get_span_context()
            request_spans.setdefault((span_context.trace_id, span_context.span_id), span_context)
        links = [Link(span_context) for span_context in request_spans.values()]
        offset = _wall_offset_ns()
        batch_size = {"resnet.batch.size": size}
        # Under the first request, so that it is sampled whenever one of its requests is; linked to all of them.
        batch = self._span("batch", started, ended, requests[0][0], links, batch_size, offset)
        to_batch = [Link(batch.get_span_context())]
        for parent, queued_at in requests:
            self._span("queue", queued_at, started, parent, offset_ns=offset)
            self._span("inference", started, ended, parent, to_batch, batch_size, offset)
