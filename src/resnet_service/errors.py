"""Errors the service answers with, and the one place they become JSON.

ServiceError                 an expected failure with an HTTP status and a stable code
├── InvalidImage             400: the upload is empty, truncated or not an image
├── PayloadTooLarge          413: the upload is over RESNET_MAX_UPLOAD_BYTES
├── ImageTooLarge            413: the image is over RESNET_MAX_IMAGE_PIXELS
├── TooManyImages            413: more images in one request than RESNET_MAX_IMAGES_PER_REQUEST
├── UnsupportedImageFormat   415: an image, but in a format the service does not decode
├── MalformedRequest         400: the multipart or JSON body cannot be parsed
├── UnsupportedMediaType     415: the body is not multipart/form-data, an image, or JSON
├── MissingImageField        422: the multipart or JSON body has no ``image`` (or ``url``) field
├── UrlNotAllowed            403: an image URL while RESNET_URL_INPUTS is off, or one it refuses
├── UrlFetchFailed           502: the image URL could not be fetched (network, status, time)
├── InvalidInferenceRequest  400: a v2 infer request the protocol does not allow, or names unknown tensors
├── ModelNotFound            404: a route names a model or version this server does not serve
├── ModelLoadFailed          400: a model asked to load (or reload) failed; the old version keeps serving
├── ModelControlRefused      409: unloading the default model
├── Unauthorized             401: RESNET_API_KEYS is set and the request has no valid bearer key
├── ModelNotReady            503: the model is not loaded or warmed up yet
├── Overloaded               503: RESNET_MAX_QUEUE requests are already waiting
├── DeadlineExceeded         504: the request passed RESNET_REQUEST_TIMEOUT_S before it was answered
├── InferenceFailed          500: ONNX Runtime raised while running the model
└── ClientClosedRequest      499: the client went away before its upload arrived

StartupError                 the service cannot start: no model file, a corrupt one, no CUDA
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from resnet_service.api.request_id import request_id_of
from resnet_service.api.schemas import ErrorDetail, ErrorResponse

__all__ = [
    "ServiceError",
    "InvalidImage",
    "PayloadTooLarge",
    "ImageTooLarge",
    "TooManyImages",
    "UnsupportedImageFormat",
    "UnsupportedMediaType",
    "MissingImageField",
    "UrlNotAllowed",
    "UrlFetchFailed",
    "InvalidInferenceRequest",
    "ModelNotFound",
    "ModelLoadFailed",
    "ModelControlRefused",
    "MalformedRequest",
    "ModelNotReady",
    "Overloaded",
    "DeadlineExceeded",
    "Unauthorized",
    "InferenceFailed",
    "ClientClosedRequest",
    "StartupError",
    "ErrorShape",
    "error_answer",
    "Failure",
    "failure_of",
    "install_error_handlers",
    "service_error_shape",
]

logger = logging.getLogger(__name__)


class ServiceError(Exception):
    """Base of every error the service answers with on purpose."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class InvalidImage(ServiceError):
    """Raised when the upload is empty, truncated, or not an image at all."""

    status = 400
    code = "invalid_image"


class PayloadTooLarge(ServiceError):
    """Raised while reading the body, as soon as it passes the byte limit."""

    status = 413
    code = "payload_too_large"


class ImageTooLarge(ServiceError):
    """Raised from the image header, before any pixel buffer exists, when width × height is over the limit."""

    status = 413
    code = "image_too_large"


class TooManyImages(ServiceError):
    """Raised once the body is read, when it carries more images than RESNET_MAX_IMAGES_PER_REQUEST."""

    status = 413
    code = "too_many_images"


class UnsupportedImageFormat(ServiceError):
    """Raised for a recognised image format that the service does not accept (SVG, HEIC, ICO, ...)."""

    status = 415
    code = "unsupported_image_format"


class MalformedRequest(ServiceError):
    """Raised when a multipart body is cut short or has no boundary, or a JSON body does not parse."""

    status = 400
    code = "malformed_request"


class UnsupportedMediaType(ServiceError):
    """Raised when /predict's body is not multipart/form-data, an image, or JSON (a v2 body: not JSON)."""

    status = 415
    code = "unsupported_media_type"


class MissingImageField(ServiceError):
    """Raised when a multipart body carries no ``image`` file field."""

    status = 422
    code = "missing_image_field"


class UrlNotAllowed(ServiceError):
    """Raised for an image URL while URL inputs are off, or one whose scheme, host or address is refused."""

    status = 403
    code = "url_not_allowed"


class UrlFetchFailed(ServiceError):
    """Raised when an allowed image URL cannot be fetched: a network error, a status other than 200, too slow."""

    status = 502
    code = "url_fetch_failed"


class InvalidInferenceRequest(ServiceError):
    """Raised while reading a v2 infer request: bad JSON, unknown tensor names, shapes that do not match the data."""

    status = 400
    code = "invalid_inference_request"


class ModelNotFound(ServiceError):
    """Raised when a route names a model this server does not serve, or a version other than 1."""

    status = 404
    code = "model_not_found"


class ModelLoadFailed(ServiceError):
    """Raised when a model asked to load cannot be loaded or verified; whatever served before still does."""

    status = 400
    code = "model_load_failed"


class ModelControlRefused(ServiceError):
    """Raised when asked to unload the default model, which /predict without ?model= needs."""

    status = 409
    code = "model_control_refused"


class ModelNotReady(ServiceError):
    """Raised when a prediction arrives before the model has loaded and warmed up."""

    status = 503
    code = "model_not_ready"


class Overloaded(ServiceError):
    """Raised, before the body is read, when the queue stayed full (RESNET_MAX_QUEUE) for RESNET_QUEUE_WAIT_S."""

    status = 503
    code = "overloaded"


class DeadlineExceeded(ServiceError):
    """Raised when a request is still unanswered at its deadline; its queued work is dropped."""

    status = 504
    code = "deadline_exceeded"


class Unauthorized(ServiceError):
    """Raised when API keys are configured and the request carries none of them as a bearer token."""

    status = 401
    code = "unauthorized"


class InferenceFailed(ServiceError):
    """Raised when ONNX Runtime fails inside a session run."""

    status = 500
    code = "inference_failed"


class ClientClosedRequest(ServiceError):
    """Raised when the client disconnects mid-upload; nobody reads the answer (499 is nginx's code for it)."""

    status = 499
    code = "client_closed_request"


class StartupError(Exception):
    """Raised while loading the model when the service cannot serve; the message names the file and the fix."""


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
