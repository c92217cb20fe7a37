"""``GET /metrics``: the Prometheus text format, for scrapers."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from resnet_service.web.deps import MetricsDep

__all__ = ["router"]

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "The Prometheus text format."}},
)
async def metrics(registry: MetricsDep) -> Response:
    return Response(registry.exposition(), media_type=CONTENT_TYPE_LATEST)
