"""``/docs`` in a real browser: Swagger UI loads from this server alone, and "Try it out" classifies a photo."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import RecordedPage
from tests.conftest import LiveServer
from tests.support.images import encode, photo

pytestmark = pytest.mark.browser

OPERATION = "#operations-predict-predict_predict_post"


def test_try_it_out_uploads_a_photo_and_shows_five_predictions_with_no_request_off_host(
    live_server: LiveServer, recorded: RecordedPage, tmp_path: Path
) -> None:
    cat = tmp_path / "cat.jpg"
    cat.write_bytes(encode(photo("chelsea"), "JPEG", quality=90))
    page = recorded.page
    page.goto(f"{live_server.url}/docs")
    operation = page.locator(OPERATION)
    operation.locator(".opblock-summary").click()
    # The documented answers, before anything is sent: the example 200 and each error with its schema.
    responses = operation.locator(".responses-table").first
    for status in ("200", "400", "413", "415", "422", "503"):
        # expect() retries until Swagger UI has rendered the expanded operation.
        expect(responses.locator(f"tr.response[data-code='{status}']")).to_have_count(1)
    expect(responses.locator("tr.response[data-code='200']")).to_contain_text("Eskimo_dog")
    expect(responses.locator("tr.response[data-code='413']")).to_contain_text("payload_too_large")
    operation.get_by_role("button", name="Try it out").click()
    operation.locator("input[type=file]").first.set_input_files(str(cat))
    operation.get_by_role("button", name="Execute").click()
    answer = operation.locator(".live-responses-table tr.response")
    answer.wait_for()
    assert answer.locator(".response-col_status").inner_text().strip() == "200"
    shown = json.loads(answer.locator(".response-col_description pre").first.inner_text())
    assert list(shown) == ["predictions", "success"] and len(shown["predictions"]) == 5
    expected = httpx.post(f"{live_server.url}/predict", files={"image": ("cat.jpg", cat.read_bytes())}).json()
    assert [p["label"] for p in shown["predictions"]] == [p["label"] for p in expected["predictions"]]
    answer.scroll_into_view_if_needed()
    assert any(url.endswith("/docs-assets/swagger-ui-bundle.js") for url in recorded.requests)
    assert recorded.off_host(live_server.url) == [], recorded.requests


def test_redoc_renders_from_this_server_and_its_one_cdn_image_is_blocked(
    live_server: LiveServer, recorded: RecordedPage
) -> None:
    page = recorded.page
    page.goto(f"{live_server.url}/redoc")
    # ReDoc renders the operations' summaries in its side menu once the schema has loaded.
    page.get_by_role("menuitem").filter(has_text="Classify one image, or several").first.wait_for()
    page.get_by_text("API docs by Redocly").wait_for(state="attached")
    for _ in range(100):  # the logo is requested just after the footer mounts
        if recorded.failed:
            break
        page.wait_for_timeout(50)
    # ReDoc's footer always tries to load its logo from a CDN (no option turns it off). The page's
    # Content-Security-Policy makes Chromium refuse it before any connection is made.
    blocked = recorded.off_host(live_server.url)
    assert blocked == ["https://cdn.redoc.ly/redoc/logo-mini.svg"], recorded.requests
    assert recorded.failed[blocked[0]] == "csp"
