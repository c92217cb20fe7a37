"""The v2 routes' own error shape: the protocol's ``{"error": "..."}``, which its clients parse.

Every v2 route is a V2Route, so whatever it or its dependencies raise (a missing model, a bad key, overload)
answers in that shape, through the same classification as the service's other routes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from resnet_service.v2.messages import V2Error
from resnet_service.web.error_answers import error_answer

__all__ = ["V2Route", "v2_error_shape"]


def v2_error_shape(status: int, code: str, message: str, request_id: str | None) -> JSONResponse:
    return JSONResponse(V2Error(error=f"{message} (request {request_id})").model_dump(), status_code=status)


class V2Route(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def answer_in_v2_shape(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:  # every failure becomes an answer, in this router's shape
                return error_answer(request, exc, v2_error_shape)

        return answer_in_v2_shape
