"""Batches through buffers that stay put: one input and one output buffer on the device per model batch size.

``session.run`` with numpy arrays allocates device memory and copies from pageable host memory on every call.
Here each model batch size owns a pinned host staging buffer, an input and an output buffer on the device and an
IO binding, all made once. A run writes its rows into the staging buffer, copies it to the device in one transfer
and runs the bound model; only the (rows, classes) probabilities come back.

ONNX Runtime's CUDA kernels rebuild their cuDNN plans whenever the input shape differs from the last run's: measured
on an H200, a ResNet-50 run took 93 and 121 ms (medians, two runs) when consecutive batches differed in size,
against 4.5 ms at one size. So no session ever sees two shapes in a row: either one session replays a CUDA graph
per batch size (a replay runs no kernel code on the CPU; fixed addresses are what graphs need), or, without
graphs, each batch size has a session of its own.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from resnet_service.inference.batch_sizes import padded_size, stack_padded

__all__ = ["DeviceRunner"]

logger = logging.getLogger(__name__)

# onnxruntime-gpu loads one of these with its CUDA provider; pinning uses the same runtime and context.
_CUDA_RUNTIMES = ("libcudart.so.13", "libcudart.so.12", "libcudart.so")


def _cuda_runtime() -> ctypes.CDLL | None:
    for name in _CUDA_RUNTIMES:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def _pin(array: np.ndarray, runtime: ctypes.CDLL) -> bool:
    """Page-lock ``array`` so host-to-device copies from it run at full speed (cudaHostRegister)."""
    status = runtime.cudaHostRegister(
        ctypes.c_void_p(array.ctypes.data), ctypes.c_size_t(array.nbytes), ctypes.c_uint(0)
    )
    return status == 0


def _unpin(array: np.ndarray, runtime: ctypes.CDLL) -> None:
    runtime.cudaHostUnregister(ctypes.c_void_p(array.ctypes.data))


@dataclass
class _Buffers:
    session: ort.InferenceSession
    host: np.ndarray
    device_input: ort.OrtValue
    device_output: ort.OrtValue
    binding: ort.IOBinding
    options: ort.RunOptions
    pinned: bool


class DeviceRunner:
    """Runs a batch of (1, H, W, C) rows at the smallest model batch size that holds them."""

    def __init__(
        self,
        sessions: Mapping[int, ort.InferenceSession],
        device: str = "cuda",
        cuda_graphs: bool = False,
    ) -> None:
        """``sessions`` maps each model batch size to the session that runs it: the same one for all with CUDA
        graphs (each size then replays its own graph), else one per size."""
        self.sizes = tuple(sorted(sessions))
        first = sessions[self.sizes[0]]
        (model_input,) = first.get_inputs()
        (model_output,) = first.get_outputs()
        classes = model_output.shape[-1]
        if not isinstance(classes, int):
            raise ValueError(f"the model's output {model_output.name} has no fixed class count: {model_output.shape}")
        # A model that preprocesses in its graph takes uint8 pixels: a quarter of the bytes to copy to the GPU.
        dtype = np.uint8 if model_input.type == "tensor(uint8)" else np.float32
        self.device = device
        self.cuda_graphs = cuda_graphs
        # The batcher runs one batch at a time; the lock keeps the shared buffers safe if that ever changes.
        self._lock = threading.Lock()
        self._runtime = _cuda_runtime() if device == "cuda" else None
        if device == "cuda" and self._runtime is None:
            logger.warning("no CUDA runtime library found to pin host buffers: copies to the GPU will be slower")
        self._buffers: dict[int, _Buffers] = {}
        for graph_id, size in enumerate(self.sizes):
            session = sessions[size]
            host = np.zeros((size, *model_input.shape[1:]), dtype=dtype)
            pinned = self._runtime is not None and _pin(host, self._runtime)
            device_input = ort.OrtValue.ortvalue_from_shape_and_type(host.shape, dtype, device, 0)
            device_output = ort.OrtValue.ortvalue_from_shape_and_type((size, classes), np.float32, device, 0)
            binding = session.io_binding()
            binding.bind_ortvalue_input(model_input.name, device_input)
            binding.bind_ortvalue_output(model_output.name, device_output)
            options = ort.RunOptions()
            if cuda_graphs:
                # One captured graph per batch size: a graph replays fixed shapes at fixed addresses.
                options.add_run_config_entry("gpu_graph_id", str(graph_id))
            self._buffers[size] = _Buffers(session, host, device_input, device_output, binding, options, pinned)
        self.pinned = all(buffers.pinned for buffers in self._buffers.values())

    def run(self, rows: Sequence[np.ndarray]) -> np.ndarray:
        """(1, H, W, C) rows → their (len(rows), classes) probabilities, a fresh array the caller may keep."""
        size = padded_size(len(rows), self.sizes)
        buffers = self._buffers[size]
        with self._lock:
            stack_padded(rows, size, out=buffers.host)
            buffers.device_input.update_inplace(buffers.host)
            buffers.session.run_with_iobinding(buffers.binding, buffers.options)
            # The output buffer is overwritten by the next run of this size: the caller gets its own copy.
            return np.array(buffers.device_output.numpy()[: len(rows)])

    def close(self) -> None:
        with self._lock:
            if self._runtime is not None:
                for buffers in self._buffers.values():
                    if buffers.pinned:
                        _unpin(buffers.host, self._runtime)
            self._buffers.clear()
