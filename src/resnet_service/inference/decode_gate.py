"""Share the CPU between decoding and the model: every decode thread runs while the model is idle, fewer while it runs.

ONNX Runtime splits each operator across its intra-op threads and waits for the slowest, so a decode running beside
a model run slows the whole run, not one core's share of it: with a second decode thread beside fp32 or INT8
ResNet-50 on two cores, each request cost about 13% more CPU. With a fast model (INT8 on many cores, a GPU, a null
model) the model is mostly idle and decoding is what limits throughput, so every core should decode. Preprocessing
threads therefore take turns at this gate: up to ``idle_limit`` decode at once while the model is idle, and
``busy_limit`` while it runs. A decode already under way when a run starts is left to finish.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["DecodeGate"]


class DecodeGate:
    def __init__(self, idle_limit: int, busy_limit: int) -> None:
        if not 1 <= busy_limit <= idle_limit:
            raise ValueError(f"need 1 <= busy_limit <= idle_limit, not {busy_limit} and {idle_limit}")
        self.idle_limit = idle_limit
        self.busy_limit = busy_limit
        self._condition = threading.Condition()
        self._decoding = 0
        self._model_runs = 0

    def _limit(self) -> int:
        return self.busy_limit if self._model_runs else self.idle_limit

    @property
    def decoding_now(self) -> int:
        return self._decoding

    @contextmanager
    def decoding(self) -> Iterator[None]:
        """Hold one decode turn, waiting while the limit for the model's state is reached."""
        with self._condition:
            self._condition.wait_for(lambda: self._decoding < self._limit())
            self._decoding += 1
        try:
            yield
        finally:
            with self._condition:
                self._decoding -= 1
                self._condition.notify()

    @contextmanager
    def model_running(self) -> Iterator[None]:
        """Mark a model run; decode threads held back by it go on when it ends."""
        with self._condition:
            self._model_runs += 1
        try:
            yield
        finally:
            with self._condition:
                self._model_runs -= 1
                self._condition.notify_all()
