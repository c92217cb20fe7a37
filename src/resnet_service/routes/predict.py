"""``POST /predict``: the seed's API, unchanged on the wire."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from fastapi import APIRouter, Request

from resnet_service.batcher import DynamicBatcher, QueueFull, Slot
from resnet_service.deps import BatcherDep, LabelsDep, PreprocessPoolDep, SettingsDep
from resnet_service.disconnect import cancel_on_disconnect
from resnet_service.errors import DeadlineExceeded, MissingImageField, Overloaded
from resnet_service.preprocessing import preprocess
from resnet_service.schemas import ErrorResponse, Prediction, PredictResponse
from resnet_service.settings import Settings
from resnet_service.upload import read_file_fields

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
    413: _error(
        "Over RESNET_MAX_UPLOAD_BYTES, or over RESNET_MAX_IMAGE_PIXELS.",
        "payload_too_large",
        "the image file is over the 10485760-byte limit",
    ),
    415: _error(
        "An image format the service does not decode (SVG, HEIC, ICO, ...), or a body that is not multipart.",
        "unsupported_image_format",
        "SVG images are not supported; send BMP, GIF, JPEG, MPO, PNG, TIFF, WEBP",
    ),
    422: _error(
        "No `image` field in the multipart body.", "missing_image_field", "the multipart body has no 'image' field"
    ),
    500: _error("The model failed to run.", "inference_failed", "the model failed to run"),
    503: _error(
        "The model is still loading, or RESNET_MAX_QUEUE requests are already waiting (retry after Retry-After).",
        "overloaded",
        "32 requests are already waiting (the limit is 32); retry shortly",
    ),
    504: _error(
        "The request was not answered within RESNET_REQUEST_TIMEOUT_S; its queued work was dropped.",
        "deadline_exceeded",
        "the request was not answered within its 30-second deadline",
    ),
}

# How long an overloaded service asks clients to wait: a few batches' time on a CPU.
RETRY_AFTER_S = 1

# FastAPI would parse an UploadFile parameter before the handler runs, spooling large bodies to disk; the body is
# streamed by read_file_fields instead, so the form is described here for the docs page's file picker.
MULTIPART_IMAGE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [IMAGE_FIELD],
                    "properties": {
                        IMAGE_FIELD: {
                            "type": "string",
                            "format": "binary",
                            "description": "A JPEG, PNG, GIF, BMP, WebP or TIFF file.",
                        }
                    },
                }
            }
        },
    }
}


@router.post(
    "/predict",
    response_model=PredictResponse,
    summary="Classify one image",
    description=(
        "Send an image as the multipart field `image` (`curl -F image=@dog.jpg`). The answer lists the top "
        "RESNET_TOP_K ImageNet classes with their probabilities, exactly as the Flask + Keras seed did."
    ),
    responses=PREDICT_ERRORS,
    openapi_extra=MULTIPART_IMAGE_BODY,
)
async def predict(
    request: Request,
    batcher: BatcherDep,
    labels: LabelsDep,
    settings: SettingsDep,
    preprocess_pool: PreprocessPoolDep,
) -> PredictResponse:
    # Admission comes first, so a refused request costs no body parsing and no decode.
    try:
        slot = batcher.reserve()
    except QueueFull as exc:
        raise Overloaded(f"{exc}; retry shortly", headers={"Retry-After": str(RETRY_AFTER_S)}) from exc
    with slot:
        try:
            async with asyncio.timeout(settings.request_timeout_s):
                probabilities = await _classify(request, batcher, slot, settings, preprocess_pool)
        except TimeoutError as exc:
            raise DeadlineExceeded(
                f"the request was not answered within its {settings.request_timeout_s:g}-second deadline"
            ) from exc
    top = labels.top_k(probabilities, settings.top_k)
    return PredictResponse(predictions=[Prediction(label=label, probability=p) for label, p in top])


async def _classify(
    request: Request, batcher: DynamicBatcher, slot: Slot, settings: Settings, preprocess_pool: ThreadPoolExecutor
) -> np.ndarray:
    images = await read_file_fields(request, IMAGE_FIELD, settings.max_upload_bytes)
    if len(images) != 1:
        raise MissingImageField(f"send exactly one '{IMAGE_FIELD}' field; this body has {len(images)}")
    return await cancel_on_disconnect(request.receive, _run(images[0], batcher, slot, settings, preprocess_pool))


async def _run(
    image: bytes, batcher: DynamicBatcher, slot: Slot, settings: Settings, preprocess_pool: ThreadPoolExecutor
) -> np.ndarray:
    loop = asyncio.get_running_loop()
    fast = settings.resize == "fast"
    batch = await loop.run_in_executor(preprocess_pool, preprocess, image, settings.max_image_pixels, fast)
    return await batcher.submit(batch, slot)
