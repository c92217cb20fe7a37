"""``X-Request-ID``: kept from the client or nginx, made when absent, and returned on every answer.

A plain ASGI middleware rather than Starlette's BaseHTTPMiddleware, which would wrap ``receive`` and hide the
client's disconnect from the routes.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import MutableMapping
from typing import Any

from opentelemetry import trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from resnet_service.core.tracing import REQUEST_ID_ATTRIBUTE

__all__ = ["RequestIdMiddleware", "accepted_request_id", "request_id_of", "REQUEST_ID_HEADER"]

REQUEST_ID_HEADER = b"x-request-id"
# Echoed into a response header and into logs, so arbitrary client bytes are replaced, not passed on.
_ACCEPTED = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


def accepted_request_id(given: str | None) -> str:
    """The client's id if it is a safe one, else a new one."""
    return given if given is not None and _ACCEPTED.fullmatch(given) else uuid.uuid4().hex


def request_id_of(scope: MutableMapping[str, Any]) -> str | None:
    """The id the middleware gave this request, or None outside it."""
    return scope.get("state", {}).get("request_id")


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp, traced: bool = False) -> None:
        self.app = app
        # With traces on, the request span (opened outside this middleware) carries the id as an attribute.
        self.traced = traced

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((value.decode("latin-1") for name, value in scope["headers"] if name == REQUEST_ID_HEADER), None)
        request_id = accepted_request_id(given)
        scope.setdefault("state", {})["request_id"] = request_id
        if self.traced:
            trace.get_current_span().set_attribute(REQUEST_ID_ATTRIBUTE, request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER, request_id.encode())]
            await send(message)

        await self.app(scope, receive, send_with_id)
