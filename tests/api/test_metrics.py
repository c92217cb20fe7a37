"""``GET /metrics`` counts exactly what the test did, stage by stage."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from resnet_service import Settings, create_app
from tests.support.images import encode, photo
from tests.support.runtimes import AUTO_ON_CPU, PROVIDERS

JPEG = encode(photo("chelsea"), "JPEG", quality=90)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """A fresh app per test: the counts asserted here start from zero."""
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _samples(client: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_requests_are_counted_by_route_and_status(client: TestClient) -> None:
    for _ in range(3):
        assert client.post("/predict", files={"image": ("c.jpg", JPEG)}).status_code == 200
    assert client.post("/predict", files={"image": ("t.txt", b"text")}).status_code == 400
    assert client.get("/no/such/route").status_code == 404
    samples = _samples(client)
    assert _value(samples, "resnet_requests_total", method="POST", route="/predict", status="200") == 3
    assert _value(samples, "resnet_requests_total", method="POST", route="/predict", status="400") == 1
    # An unknown path is counted under one label, so scanners cannot grow the series without limit.
    assert _value(samples, "resnet_requests_total", method="GET", route="unmatched", status="404") == 1
    assert _value(samples, "resnet_request_duration_seconds_count", method="POST", route="/predict") == 4
    # A one-image request's images are counted like a several-image one's, failures included.
    assert _value(samples, "resnet_images_total", model="resnet50", outcome="ok") == 3
    assert _value(samples, "resnet_images_total", model="resnet50", outcome="invalid_image") == 1


def test_stage_histograms_batch_sizes_and_gauges_follow_the_images(client: TestClient) -> None:
    files = [("image", ("a.jpg", JPEG)), ("image", ("b.jpg", JPEG)), ("image", ("c.txt", b"text"))]
    assert client.post("/predict", files=files).status_code == 200
    assert client.post("/predict", files={"image": ("d.jpg", JPEG)}).status_code == 200
    samples = _samples(client)
    # Four uploads were decoded; three reached the model, in however many batches the batcher formed.
    assert _value(samples, "resnet_preprocess_seconds_count", model="resnet50") == 3
    assert _value(samples, "resnet_queue_wait_seconds_count", model="resnet50") == 3
    assert _value(samples, "resnet_batch_size_sum", model="resnet50") == 3
    batches = _value(samples, "resnet_batch_size_count", model="resnet50")
    assert _value(samples, "resnet_inference_seconds_count", model="resnet50") == batches >= 1
    assert _value(samples, "resnet_images_total", model="resnet50", outcome="ok") == 3
    assert _value(samples, "resnet_images_total", model="resnet50", outcome="invalid_image") == 1
    assert _value(samples, "resnet_queue_depth", model="resnet50") == 0
    # The scrape itself is the one request in flight while the gauge is read.
    assert _value(samples, "resnet_requests_in_flight") == 1
    assert _value(samples, "process_resident_memory_bytes") > 0


def test_model_info_names_the_weights_runtime_provider_and_precision(client: TestClient) -> None:
    (info,) = [labels for name, labels in _samples(client) if name == "resnet_model_info"]
    info = dict(info)
    assert info["name"] == "resnet50" and info["runtime"] == AUTO_ON_CPU and info["precision"] == "fp32"
    assert info["provider"] == PROVIDERS[AUTO_ON_CPU]
    assert info["random_weights"] == "true" and info["weights"].startswith("random")
