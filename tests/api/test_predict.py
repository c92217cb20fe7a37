"""POST /predict in-process through the real app, real multipart parsing and real ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from resnet_service import Settings, create_app
from resnet_service.inference.labels import Labels
from tests.support.errors import assert_error
from tests.support.images import encode, photo

JPEG = encode(photo("chelsea"), "JPEG", quality=90)


def test_predict_answers_exactly_the_seed_json_shape(client: TestClient) -> None:
    response = client.post("/predict", files={"image": ("cat.jpg", JPEG, "image/jpeg")})
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["predictions", "success"] and body["success"] is True
    assert len(body["predictions"]) == 5
    names = set(Labels.load().names)
    for prediction in body["predictions"]:
        assert list(prediction) == ["label", "probability"]
        assert prediction["label"] in names and 0.0 < prediction["probability"] < 1.0
    probabilities = [p["probability"] for p in body["predictions"]]
    assert probabilities == sorted(probabilities, reverse=True)


def test_probabilities_are_float32_values_widened(client: TestClient) -> None:
    body = client.post("/predict", files={"image": ("cat.jpg", JPEG)}).json()
    for prediction in body["predictions"]:
        p = prediction["probability"]
        assert float(np.float32(p)) == p


def test_top_k_setting_changes_the_number_of_predictions(settings: Settings) -> None:
    with TestClient(create_app(settings.model_copy(update={"top_k": 3}))) as client:
        assert len(client.post("/predict", files={"image": ("cat.jpg", JPEG)}).json()["predictions"]) == 3


def _multipart(boundary: str, *parts: tuple[str, bytes], close: bool = True) -> bytes:
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="f"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode()
        + content
        + b"\r\n"
        for name, content in parts
    )
    return body + (f"--{boundary}--\r\n".encode() if close else b"")


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><rect width="4" height="4"/></svg>'


@pytest.mark.parametrize(
    ("request_kwargs", "status", "code"),
    [
        ({"files": {"image": ("empty.jpg", b"")}}, 400, "invalid_image"),
        ({"files": {"image": ("cut.jpg", JPEG[:3000])}}, 400, "invalid_image"),
        ({"files": {"image": ("notes.txt", b"just some words\n" * 50)}}, 400, "invalid_image"),
        ({"files": {"image": ("x.svg", SVG, "image/svg+xml")}}, 415, "unsupported_image_format"),
        ({"files": {"image": ("x.ico", encode(Image.new("RGB", (16, 16)), "ICO"))}}, 415, "unsupported_image_format"),
        ({"files": {"picture": ("cat.jpg", JPEG)}}, 422, "missing_image_field"),
        ({"data": {"image": "not a file"}, "files": {"other": ("x", b"x")}}, 400, "invalid_image"),
        ({"content": b"just some words", "headers": {"content-type": "text/plain"}}, 415, "unsupported_media_type"),
        ({"content": JPEG[:3000], "headers": {"content-type": "image/jpeg"}}, 400, "invalid_image"),
        ({"content": SVG, "headers": {"content-type": "image/svg+xml"}}, 415, "unsupported_image_format"),
        ({"json": {"image": "aGVsbG8="}}, 400, "invalid_image"),
        ({"json": {"image": "not base64!"}}, 400, "invalid_image"),
        ({"json": {"image": "data:image/jpeg,plain"}}, 400, "invalid_image"),
        ({"json": {"image": 42}}, 400, "malformed_request"),
        ({"json": {"picture": "aGVsbG8="}}, 422, "missing_image_field"),
        ({"json": {"image": []}}, 422, "missing_image_field"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "malformed_request"),
        (
            {
                "content": _multipart("b0undary", *[("image", JPEG)] * 17),
                "headers": {"content-type": "multipart/form-data; boundary=b0undary"},
            },
            413,
            "too_many_images",
        ),
        (
            {
                "content": _multipart("b0undary", ("image", JPEG), close=False),
                "headers": {"content-type": "multipart/form-data; boundary=b0undary"},
            },
            400,
            "malformed_request",
        ),
        ({"content": b"x", "headers": {"content-type": "multipart/form-data"}}, 400, "malformed_request"),
    ],
    ids=[
        "empty",
        "truncated",
        "text",
        "svg",
        "ico",
        "wrong-field-name",
        "image-as-text-field",
        "text-body",
        "truncated-raw-jpeg-body",
        "svg-body",
        "json-base64-of-text",
        "json-not-base64",
        "json-data-url-not-base64",
        "json-image-not-a-string",
        "json-wrong-key",
        "json-empty-list",
        "json-unparseable",
        "seventeen-images",
        "unterminated-multipart",
        "no-boundary",
    ],
)
def test_bad_requests_get_their_status_and_json_error_and_the_server_stays_ready(
    client: TestClient, request_kwargs: dict[str, object], status: int, code: str
) -> None:
    assert_error(client.post("/predict", **request_kwargs), status, code)
    assert client.get("/health/ready").status_code == 200
    assert client.post("/predict", files={"image": ("cat.jpg", JPEG)}).status_code == 200


def test_upload_over_the_byte_limit_is_a_413(settings: Settings) -> None:
    with TestClient(create_app(settings.model_copy(update={"max_upload_bytes": 20_000}))) as client:
        big = encode(photo("astronaut"), "PNG")
        assert len(big) > 20_000 + 64 * 1024
        assert_error(client.post("/predict", files={"image": ("big.png", big)}), 413, "payload_too_large")
        # Just over the part limit but under the whole-body limit: caught by the part count while parsing.
        assert_error(client.post("/predict", files={"image": ("b.bin", b"\xff" * 20_001)}), 413, "payload_too_large")
        small = encode(photo("chelsea").resize((64, 64)), "JPEG")
        assert client.post("/predict", files={"image": ("small.jpg", small)}).status_code == 200


def test_image_over_the_pixel_limit_is_a_413(settings: Settings) -> None:
    with TestClient(create_app(settings.model_copy(update={"max_image_pixels": 100 * 100}))) as client:
        assert_error(client.post("/predict", files={"image": ("cat.jpg", JPEG)}), 413, "image_too_large")


def test_predict_before_the_model_is_ready_is_a_503(settings: Settings) -> None:
    client = TestClient(create_app(settings))  # no `with`: the lifespan has not run, so no model is loaded
    assert_error(client.post("/predict", files={"image": ("cat.jpg", JPEG)}), 503, "model_not_ready")


def test_unknown_route_and_wrong_method_answer_in_the_error_shape(client: TestClient) -> None:
    assert_error(client.get("/nope"), 404, "http_404")
    assert_error(client.get("/predict"), 405, "http_405")


def test_fast_resize_setting_reaches_the_route(settings: Settings) -> None:
    large = encode(photo("rocket").resize((3200, 2400)), "JPEG", quality=90)
    answers = {}
    for mode in ("exact", "fast"):
        with TestClient(create_app(settings.model_copy(update={"resize": mode}))) as client:
            answers[mode] = client.post("/predict", files={"image": ("r.jpg", large)}).json()["predictions"]
    assert answers["exact"] != answers["fast"]
    assert [p["label"] for p in answers["exact"]][:1] == [p["label"] for p in answers["fast"]][:1]
