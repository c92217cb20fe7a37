"""The model compiled by OpenVINO for the CPU: the same ONNX file, its metadata, fp32 or bf16, run asynchronously.

OpenVINO reads the ONNX file itself, metadata included, so a model serves the same contract on either runtime. Its
CPU plugin picks bf16 by itself where the CPU has it; fp32 is therefore asked for explicitly, and bf16 only on a
CPU that has it (never a silent fallback either way). The model keeps its dynamic batch dimension: OpenVINO
prepares each new batch shape on its first run, which the warm-up pays for every batch size (measured: static
shapes ran no faster).

A run is an asynchronous infer request: OpenVINO's own thread runs it and a callback wakes the event loop, so no
Python thread waits on the model, and with two requests one batch can start while the previous one's results are
still being read.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from resnet_service.core.errors import StartupError
from resnet_service.inference.batch_sizes import padded_size, stack_padded

if TYPE_CHECKING:
    import openvino as ov

__all__ = ["OpenVinoModel", "Precision", "check_precision", "openvino_installed"]

logger = logging.getLogger(__name__)

Precision = Literal["fp32", "bf16"]
# OpenVINO's names for the precisions, as INFERENCE_PRECISION_HINT takes them.
_HINTS: dict[str, str] = {"fp32": "f32", "bf16": "bf16"}
# What OPTIMIZATION_CAPABILITIES lists for a CPU that runs the precision natively.
_CAPABILITIES: dict[str, str] = {"fp32": "FP32", "bf16": "BF16"}
# OpenVINO's names for the input element types the service can feed.
_ELEMENT_TYPES = {"f32": "float32", "u8": "uint8"}


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def check_precision(precision: Precision, capabilities: Sequence[str], cpu: str) -> None:
    """bf16 on a CPU without bf16 instructions is a startup error: OpenVINO would emulate it, slower than fp32."""
    if _CAPABILITIES[precision] not in capabilities:
        raise StartupError(
            f"RESNET_PRECISION={precision}, but this CPU ({cpu}) cannot run {precision} natively (OpenVINO finds "
            f"{', '.join(capabilities)}): set RESNET_PRECISION=fp32"
        )


def _core() -> ov.Core:
    try:
        import openvino as ov
    except ImportError as exc:
        raise StartupError(
            f"RESNET_RUNTIME=openvino, but OpenVINO cannot be imported ({exc}): install the openvino extra "
            "(pip install 'resnet-service[openvino]'), or set RESNET_RUNTIME=onnxruntime"
        ) from exc
    return ov.Core()


def _metadata(model: ov.Model) -> dict[str, str]:
    # OpenVINO keeps an ONNX file's metadata_props under the "framework" key of the model's runtime info.
    info = model.get_rt_info()
    if "framework" not in info:
        return {}
    return dict(sorted((key, value.astype(str)) for key, value in info["framework"].items()))


def _name(port: Any) -> str:
    names = sorted(port.get_names())
    return names[0] if names else port.get_any_name()


def _shape(port: Any) -> list[int | str]:
    dims = port.get_partial_shape()
    return [dim.get_length() if dim.is_static else "batch" if i == 0 else "?" for i, dim in enumerate(dims)]


@dataclass
class OpenVinoModel:
    """A compiled model and its infer requests: a pool for the event loop's runs, each used by one batch at a
    time, and one more for runs from a plain thread (``run``)."""

    compiled: Any = field(repr=False)
    path: Path
    precision: Precision
    threads: int
    input_name: str
    input_shape: list[int | str]
    output_name: str
    output_shape: list[int | str]
    metadata: dict[str, str]
    # float32, or uint8 for a model that takes pixels and preprocesses them itself.
    input_type: str = "float32"
    batch_sizes: tuple[int, ...] = ()
    request_count: int = 0
    # Touched only on the event loop: the idle requests, and the runs waiting for one, oldest first.
    _idle: deque[Any] = field(default_factory=deque, repr=False)
    _waiters: deque[asyncio.Future[Any]] = field(default_factory=deque, repr=False)
    _requests: list[Any] = field(default_factory=list, repr=False)
    _sync_request: Any = field(default=None, repr=False)
    _sync_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, path: Path, precision: Precision, threads: int, requests: int = 1) -> OpenVinoModel:
        core = _core()
        capabilities = list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
        check_precision(precision, capabilities, str(core.get_property("CPU", "FULL_DEVICE_NAME")))
        try:
            model = core.read_model(str(path))
            compiled = core.compile_model(
                model,
                "CPU",
                {
                    # One stream using every thread: a batch uses all of them, and a second infer request only
                    # queues behind the first, ready to start the moment it ends.
                    "PERFORMANCE_HINT": "LATENCY",
                    "NUM_STREAMS": 1,
                    "INFERENCE_NUM_THREADS": threads,
                    "INFERENCE_PRECISION_HINT": _HINTS[precision],
                },
            )
        except Exception as exc:
            # OpenVINO's messages span lines (one per layer of its C++ stack): one line in the log.
            reason = " ".join(str(exc).split())
            raise StartupError(
                f"model file {path} could not be loaded by OpenVINO ({reason}): re-export it with `make model` or "
                "`resnet-service export`, or set RESNET_RUNTIME=onnxruntime"
            ) from exc
        if len(compiled.inputs) != 1 or len(compiled.outputs) != 1:
            raise StartupError(
                f"model file {path} has {len(compiled.inputs)} inputs and {len(compiled.outputs)} outputs, not one each"
            )
        (model_input,), (model_output,) = compiled.inputs, compiled.outputs
        loaded = cls(
            compiled=compiled,
            path=path,
            precision=precision,
            threads=threads,
            input_name=_name(model_input),
            input_shape=_shape(model_input),
            output_name=_name(model_output),
            output_shape=_shape(model_output),
            metadata=_metadata(model),
            input_type=_ELEMENT_TYPES.get(model_input.get_element_type().get_type_name(), "other"),
            request_count=requests,
        )
        loaded._requests = [compiled.create_infer_request() for _ in range(requests)]
        loaded._idle.extend(loaded._requests)
        return loaded

    def _batch(self, rows: Sequence[np.ndarray]) -> np.ndarray:
        size = padded_size(len(rows), self.batch_sizes) if self.batch_sizes else len(rows)
        return rows[0] if size == 1 else stack_padded(rows, size)

    def run(self, rows: Sequence[np.ndarray]) -> np.ndarray:
        """(1, *row_shape) rows → their (len(rows), classes) probabilities, in the calling thread."""
        with self._sync_lock:
            if self._sync_request is None:
                self._sync_request = self.compiled.create_infer_request()
            self._sync_request.infer({0: self._batch(rows)}, share_inputs=True)
            return np.array(self._sync_request.get_output_tensor(0).data[: len(rows)])

    async def _acquire(self) -> Any:
        if self._idle:
            return self._idle.popleft()
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # A request was handed over just as this run was cancelled: it goes to the next.
                self._release(waiter.result())
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def _release(self, request: Any) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(request)
                return
        self._idle.append(request)

    async def run_async(self, rows: Sequence[np.ndarray]) -> np.ndarray:
        """``run``, started on an idle infer request; OpenVINO's callback wakes the event loop when it ends."""
        loop = asyncio.get_running_loop()
        request = await self._acquire()
        done: asyncio.Future[None] = loop.create_future()

        def finished(_: object) -> None:
            # Runs on OpenVINO's thread; the future belongs to the loop.
            loop.call_soon_threadsafe(_resolve, done)

        try:
            batch = self._batch(rows)
            request.set_callback(finished, None)
            request.start_async({0: batch}, share_inputs=True)
        except BaseException:
            self._release(request)
            raise
        try:
            await asyncio.shield(done)
        except asyncio.CancelledError:
            # OpenVINO still reads ``batch``: both are kept until it has finished, then the request is released.
            done.add_done_callback(lambda _, kept=batch: self._release(request))
            raise
        try:
            # wait() returns at once here, and raises what the run failed with.
            request.wait()
            return np.array(request.get_output_tensor(0).data[: len(rows)])
        finally:
            self._release(request)

    def close(self) -> None:
        # Each request is waited for, so none still runs when the compiled model goes.
        for request in [*self._requests, self._sync_request]:
            if request is not None:
                request.wait()
        self._idle.clear()
        self._requests.clear()
        self._sync_request = None


def _resolve(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)
