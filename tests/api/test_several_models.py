"""RESNET_MODEL_DIR: several models in one process, each with its own name, classes, batcher, health and metrics.

The models are null models (one pixel through a fixed matrix, bench/null_model.py) that describe themselves as an
export does, each with its own labels, so every answer says which model gave it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from bench.null_model import write_null_model
from resnet_service import Settings, create_app
from resnet_service.core.errors import StartupError
from resnet_service.web.runtime import runtime_of
from tests.support.images import encode, photo

JPEG = encode(photo("chelsea"), "JPEG")
DOGS = [f"dog-{i}" for i in range(6)]
BIRDS = [f"bird-{i}" for i in range(4)]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_null_model(tmp_path / "dogs.onnx", DOGS)
    # A model in a subfolder of its own is named after the subfolder.
    write_null_model(tmp_path / "birds" / "model.onnx", BIRDS, seed=1)
    (tmp_path / "notes.txt").write_text("not a model\n")
    return tmp_path


@pytest.fixture
def client(folder: Path, clean_env: None) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(model_dir=folder, model_poll_s=0))) as test_client:
        yield test_client


def _labels(answer: dict) -> set[str]:
    return {prediction["label"] for prediction in answer["predictions"]}


def test_the_first_name_is_the_default_and_model_picks_another(client: TestClient) -> None:
    default = client.post("/predict", files={"image": ("c.jpg", JPEG)}).json()
    assert default["success"] is True and _labels(default) <= set(BIRDS) and len(default["predictions"]) == 4
    dogs = client.post("/predict?model=dogs", files={"image": ("c.jpg", JPEG)}).json()
    assert _labels(dogs) <= set(DOGS) and len(dogs["predictions"]) == 5
    missing = client.post("/predict?model=cats", files={"image": ("c.jpg", JPEG)})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    assert "birds, dogs" in missing.json()["error"]["message"]


def test_default_model_setting(folder: Path, clean_env: None) -> None:
    with TestClient(create_app(Settings(model_dir=folder, default_model="dogs", model_poll_s=0))) as client:
        assert _labels(client.post("/predict", files={"image": ("c.jpg", JPEG)}).json()) <= set(DOGS)
        assert [m["name"] for m in client.get("/models").json() if m["default"]] == ["dogs"]


def test_models_lists_each_with_its_classes_and_input(client: TestClient) -> None:
    models = client.get("/models").json()
    assert [(m["name"], m["default"], m["classes"]) for m in models] == [("birds", True, 4), ("dogs", False, 6)]
    assert models[1]["labels"] == DOGS and models[1]["random_weights"] is True
    assert models[1]["input"] == {
        "shape": [224, 224, 3],
        "datatype": "FP32",
        "preprocessing_in_model": False,
        "layout": "NHWC",
        "preprocessing": "caffe",
        "colour_order": "BGR",
        "mean": [103.939, 116.779, 123.68],
        "std": [1.0, 1.0, 1.0],
        "resize_filter": "bicubic",
    }


def test_each_model_has_its_own_v2_routes_and_the_repository_lists_them(client: TestClient) -> None:
    for name, labels in (("dogs", DOGS), ("birds", BIRDS)):
        metadata = client.get(f"/v2/models/{name}").json()
        assert metadata["name"] == name and metadata["outputs"][0]["shape"] == [-1, len(labels)]
        assert client.get(f"/v2/models/{name}/ready").json() == {"ready": True}
        # The image's bytes through the binary tensor data extension, as tritonclient sends them.
        header = (
            b'{"inputs":[{"name":"image","datatype":"BYTES","shape":[1],"parameters":{"binary_data_size":%d}}],'
            % (len(JPEG) + 4)
            + b'"outputs":[{"name":"probabilities","parameters":{"classification":2}}]}'
        )
        answer = client.post(
            f"/v2/models/{name}/infer",
            content=header + len(JPEG).to_bytes(4, "little") + JPEG,
            headers={"Inference-Header-Content-Length": str(len(header))},
        ).json()
        assert answer["model_name"] == name
        assert {entry.split(":")[2] for entry in answer["outputs"][0]["data"]} <= set(labels)
    assert client.get("/v2/models/cats").status_code == 404
    index = client.post("/v2/repository/index").json()
    assert index == [
        {"name": "birds", "version": "1", "state": "READY", "reason": ""},
        {"name": "dogs", "version": "1", "state": "READY", "reason": ""},
    ]
    assert client.post("/v2/repository/index", json={"ready": True}).json() == index


def test_health_and_metrics_report_each_model(client: TestClient) -> None:
    client.post("/predict?model=dogs", files={"image": ("c.jpg", JPEG)})
    client.post("/predict?model=dogs", files={"image": ("c.jpg", b"not an image")})
    client.post("/predict", files={"image": ("c.jpg", JPEG)})
    health = client.get("/health").json()
    assert health["model"]["name"] == "birds" and [m["name"] for m in health["models"]] == ["birds", "dogs"]
    assert all(m["version"] == 1 and m["waiting"] == 0 and m["last_error"] is None for m in health["models"])
    assert health["models"][1]["classes"] == 6 and health["failures"] == {}
    assert "birds" in health["warning"] and "dogs" in health["warning"]
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(client.get("/metrics").text)
        for sample in family.samples
    }
    assert samples[("resnet_images_total", (("model", "dogs"), ("outcome", "ok")))] == 1
    assert samples[("resnet_images_total", (("model", "dogs"), ("outcome", "invalid_image")))] == 1
    assert samples[("resnet_images_total", (("model", "birds"), ("outcome", "ok")))] == 1
    assert samples[("resnet_batch_size_count", (("model", "dogs"),))] == 1
    assert samples[("resnet_queue_depth", (("model", "birds"),))] == 0
    info = {dict(labels)["name"] for name, labels in samples if name == "resnet_model_info"}
    assert info == {"birds", "dogs"}


def test_each_model_has_its_own_batcher_and_queue_bound(client: TestClient) -> None:
    models = runtime_of(client.app).models  # type: ignore[arg-type]
    dogs, birds = models.get("dogs"), models.get("birds")
    assert dogs.batcher is not birds.batcher and dogs.batcher.max_queue == birds.batcher.max_queue == 16
    # A full queue for one model refuses its requests, and only its.
    held = [dogs.batcher.reserve() for _ in range(16)]
    try:
        refused = client.post("/predict?model=dogs", files={"image": ("c.jpg", JPEG)})
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "overloaded"
        assert client.post("/predict?model=birds", files={"image": ("c.jpg", JPEG)}).status_code == 200
    finally:
        for slot in held:
            slot.release()


def test_a_folder_that_cannot_be_served_stops_the_start(tmp_path: Path, clean_env: None) -> None:
    (tmp_path / "empty").mkdir()
    with (
        pytest.raises(StartupError, match="holds no .onnx file"),
        TestClient(create_app(Settings(model_dir=tmp_path / "empty"))),
    ):
        pass
    write_null_model(tmp_path / "good" / "a.onnx")
    (tmp_path / "good" / "broken.onnx").write_bytes(b"not onnx")
    with (
        pytest.raises(StartupError, match="broken.onnx could not be loaded"),
        TestClient(create_app(Settings(model_dir=tmp_path / "good"))),
    ):
        pass
    with (
        pytest.raises(StartupError, match="RESNET_DEFAULT_MODEL=zebra"),
        TestClient(create_app(Settings(model_dir=tmp_path / "good", default_model="zebra"))),
    ):
        pass


def test_the_api_docs_list_the_models_with_their_classes_and_input(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    description = spec["info"]["description"]
    assert "| `birds` (default) | bird-0, bird-1, bird-2, bird-3 | 224×224×3 BGR NHWC | caffe |" in description
    assert "| `dogs` | dog-0, dog-1, dog-2, dog-3, dog-4, dog-5 |" in description
    (model,) = [p for p in spec["paths"]["/predict"]["post"]["parameters"] if p["name"] == "model"]
    assert {"type": "string", "minLength": 1, "maxLength": 200, "enum": ["birds", "dogs"]} in model["schema"]["anyOf"]
