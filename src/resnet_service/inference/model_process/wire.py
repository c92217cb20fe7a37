"""The messages between a worker and the model process: length-prefixed JSON over a Unix socket.

They carry only names, counts and timings; the rows and the probabilities themselves are in shared memory.
"""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

__all__ = ["read_message", "write_message"]

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
