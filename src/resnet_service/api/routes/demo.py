"""``GET /``: the demo page, one static HTML file with its own plain JavaScript, shipped in the package."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

__all__ = ["router"]

router = APIRouter()

# Read once: the page is static, and it calls the API with relative URLs, so it works behind nginx unchanged.
PAGE = resources.files("resnet_service").joinpath("static/demo.html").read_text("utf-8")


@router.get("/", include_in_schema=False, response_class=HTMLResponse)
async def demo() -> HTMLResponse:
    return HTMLResponse(PAGE)
