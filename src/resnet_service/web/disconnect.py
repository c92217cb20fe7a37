"""Stop a request's work when its client goes away, so nobody's abandoned upload costs model time.

Once the body is read, the ASGI ``receive`` channel only ever says ``http.disconnect``: uvicorn sends it when the
client closes the connection (or nginx closes it on the client's behalf), and after the response is sent. The
work and that wait race; if the disconnect comes first the work is cancelled, which drops a queued request from
the batcher before it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

from starlette.types import Receive

from resnet_service.core.errors import ClientClosedRequest

__all__ = ["cancel_on_disconnect"]

T = TypeVar("T")


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def cancel_on_disconnect(receive: Receive, work: Coroutine[Any, Any, T]) -> T:
    """``await work``, or cancel it and raise ``ClientClosedRequest`` if the client disconnects first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Also reached when this request itself is cancelled (its deadline): neither task may outlive it.
        watcher.cancel()
        if not task.done():
            task.cancel()
    if task.done() and not task.cancelled():
        return task.result()
    with contextlib.suppress(asyncio.CancelledError):
        # The work was cancelled on purpose; wait for it to unwind so its queue place is given back first.
        await task
    raise ClientClosedRequest("the client disconnected before its answer was ready")
