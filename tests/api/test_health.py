from __future__ import annotations

from fastapi.testclient import TestClient

from resnet_service import Settings, create_app


def test_live_answers_200(client: TestClient) -> None:
    assert client.get("/health/live").json() == {"status": "alive"}


def test_ready_is_503_until_the_model_is_loaded_and_warmed_up(settings: Settings) -> None:
    app = create_app(settings)
    before = TestClient(app).get("/health/ready")
    assert (before.status_code, before.json()) == (503, {"status": "starting"})
    with TestClient(app) as client:
        after = client.get("/health/ready")
        assert (after.status_code, after.json()) == (200, {"status": "ready"})
    assert TestClient(app).get("/health/ready").status_code == 503  # stopping after shutdown


def test_health_reports_provenance_provider_and_the_random_weights(client: TestClient) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ready"
    model = health["model"]
    assert model["provider"] == "CPUExecutionProvider"
    assert model["random_weights"] is True and model["weights"] == "random (seed 0)"
    assert "RANDOM" in health["warning"]
    assert len(model["sha256"]) == 64
    assert model["input_shape"] == ["batch", 224, 224, 3]
    # On a CPU every batch size runs unpadded, only size 1 is warmed up, and there are no CUDA graphs.
    assert model["batch_sizes"] == list(range(1, 9)) and model["warm_up_s"] > 0 and model["cuda_graphs"] is None
    for key in ("tensorflow_version", "keras_version", "tf2onnx_version", "onnx_version", "parity_max_abs_diff"):
        assert model["metadata"][key]
    assert health["versions"]["onnxruntime"] and health["intra_op_threads"] >= 1


def test_openapi_documents_the_upload_example_and_every_error(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/predict"]["post"]
    form = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
    image = form["properties"]["image"]
    assert form["required"] == ["image"] and image["type"] == "array" and image["items"]["format"] == "binary"
    assert {parameter["name"] for parameter in operation["parameters"]} == {"top_k", "model"}
    assert set(operation["responses"]) >= {"200", "400", "413", "415", "422", "500", "503"}
    example = spec["components"]["schemas"]["PredictResponse"]["example"]
    assert example["predictions"][0]["label"] == "Eskimo_dog" and example["success"] is True
    assert client.get("/docs").status_code == 200
