"""Errors the service answers with: each has its HTTP status and a stable code (``web/error_answers.py`` writes
them as JSON).

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
]


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
