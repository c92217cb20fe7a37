"""The demo page at ``/`` in a real browser: directly on uvicorn and through nginx (``make stack``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page

from bench.null_model import write_null_model
from tests.browser.conftest import RecordedPage
from tests.conftest import LiveServer, start_server, stop_server
from tests.e2e.test_stack import Stack, start_stack, stop_stack
from tests.support.images import encode, photo

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def photo_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "chelsea.jpg"
    path.write_bytes(encode(photo("chelsea"), "JPEG", quality=90))
    return path


@pytest.fixture(scope="module")
def stack(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(model_path, tmp_path_factory.mktemp("demo-stack"))
    yield running
    stop_stack(running)


def _bars(page: Page) -> list[tuple[str, str]]:
    items = page.locator("#predictions li")
    items.nth(4).wait_for()
    return [(item.locator(".label").inner_text(), item.locator(".pct").inner_text()) for item in items.all()]


def _expected(base_url: str, image: Path) -> list[tuple[str, str]]:
    answer = httpx.post(f"{base_url}/predict", files={"image": (image.name, image.read_bytes())}, trust_env=False)
    return [(p["label"], f"{p['probability'] * 100:.1f}%") for p in answer.json()["predictions"]]


def test_a_photo_shows_its_preview_five_bars_equal_to_the_api_and_the_latency(
    live_server: LiveServer, recorded: RecordedPage, photo_file: Path
) -> None:
    page = recorded.page
    page.goto(live_server.url + "/")
    page.locator("#file").set_input_files(str(photo_file))
    assert _bars(page) == _expected(live_server.url, photo_file)
    assert page.locator("#preview").is_visible()
    assert page.locator("#preview").evaluate("image => image.naturalWidth") == 451
    latency = page.locator("#latency").inner_text()
    assert latency.startswith("Answered in ") and "inference" in latency and "preprocess" in latency
    # Each bar's width is its probability: the first, the largest, is the widest.
    widths = page.locator("#predictions .fill").evaluate_all("fills => fills.map(f => f.getBoundingClientRect().width)")
    assert widths == sorted(widths, reverse=True) and widths[0] > 0
    assert recorded.off_host(live_server.url) == [], recorded.requests


def test_provenance_comes_from_health_with_a_visible_random_weights_warning(
    live_server: LiveServer, recorded: RecordedPage
) -> None:
    page = recorded.page
    page.goto(live_server.url + "/")
    warning = page.locator("#warning")
    warning.wait_for()
    assert "RANDOM weights" in warning.inner_text() and "meaningless" in warning.inner_text()
    model = page.locator("#model")
    health = httpx.get(f"{live_server.url}/health", trust_env=False).json()
    page.get_by_text(health["model"]["provider"]).wait_for()
    assert health["model"]["weights"] in model.inner_text()
    assert health["model"]["sha256"][:12] in model.inner_text()


def test_a_text_file_gets_a_plain_error_and_no_bars(
    live_server: LiveServer, recorded: RecordedPage, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("these are not pixels\n")
    page = recorded.page
    page.goto(live_server.url + "/")
    page.locator("#file").set_input_files(str(notes))
    error = page.locator("#error")
    error.wait_for()
    assert error.inner_text().startswith("That file is not an image the service can read.")
    assert page.locator("#predictions li").count() == 0
    assert page.get_by_role("alert").filter(has_text="not an image").count() == 1


def test_the_page_works_from_the_keyboard(live_server: LiveServer, recorded: RecordedPage, photo_file: Path) -> None:
    page = recorded.page
    page.goto(live_server.url + "/")
    page.bring_to_front()  # key presses open a file chooser only in the focused page
    # Tab from the top of the page reaches the file picker, and Space on it opens the file chooser.
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "file":
            break
    assert page.evaluate("document.activeElement.id") == "file"
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Space")
    chooser.value.set_files(str(photo_file))
    assert len(_bars(page)) == 5
    # The bars carry their values for screen readers, not only as widths.
    first = page.locator("#predictions [role=meter]").first
    assert first.get_attribute("aria-label").endswith("%") and float(first.get_attribute("aria-valuenow")) > 0


def test_the_page_works_through_nginx(stack: Stack, recorded: RecordedPage, photo_file: Path) -> None:
    page = recorded.page
    page.goto(stack.url + "/")
    page.locator("#file").set_input_files(str(photo_file))
    assert _bars(page) == _expected(stack.url, photo_file)
    assert "on the server:" in page.locator("#latency").inner_text()  # nginx passes Server-Timing through
    page.locator("#warning").wait_for()
    assert recorded.off_host(stack.url) == [], recorded.requests


def test_an_upload_over_nginx_limit_is_explained_in_plain_words(
    stack: Stack, recorded: RecordedPage, tmp_path: Path
) -> None:
    big = tmp_path / "huge.jpg"
    big.write_bytes(b"\xff" * (12 * 1024 * 1024))
    page = recorded.page
    page.goto(stack.url + "/")
    page.locator("#file").set_input_files(str(big))
    error = page.locator("#error")
    error.wait_for()
    assert error.inner_text().startswith("That file is too large for the service.")


def test_the_model_list_picks_the_model_and_shows_its_classes_and_input(
    recorded: RecordedPage, photo_file: Path, tmp_path: Path
) -> None:
    write_null_model(tmp_path / "models" / "dogs.onnx", [f"dog-{i}" for i in range(6)])
    write_null_model(tmp_path / "models" / "birds.onnx", ["owl", "wren", "kite"], seed=1)
    server = start_server(tmp_path / "models" / "dogs.onnx", env={"RESNET_MODEL_DIR": str(tmp_path / "models")})
    try:
        page = recorded.page
        page.goto(server.url + "/")
        choices = page.locator("#model-select option")
        choices.nth(1).wait_for(state="attached")
        assert choices.all_inner_texts() == ["birds (default)", "dogs"]
        page.get_by_text("224×224 BGR, caffe mode").wait_for()
        assert page.locator("#classes li").all_text_contents() == ["owl", "wren", "kite"]
        page.locator("#model-select").select_option("dogs")
        page.locator("#classes li").nth(5).wait_for(state="attached")
        assert "Its 6 classes" in page.locator("#classes-summary").text_content()
        page.locator("#file").set_input_files(str(photo_file))
        page.locator("#predictions li").nth(4).wait_for()
        labels = page.locator("#predictions .label").all_inner_texts()
        assert len(labels) == 5 and all(label.startswith("dog-") for label in labels)
        assert "predict?model=dogs" in " ".join(recorded.requests)
    finally:
        stop_server(server)
