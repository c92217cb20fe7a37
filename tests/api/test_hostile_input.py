"""Every class of hostile or odd upload through the real app: a 4xx JSON error or a classification, never a 500."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from resnet_service.web.upload import MAX_PART_HEADER_BYTES
from tests.support.errors import assert_error
from tests.support.hostile import broken_uploads, odd_images
from tests.support.images import encode, photo

BROKEN = broken_uploads()
ODD = odd_images()
JPEG = encode(photo("chelsea"), "JPEG")


@pytest.mark.parametrize("name", list(BROKEN))
def test_each_broken_upload_gets_its_json_error_and_the_server_stays_ready(client: TestClient, name: str) -> None:
    content, status, code = BROKEN[name]
    assert_error(client.post("/predict", files={"image": (name, content)}), status, code)
    assert client.get("/health/ready").status_code == 200
    assert client.post("/predict", files={"image": ("cat.jpg", JPEG)}).status_code == 200


@pytest.mark.parametrize("name", list(ODD))
def test_each_good_but_odd_image_is_classified(client: TestClient, name: str) -> None:
    response = client.post("/predict", files={"image": (name, ODD[name])})
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 5


@pytest.mark.parametrize("where", ["name", "value"])
def test_huge_multipart_part_headers_are_refused_as_they_arrive(client: TestClient, where: str) -> None:
    huge = "x" * (MAX_PART_HEADER_BYTES + 1)
    header = f"X-{huge}: 1" if where == "name" else f"X-Padding: {huge}"
    body = (
        f'--b0undary\r\nContent-Disposition: form-data; name="image"; filename="c.jpg"\r\n{header}\r\n\r\n'.encode()
        + JPEG
        + b"\r\n--b0undary--\r\n"
    )
    response = client.post("/predict", content=body, headers={"content-type": "multipart/form-data; boundary=b0undary"})
    assert_error(response, 400, "malformed_request")
    assert "header" in response.json()["error"]["message"]


def test_many_parts_of_other_fields_beside_the_image_are_ignored(client: TestClient) -> None:
    files = [("note", (f"n{i}.txt", b"x" * 100)) for i in range(200)] + [("image", ("cat.jpg", JPEG))]
    response = client.post("/predict", files=files)
    assert response.status_code == 200, response.text


def test_a_hostile_request_id_is_replaced_not_echoed(client: TestClient) -> None:
    response = client.get("/health/live", headers={"X-Request-ID": 'evil" <id> ' * 20})
    assert response.headers["x-request-id"].isalnum() and len(response.headers["x-request-id"]) == 32
    assert client.get("/health/live", headers={"X-Request-ID": "trace-42"}).headers["x-request-id"] == "trace-42"
