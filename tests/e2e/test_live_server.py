"""A real uvicorn process on a free port, driven over HTTP with httpx (the docs' curl examples: test_docs.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import KerasReference, LiveServer, start_server, stop_server
from tests.support.images import PHOTOS, encode, photo
from tests.support.raw_http import headers_only_upload
from tests.support.runtimes import AUTO_ON_CPU, PROVIDERS


@pytest.fixture
def http(live_server: LiveServer) -> httpx.Client:
    with httpx.Client(base_url=live_server.url, timeout=30.0, trust_env=False) as client:
        yield client


@pytest.fixture(scope="module")
def resnet50_server(resnet50_path: Path) -> Iterator[LiveServer]:
    server = start_server(resnet50_path)
    yield server
    stop_server(server)


def test_top5_labels_equal_keras_and_probabilities_agree_within_1e_4(
    resnet50_server: LiveServer, keras_reference: KerasReference
) -> None:
    for name, path in keras_reference.images.items():
        url = f"{resnet50_server.url}/predict"
        response = httpx.post(url, files={"image": (name, path.read_bytes())}, timeout=30, trust_env=False)
        assert response.status_code == 200, (name, response.text)
        served = response.json()["predictions"]
        expected = keras_reference.top5[name]
        assert [p["label"] for p in served] == [label for label, _ in expected], name
        for prediction, (_, probability) in zip(served, expected, strict=True):
            assert abs(prediction["probability"] - probability) <= 1e-4, name


def test_random_weights_are_not_degenerate_across_photos(keras_reference: KerasReference) -> None:
    photos = [f"{name}.{ext}" for name in PHOTOS for ext in ("jpg", "png")]
    top1 = [keras_reference.top5[name][0] for name in photos]
    assert max(p for _, p in top1) < 0.5
    assert len({label for label, _ in top1}) == len(PHOTOS)


@pytest.mark.parametrize(
    ("files", "status", "code"),
    [
        ({"image": ("e.jpg", b"")}, 400, "invalid_image"),
        ({"image": ("t.jpg", encode(photo("rocket"), "JPEG")[:2000])}, 400, "invalid_image"),
        ({"image": ("s.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>")}, 415, "unsupported_image_format"),
        ({"file": ("c.jpg", encode(photo("chelsea"), "JPEG"))}, 422, "missing_image_field"),
    ],
    ids=["empty", "truncated", "svg", "missing-field"],
)
def test_bad_inputs_over_http_get_json_errors_and_the_server_stays_ready(
    http: httpx.Client, files: dict[str, tuple[str, bytes]], status: int, code: str
) -> None:
    response = http.post("/predict", files=files)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert http.get("/health/ready").status_code == 200


def test_oversize_upload_is_refused_from_its_content_length_before_the_body_is_read(
    http: httpx.Client, live_server: LiveServer
) -> None:
    # Only the headers of a 40 MB upload are sent: the answer must come without the body ever arriving.
    response = headers_only_upload(live_server.url, 40 * 1024 * 1024)
    assert response.status == 413
    assert response.body["error"]["code"] == "payload_too_large"
    assert http.get("/health/ready").status_code == 200


def test_health_over_http_names_the_runtime_provider_and_random_weights(http: httpx.Client) -> None:
    health = http.get("/health").json()
    # RESNET_RUNTIME is left at auto: OpenVINO on this CPU when it is installed.
    assert health["model"]["runtime"] == AUTO_ON_CPU and health["model"]["provider"] == PROVIDERS[AUTO_ON_CPU]
    assert health["model"]["random_weights"] is True
