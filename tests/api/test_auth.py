"""RESNET_API_KEYS: bearer keys guard /predict; probes stay open; without keys everything is open."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from resnet_service import Settings, create_app
from tests.support.errors import assert_error
from tests.support.images import encode, photo

JPEG = encode(photo("chelsea"), "JPEG")


@pytest.fixture
def guarded(settings: Settings) -> Iterator[TestClient]:
    keys = frozenset({"first-key-0123", "second-key-4567"})
    with TestClient(create_app(settings.model_copy(update={"api_keys": keys}))) as client:
        yield client


def _predict(client: TestClient, authorization: str | None = None) -> object:
    headers = {"Authorization": authorization} if authorization is not None else {}
    return client.post("/predict", files={"image": ("c.jpg", JPEG)}, headers=headers)


@pytest.mark.parametrize("key", ["first-key-0123", "second-key-4567"])
def test_each_configured_key_is_accepted_as_a_bearer_token(guarded: TestClient, key: str) -> None:
    assert _predict(guarded, f"Bearer {key}").status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer wrong-key",
        "Bearer first-key-012",
        "Bearer first-key-01234",
        "Basic Zmlyc3Qta2V5",
        "first-key-0123",
    ],
    ids=["none", "wrong", "prefix", "longer", "basic-scheme", "no-scheme"],
)
def test_a_missing_or_wrong_key_is_a_401_with_www_authenticate(guarded: TestClient, authorization: str | None) -> None:
    response = _predict(guarded, authorization)
    assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_probes_stay_open_when_keys_are_set(guarded: TestClient) -> None:
    routes = ("/health/live", "/health/ready", "/health", "/openapi.json", "/metrics", "/v2/health/ready", "/v2")
    for route in (*routes, "/v2/models/resnet50", "/v2/models/resnet50/ready"):
        assert guarded.get(route).status_code == 200, route


def test_v2_inference_needs_a_key_too_and_refuses_in_the_protocol_error_shape(guarded: TestClient) -> None:
    body = {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(JPEG).decode()]}]}
    refused = guarded.post("/v2/models/resnet50/infer", json=body)
    assert refused.status_code == 401 and set(refused.json()) == {"error"}
    assert refused.headers["www-authenticate"].startswith("Bearer")
    accepted = guarded.post("/v2/models/resnet50/infer", json=body, headers={"Authorization": "Bearer first-key-0123"})
    assert accepted.status_code == 200 and accepted.json()["outputs"][0]["shape"] == [1, 1000]


def test_openapi_documents_the_bearer_scheme_and_the_401_only_when_keys_are_set(
    guarded: TestClient, client: TestClient
) -> None:
    guarded_schema, open_schema = guarded.get("/openapi.json").json(), client.get("/openapi.json").json()
    assert guarded_schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "401" in guarded_schema["paths"]["/predict"]["post"]["responses"]
    assert "securitySchemes" not in open_schema.get("components", {})
    assert "401" not in open_schema["paths"]["/predict"]["post"]["responses"]


def test_without_keys_predict_needs_no_authorization(client: TestClient) -> None:
    assert _predict(client).status_code == 200
