"""The one place a failure becomes an answer: an exception classified into status, code and message, and written
in the service's ``{"success": false, "error": {...}}`` JSON or a router's own shape."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from resnet_service.core.errors import ServiceError
from resnet_service.web.request_id import request_id_of
from resnet_service.web.schemas import ErrorDetail, ErrorResponse

__all__ = ["ErrorShape", "Failure", "error_answer", "failure_of", "install_error_handlers", "service_error_shape"]

logger = logging.getLogger(__name__)


# How one router writes an error: status, stable code, message, request id → response. The service's own routes use
# ``{"success": false, "error": {...}}``; the v2 router passes the protocol's shape (v2/errors.py).
ErrorShape = Callable[[int, str, str, str | None], JSONResponse]


def service_error_shape(status: int, code: str, message: str, request_id: str | None) -> JSONResponse:
    body = ErrorResponse(error=ErrorDetail(code=code, message=message, request_id=request_id))
    return JSONResponse(body.model_dump(), status_code=status)


@dataclass(frozen=True)
class Failure:
    """What a failed request answers, whatever its transport writes it in."""

    status: int
    code: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)


def failure_of(exc: Exception, where: str, request_id: str | None) -> Failure:
    """Any exception a request raised, classified; faults are logged with their traceback.

    ``where`` names the request for the log (``POST /predict``, ``gRPC ModelInfer``): the request id lets a user
    quote one failure and an operator find its log line and traceback.
    """
    if isinstance(exc, ServiceError):
        # Overload and deadlines are the service protecting itself, not faults: they are counted, not traced.
        if exc.status == 500:
            logger.error("%s failed (request %s): %s", where, request_id, exc.message, exc_info=exc)
        return Failure(exc.status, exc.code, exc.message, dict(exc.headers))
    if isinstance(exc, RequestValidationError):
        problems = "; ".join(
            f"{'.'.join(str(part) for part in err.get('loc', ()))}: {err.get('msg', '')}" for err in exc.errors()
        )
        return Failure(422, "validation_error", problems or "the request is not valid")
    if isinstance(exc, StarletteHTTPException):
        return Failure(exc.status_code, f"http_{exc.status_code}", str(exc.detail), dict(exc.headers or {}))
    # The traceback goes to the log, never into the body.
    logger.error("%s raised an unexpected error (request %s): %r", where, request_id, exc, exc_info=exc)
    return Failure(500, "internal_error", "the server failed to handle this request")


def error_answer(request: Request, exc: Exception, shape: ErrorShape = service_error_shape) -> JSONResponse:
    """Any exception a route raised, as a response in ``shape``."""
    request_id = request_id_of(request.scope)
    failure = failure_of(exc, f"{request.method} {request.url.path}", request_id)
    response = shape(failure.status, failure.code, failure.message, request_id)
    response.headers.update(failure.headers)
    return response


async def _answer(request: Request, exc: Exception) -> JSONResponse:
    return error_answer(request, exc)


def install_error_handlers(app: FastAPI) -> None:
    """Make every failure, expected or not, answer in the ``{"success": false, "error": ...}`` shape."""
    for kind in (ServiceError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(kind, _answer)
