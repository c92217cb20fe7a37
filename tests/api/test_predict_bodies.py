"""The three bodies /predict takes, multipart, the image itself and base64 JSON, answer alike."""

from __future__ import annotations

import base64

from fastapi.testclient import TestClient

from resnet_service import Settings, create_app
from tests.support.errors import assert_error
from tests.support.images import encode, photo

JPEG = encode(photo("chelsea"), "JPEG")
PNG = encode(photo("coffee"), "PNG")


def _multipart(client: TestClient, data: bytes) -> bytes:
    response = client.post("/predict", files={"image": ("photo", data)})
    assert response.status_code == 200
    return response.content


def test_the_image_as_the_body_answers_what_the_multipart_upload_answers(client: TestClient) -> None:
    for data, content_type in ((JPEG, "image/jpeg"), (PNG, "image/png"), (JPEG, "application/octet-stream")):
        response = client.post("/predict", content=data, headers={"content-type": content_type})
        assert response.status_code == 200, response.text
        assert response.content == _multipart(client, data)


def test_base64_json_answers_what_the_multipart_upload_answers(client: TestClient) -> None:
    encoded = base64.b64encode(JPEG).decode()
    response = client.post("/predict", json={"image": encoded})
    assert response.status_code == 200, response.text
    assert response.content == _multipart(client, JPEG)
    # A data: URL, as a browser's FileReader.readAsDataURL makes it.
    from_browser = client.post("/predict", json={"image": f"data:image/jpeg;base64,{encoded}"})
    assert from_browser.content == response.content


def test_a_json_list_is_several_images_answered_in_order(client: TestClient) -> None:
    images = [base64.b64encode(data).decode() for data in (JPEG, PNG)]
    response = client.post("/predict?top_k=3", json={"image": [*images, "aGVsbG8="]})
    assert response.status_code == 200
    first, second, broken = response.json()
    alone = client.post("/predict?top_k=3", content=JPEG, headers={"content-type": "image/jpeg"})
    assert first["predictions"] == alone.json()["predictions"]
    assert second["success"] is True and len(second["predictions"]) == 3
    assert broken["success"] is False and broken["error"]["code"] == "invalid_image"


def test_every_body_keeps_the_byte_limit(settings: Settings) -> None:
    with TestClient(create_app(settings.model_copy(update={"max_upload_bytes": 20_000}))) as client:
        assert len(JPEG) > 20_000
        raw = client.post("/predict", content=JPEG, headers={"content-type": "image/jpeg"})
        assert_error(raw, 413, "payload_too_large")
        encoded = client.post("/predict", json={"image": base64.b64encode(JPEG).decode()})
        assert_error(encoded, 413, "payload_too_large")
        small = encode(photo("chelsea").resize((64, 43)), "JPEG")
        assert client.post("/predict", json={"image": base64.b64encode(small).decode()}).status_code == 200


def test_the_image_count_limit_holds_for_json_lists(settings: Settings) -> None:
    small = base64.b64encode(encode(photo("chelsea").resize((32, 21)), "JPEG")).decode()
    with TestClient(create_app(settings.model_copy(update={"max_images_per_request": 2}))) as client:
        assert_error(client.post("/predict", json={"image": [small] * 3}), 413, "too_many_images")


def test_openapi_documents_the_three_bodies(client: TestClient) -> None:
    content = client.get("/openapi.json").json()["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert list(content) == ["multipart/form-data", "image/*", "application/json"]
    assert set(content["application/json"]["schema"]["properties"]) == {"image", "url"}
