"""``/docs`` and ``/redoc`` with their JavaScript and CSS served from the installed fastapi-offline package.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so in an air-gapped cluster, behind a strict proxy or
without a network they are blank. Here every asset comes from this server, and the CDN-only extras are off:
ReDoc's Google Fonts and Swagger UI's online validator badge.

The OpenAPI description also lists the models being served, with their classes and input, as they are when the
page is loaded (a model folder can change while the service runs).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["install_docs", "list_models_in_openapi", "DOCS_ASSETS_URL", "CONTENT_SECURITY_POLICY"]

DOCS_ASSETS_URL = "/docs-assets"
DOCS_URL = "/docs"
REDOC_URL = "/redoc"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
# The browser itself refuses anything off this host: ReDoc's footer would otherwise load its logo from a CDN,
# and no option turns that off. Inline scripts and styles are how FastAPI's pages start Swagger UI and ReDoc.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
    "frame-ancestors 'self'; base-uri 'self'; form-action 'self'"
)
SWAGGER_UI_PARAMETERS = {
    # validator.swagger.io would be fetched for the badge; nothing may leave the host.
    "validatorUrl": None,
    "deepLinking": True,
    "tryItOutEnabled": False,
    "displayRequestDuration": True,
}


def _same_host_only(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return page


def install_docs(app: FastAPI) -> None:
    """Mount the packaged assets and the two pages; create the app with ``docs_url=None, redoc_url=None``."""
    directory = resources.files("fastapi_offline") / "static"
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=str(directory)), name="docs-assets")

    def page(url: str, render: Callable[[str, str], HTMLResponse]) -> None:
        """Serve ``render(root, assets)`` at ``url``: root is the proxy's prefix (root_path), so the page still finds
        the OpenAPI description and its assets when a proxy serves the app under one."""

        async def serve(request: Request) -> HTMLResponse:
            root = request.scope.get("root_path", "")
            return _same_host_only(render(root, f"{root}{DOCS_ASSETS_URL}"))

        app.add_api_route(url, serve, methods=["GET"], include_in_schema=False, response_class=HTMLResponse)

    page(
        DOCS_URL,
        lambda root, assets: get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - API docs",
            oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT_URL}",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon.png",
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        ),
    )
    page(
        REDOC_URL,
        lambda root, assets: get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{assets}/redoc.standalone.js",
            redoc_favicon_url=f"{assets}/favicon.png",
            with_google_fonts=False,
        ),
    )

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()


# Up to this many class names are listed per model; GET /models has them all.
LISTED_CLASSES = 12


def _models_section(repository: Any) -> str:
    default = repository.default_name
    lines = ["## Models", "", "| `?model=` | Classes | Input | Preprocessing | Weights |", "|---|---|---|---|---|"]
    for served in repository.in_order():
        contract = served.engine.contract
        names = contract.labels.names
        listed = ", ".join(names[:LISTED_CLASSES]) + (
            f", … ({len(names)} in all)" if len(names) > LISTED_CLASSES else ""
        )
        spec = contract.input
        size = "×".join(map(str, spec.row_shape))
        in_model = " (in the model, from uint8)" if spec.uint8_pixels else ""
        lines.append(
            f"| `{served.name}`{' (default)' if served.name == default else ''} | {listed} | {size} "
            f"{spec.colour_order} {spec.layout} | {spec.mode}{in_model} | {served.engine.weights} |"
        )
    return "\n".join(lines)


def list_models_in_openapi(app: FastAPI, models: Callable[[], Any]) -> None:
    """Add the served models to the OpenAPI description and to /predict's ``model`` choices, at each request.

    ``models()`` gives the model repository (or None while starting).
    """
    cached = app.openapi

    def openapi() -> dict[str, Any]:
        schema = cached()
        repository = models()
        if repository is None or not repository.models:
            return schema
        schema = copy.deepcopy(schema)
        schema["info"]["description"] += "\n\n" + _models_section(repository)
        for parameter in schema["paths"].get("/predict", {}).get("post", {}).get("parameters", []):
            if parameter["name"] == "model":
                for choice in parameter["schema"].get("anyOf", [parameter["schema"]]):
                    if choice.get("type") == "string":
                        choice["enum"] = sorted(repository.models)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
