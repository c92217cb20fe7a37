"""Between a worker and the model process: length-prefixed JSON messages over a Unix socket, and the layout of the
shared memory each connection has for one batch.

The messages carry only names, counts and sequence numbers; the rows and the probabilities are in the memory.
"""

from __future__ import annotations

import asyncio
import json
import math
import struct
from typing import Any

import numpy as np

from resnet_service.inference.model_contract import InputSpec

__all__ = ["batch_arrays", "batch_bytes", "read_message", "write_message"]

_LENGTH = struct.Struct("!I")


async def read_message(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """The next message, or None once the other side has closed the connection."""
    try:
        (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
        return json.loads(await reader.readexactly(length))
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


def write_message(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
    body = json.dumps(message).encode()
    writer.write(_LENGTH.pack(len(body)) + body)


def _row_bytes(spec: InputSpec) -> int:
    return math.prod(spec.row_shape) * np.dtype(spec.dtype).itemsize


def batch_bytes(capacity: int, spec: InputSpec, classes: int) -> int:
    """The shared memory one connection needs: ``capacity`` rows, then their float32 probabilities."""
    return capacity * (_row_bytes(spec) + classes * 4)


def batch_arrays(buffer: memoryview, capacity: int, spec: InputSpec, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows and the probabilities, as views of the shared memory both processes map."""
    inputs = np.ndarray((capacity, *spec.row_shape), dtype=spec.dtype, buffer=buffer)
    outputs = np.ndarray((capacity, classes), dtype=np.float32, buffer=buffer, offset=capacity * _row_bytes(spec))
    return inputs, outputs
