"""Headless Chromium from Debian's ``chromium`` package, driven by Playwright; every request a page makes is kept."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Request, sync_playwright

from tests.conftest import ROOT

# Playwright cannot download its own browsers here; Debian's chromium is what CI installs.
CHROMIUM = os.environ.get("RESNET_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
SCREENSHOTS = ROOT / "build" / "screenshots"


# Module scope, not session: Playwright's sync API keeps an asyncio loop running in this thread while it is open,
# and later tests call asyncio.run().
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # No skip: these tests must run in CI, and a missing browser is a broken set-up, said plainly.
    assert shutil.which(CHROMIUM) or Path(CHROMIUM).is_file(), f"{CHROMIUM} is missing: apt-get install chromium"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@dataclass
class RecordedPage:
    page: Page
    requests: list[str] = field(default_factory=list)
    # URL → Chromium's reason, for requests that never completed; "csp" means the page's policy stopped it.
    failed: dict[str, str] = field(default_factory=dict)

    def off_host(self, base_url: str) -> list[str]:
        """Every request the page tried to make anywhere but ``base_url``'s host (data: and blob: stay local)."""
        allowed = urlsplit(base_url).netloc
        return [
            url
            for url in self.requests
            if urlsplit(url).scheme not in ("data", "blob") and urlsplit(url).netloc != allowed
        ]


@pytest.fixture
def recorded(browser: Browser, request: pytest.FixtureRequest) -> Iterator[RecordedPage]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    record = RecordedPage(page)

    def keep(sent: Request) -> None:
        record.requests.append(sent.url)

    def note_failure(sent: Request) -> None:
        record.failed[sent.url] = sent.failure or "unknown"

    page.on("request", keep)
    page.on("requestfailed", note_failure)
    yield record
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # Every test leaves a screenshot of where it ended, pass or fail, under build/screenshots/.
    page.screenshot(path=str(SCREENSHOTS / f"{request.node.name}.png"))
    context.close()
