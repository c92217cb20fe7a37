"""Several ``image`` fields in one /predict, and ``?top_k=``."""

from __future__ import annotations

from fastapi.testclient import TestClient

from resnet_service import Settings, create_app
from resnet_service.web.runtime import runtime_of
from tests.support.errors import assert_error
from tests.support.images import encode, photo

CAT = encode(photo("chelsea"), "JPEG", quality=90)
COFFEE = encode(photo("coffee"), "PNG")


def _alone(client: TestClient, image: bytes) -> dict:
    return client.post("/predict", files={"image": ("i", image)}).json()


def test_several_images_answer_a_list_of_seed_results_in_the_order_sent(client: TestClient) -> None:
    files = [("image", ("a.jpg", CAT)), ("image", ("b.png", COFFEE)), ("image", ("c.jpg", CAT))]
    response = client.post("/predict", files=files)
    assert response.status_code == 200
    results = response.json()
    assert results == [_alone(client, CAT), _alone(client, COFFEE), _alone(client, CAT)]
    assert all(list(result) == ["predictions", "success"] for result in results)


def test_an_image_that_fails_gets_its_own_error_and_the_others_still_answer(client: TestClient) -> None:
    files = [("image", ("a.jpg", CAT)), ("image", ("b.svg", b"<svg xmlns='x'/>")), ("image", ("c.txt", b""))]
    response = client.post("/predict", files=files)
    assert response.status_code == 200
    good, svg, empty = response.json()
    assert good == _alone(client, CAT)
    request_id = response.headers["x-request-id"]
    assert svg["success"] is False and svg["error"]["code"] == "unsupported_image_format"
    assert empty["success"] is False and empty["error"]["code"] == "invalid_image"
    assert svg["error"]["request_id"] == empty["error"]["request_id"] == request_id


def test_one_image_keeps_the_seed_shape_and_its_error_status(client: TestClient) -> None:
    assert list(_alone(client, CAT)) == ["predictions", "success"]
    assert_error(client.post("/predict", files={"image": ("t.txt", b"text")}), 400, "invalid_image")


def test_more_images_than_the_limit_is_a_413_before_any_decode(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"max_images_per_request": 2}))
    with TestClient(app) as client:
        files = [("image", (f"{i}.jpg", CAT)) for i in range(3)]
        assert_error(client.post("/predict", files=files), 413, "too_many_images")
        assert runtime_of(app).models.default.batcher.rows_run == 0
        assert client.post("/predict", files=files[:2]).status_code == 200


def test_top_k_query_overrides_the_setting_per_request(client: TestClient) -> None:
    assert len(client.post("/predict?top_k=2", files={"image": ("i", CAT)}).json()["predictions"]) == 2
    many = client.post("/predict?top_k=1", files=[("image", ("a", CAT)), ("image", ("b", COFFEE))]).json()
    assert [len(result["predictions"]) for result in many] == [1, 1]
    assert len(_alone(client, CAT)["predictions"]) == 5
    for bad in ("0", "1001", "five"):
        assert_error(client.post(f"/predict?top_k={bad}", files={"image": ("i", CAT)}), 422, "validation_error")


def test_openapi_documents_repeated_images_and_top_k(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/predict"]["post"]
    top_k, model = operation["parameters"]
    assert model["name"] == "model" and "GET /models" in model["description"]
    assert top_k["name"] == "top_k" and top_k["in"] == "query" and "RESNET_TOP_K" in top_k["description"]
    assert "Repeat the field" in operation["description"]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert len(schema["anyOf"]) == 2


def test_each_image_takes_its_own_queue_place(settings: Settings) -> None:
    with TestClient(create_app(settings.model_copy(update={"max_queue": 2}))) as client:
        files = [("image", (f"{i}.jpg", CAT)) for i in range(3)]
        first, second, third = client.post("/predict", files=files).json()
        assert first["success"] and second["success"]
        assert third["success"] is False and third["error"]["code"] == "overloaded"
