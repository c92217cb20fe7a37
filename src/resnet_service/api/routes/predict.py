"""``POST /predict``: the Flask + Keras tutorial's API, unchanged on the wire, for any served model."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import TypeAdapter

from resnet_service.core.errors import ServiceError
from resnet_service.inference.labels import Labels
from resnet_service.inference.pipeline import Pipeline
from resnet_service.web.deps import ModelsDep, UrlPolicyDep
from resnet_service.web.disconnect import cancel_on_disconnect
from resnet_service.web.observe import stats_of
from resnet_service.web.request_id import request_id_of
from resnet_service.web.schemas import ErrorDetail, ErrorResponse, PredictResponse
from resnet_service.web.upload import read_images
from resnet_service.web.url_fetch import UrlPolicy

__all__ = ["router"]

router = APIRouter(tags=["predict"])

IMAGE_FIELD = "image"


def _error(description: str, code: str, message: str) -> dict[str, Any]:
    return {
        "model": ErrorResponse,
        "description": description,
        "content": {"application/json": {"example": {"success": False, "error": {"code": code, "message": message}}}},
    }


PREDICT_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("Empty, truncated or not an image.", "invalid_image", "the upload is not an image Pillow can identify"),
    403: _error(
        'An image URL ({"url": ...}) while RESNET_URL_INPUTS is off, or one whose scheme, host or address is refused.',
        "url_not_allowed",
        "image URLs are not accepted here (RESNET_URL_INPUTS is off): send the image itself",
    ),
    413: _error(
        "Over RESNET_MAX_UPLOAD_BYTES (the whole body), RESNET_MAX_IMAGE_PIXELS, or RESNET_MAX_IMAGES_PER_REQUEST.",
        "payload_too_large",
        "the image file is over the 10485760-byte limit",
    ),
    415: _error(
        "An image format the service does not decode (SVG, HEIC, ICO, ...), or a body that is neither multipart, "
        "an image, nor JSON.",
        "unsupported_image_format",
        "SVG images are not supported; send BMP, GIF, JPEG, MPO, PNG, TIFF, WEBP",
    ),
    404: _error("`model` names no model this server serves.", "model_not_found", "no model named 'dogs'"),
    422: _error(
        "No `image` field in the multipart or JSON body (missing_image_field), or a bad `top_k` (validation_error).",
        "missing_image_field",
        "the multipart body has no 'image' field",
    ),
    500: _error("The model failed to run.", "inference_failed", "the model failed to run"),
    502: _error(
        "An allowed image URL could not be fetched: a network error, a status other than 200, or too slow.",
        "url_fetch_failed",
        "https://images.example.com/dog.jpg answered 404",
    ),
    503: _error(
        "The model is still loading, or RESNET_MAX_QUEUE requests are already waiting and no place came free "
        "within RESNET_QUEUE_WAIT_S (retry after Retry-After).",
        "overloaded",
        "16 requests are already waiting (the limit is 16) and no place came free within 1 s; retry shortly",
    ),
    504: _error(
        "The request was not answered within RESNET_REQUEST_TIMEOUT_S; its queued work was dropped.",
        "deadline_exceeded",
        "the request was not answered within its 30-second deadline",
    ),
}

# FastAPI would parse an UploadFile parameter before the handler runs, spooling large bodies to disk; the body is
# streamed by read_images instead, so the three bodies it takes are described here, the form first for the docs
# page's file picker.
IMAGE_BODIES: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [IMAGE_FIELD],
                    "properties": {
                        IMAGE_FIELD: {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "minItems": 1,
                            "description": "A JPEG, PNG, GIF, BMP, WebP or TIFF file; repeat the field for several.",
                        }
                    },
                }
            },
            "image/*": {"schema": {"type": "string", "format": "binary", "description": "The image file itself."}},
            "application/json": {
                "schema": {
                    "type": "object",
                    "description": f"`{IMAGE_FIELD}`, or `url` where RESNET_URL_INPUTS allows it.",
                    "properties": {
                        "url": {
                            "description": "Where the service fetches the image (or a list of them); off unless "
                            "RESNET_URL_INPUTS is set.",
                            "oneOf": [
                                {"type": "string", "format": "uri"},
                                {"type": "array", "items": {"type": "string", "format": "uri"}},
                            ],
                        },
                        IMAGE_FIELD: {
                            "description": "The image file in base64 (or a data: URL), or a list of them.",
                            "oneOf": [
                                {"type": "string", "contentEncoding": "base64"},
                                {"type": "array", "items": {"type": "string", "contentEncoding": "base64"}},
                            ],
                        },
                    },
                },
                "example": {IMAGE_FIELD: "/9j/4AAQSkZJRgABAQ..."},
            },
        },
    }
}


# The answer is serialised once, by pydantic as FastAPI would, but without FastAPI validating it again against the
# union response_model; response_model still documents it.
_MANY = TypeAdapter(list[PredictResponse | ErrorResponse])


def _json(body: bytes) -> Response:
    return Response(body, media_type="application/json")


TOP_K_QUERY = Query(
    ge=1,
    le=1000,
    description="How many predictions to return per image; default RESNET_TOP_K (5).",
)
MODEL_QUERY = Query(
    min_length=1,
    max_length=200,
    description="Which model classifies the images (GET /models lists them); default: the default model.",
)


@router.post(
    "/predict",
    response_model=PredictResponse | list[PredictResponse | ErrorResponse],
    summary="Classify one image, or several",
    description=(
        "Send an image as the multipart field `image` (`curl -F image=@dog.jpg`), as the body itself "
        '(`Content-Type: image/jpeg`, `curl --data-binary @dog.jpg`), or as JSON `{"image": "<base64>"}`. '
        "The answer lists the model's top RESNET_TOP_K classes with their probabilities, in the Flask + Keras "
        "tutorial's JSON. `?model=NAME` picks one of the served models (GET /models lists them).\n\n"
        "Repeat the field (`-F image=@a.jpg -F image=@b.jpg`), or send a JSON list, to classify several images in "
        "one request, up to RESNET_MAX_IMAGES_PER_REQUEST. The answer is then a JSON list with one result per "
        'image, in the order sent: each is `{"predictions": [...], "success": true}` or '
        '`{"success": false, "error": {...}}` for an image that failed alone (the status stays 200).'
    ),
    responses=PREDICT_ERRORS,
    openapi_extra=IMAGE_BODIES,
)
async def predict(
    request: Request,
    models: ModelsDep,
    url_policy: UrlPolicyDep,
    top_k: Annotated[int | None, TOP_K_QUERY] = None,
    model: Annotated[str | None, MODEL_QUERY] = None,
) -> Response:
    # The model is held from here to the answer: a swap meanwhile leaves this request on the version it began on.
    with models.use(model) as served:
        return await _predict(request, served.pipeline, served.engine.contract.labels, url_policy, top_k)


async def _predict(
    request: Request, pipeline: Pipeline, labels: Labels, url_policy: UrlPolicy, top_k: int | None
) -> Response:
    # Admission comes first, so a refused request costs no body parsing and no decode.
    slot = await pipeline.admit()
    k = top_k if top_k is not None else pipeline.settings.top_k
    with slot:
        async with pipeline.deadline():
            images = await read_images(request, IMAGE_FIELD, pipeline.settings.max_upload_bytes, url_policy)
            pipeline.check_count(len(images), "images")
            classify = pipeline.run_each(images, slot, pipeline.classify_image)
            results = await cancel_on_disconnect(request.receive, classify)
    stats_of(request.scope).add(results)
    if len(images) == 1:
        # One image answers the tutorial's JSON, and its error is the request's.
        (result,) = results
        if isinstance(result, ServiceError):
            raise result
        return _json(PredictResponse.from_ranked(labels.top_k(result.probabilities, k)).model_dump_json().encode())
    request_id = request_id_of(request.scope)
    return _json(
        _MANY.dump_json(
            [
                ErrorResponse(error=ErrorDetail(code=result.code, message=result.message, request_id=request_id))
                if isinstance(result, ServiceError)
                else PredictResponse.from_ranked(labels.top_k(result.probabilities, k))
                for result in results
            ]
        )
    )
