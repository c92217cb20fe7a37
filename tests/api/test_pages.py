"""The HTML pages as plain HTTP: the demo page at /, and /docs and /redoc pointing only at this server's assets."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from resnet_service.api.docs import CONTENT_SECURITY_POLICY


def test_the_demo_page_is_served_at_the_root_and_calls_the_api_by_relative_urls(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "`predict?model=${" in page.text and '"predict"' in page.text
    assert 'fetch("health")' in page.text and 'fetch("models")' in page.text
    # No absolute URL to any host: the page works on :8000 and behind nginx alike.
    assert re.findall(r"(?:src|href)=\"(?:https?:)?//", page.text) == []


@pytest.mark.parametrize(("path", "assets"), [("/docs", 3), ("/redoc", 2)])
def test_docs_pages_load_their_assets_from_this_server(client: TestClient, path: str, assets: int) -> None:
    page = client.get(path)
    assert page.status_code == 200 and page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    urls = re.findall(r"(?:src|href)=\"([^\"]+)\"", page.text)
    assert len([url for url in urls if url.startswith("/docs-assets/")]) == assets, urls
    assert [url for url in urls if "//" in url] == []
    for url in urls:
        asset = client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 1000, url


def test_the_pages_stay_out_of_the_openapi_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not {"/", "/docs", "/redoc", "/docs/oauth2-redirect"} & set(paths)
