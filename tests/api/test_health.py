from __future__ import annotations

from pathlib import Path

import onnxruntime
import pytest
from fastapi.testclient import TestClient

from resnet_service import Settings, create_app
from resnet_service.inference.openvino_model import openvino_installed
from tests.support.runtimes import PROVIDERS, requires_openvino
from tests.support.stand_in_model import WEIGHTS


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


@pytest.mark.parametrize("runtime", ["onnxruntime", pytest.param("openvino", marks=requires_openvino)])
def test_health_reports_provenance_runtime_provider_and_the_random_weights(
    settings: Settings, model_path: Path, runtime: str
) -> None:
    with TestClient(create_app(settings.model_copy(update={"runtime": runtime}))) as client:
        health = client.get("/health").json()
    assert health["status"] == "ready"
    model = health["model"]
    assert (model["runtime"], model["provider"], model["precision"]) == (runtime, PROVIDERS[runtime], "fp32")
    assert model["random_weights"] is True and model["weights"] == WEIGHTS.format(seed=0)
    assert "RANDOM" in health["warning"]
    assert len(model["sha256"]) == 64
    assert model["input_shape"] == ["batch", 224, 224, 3]
    # On a CPU every batch size runs unpadded, and there are no CUDA graphs.
    assert model["batch_sizes"] == list(range(1, 9)) and model["warm_up_s"] > 0 and model["cuda_graphs"] is None
    # The provenance the file carries (the export writes its versions and parity there), passed on whole.
    assert model["metadata"] == onnxruntime.InferenceSession(str(model_path)).get_modelmeta().custom_metadata_map
    assert health["versions"]["onnxruntime"] and health["intra_op_threads"] >= 1
    assert ("openvino" in health["versions"]) == openvino_installed()


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
