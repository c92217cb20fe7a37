"""Zero-downtime model updates: a changed file or POST .../load swaps a model in beside the old one.

The swap under load runs real exports through a real server; the rest use null models (bench/null_model.py) whose
labels say which version answered.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import onnx
import pytest
from fastapi.testclient import TestClient

from bench.null_model import write_null_model
from bench.swap import swap_under_load
from resnet_service import Settings, create_app
from resnet_service.inference.model_contract import labels_digest
from tests.conftest import KerasReference
from tests.support.images import encode, photo

JPEG = encode(photo("chelsea"), "JPEG")
OLD = [f"old-{i}" for i in range(5)]
NEW = [f"new-{i}" for i in range(5)]


def _relabelled(source: Path, target: Path, names: list[str]) -> Path:
    model = onnx.load(str(source))
    props = {prop.key: prop.value for prop in model.metadata_props}
    props.update({"labels": json.dumps(names), "labels_sha256": labels_digest(names)})
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(target))
    return target


def test_a_swap_under_load_answers_every_request_with_the_right_models_labels(
    keras_reference: KerasReference, tmp_path: Path, report_figure: Callable[[str], None]
) -> None:
    # Two real exports: ResNet50 with the ImageNet classes, then the fine-tuned 7-class model under new names
    # (a few of its cat names are ImageNet's too, and each answer must say which model gave it).
    cats = keras_reference.model_path.parent / "cats.onnx"
    second = _relabelled(cats, tmp_path / "cats.onnx", [f"cat-{i}" for i in range(7)])
    report = swap_under_load(keras_reference.model_path, second, seconds=8, connections=8)
    assert report.non_200 == 0 and report.wrong_model == 0, report
    assert report.ready_polls > 0 and report.ready_not_200 == 0, report
    assert report.by_phase["before"]["first_model"] > 0 and report.by_phase["after"]["second_model"] > 0, report
    report_figure(
        f"{report.answers} answers from 8 connections in {report.seconds:.1f} s, all 200 with the right model's "
        f"labels; readiness 200 at all {report.ready_polls} polls during the swap, which took {report.swap_s:.2f} s "
        "(load and warm-up beside the old version); p99 before / during / after: "
        + " / ".join(f"{report.by_phase[p]['p99_ms']:.0f}" for p in ("before", "during", "after"))
        + " ms"
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_null_model(tmp_path / "models" / "pets.onnx", OLD)
    return tmp_path / "models"


@pytest.fixture
def client(folder: Path, clean_env: None) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(model_dir=folder, model_poll_s=0.1))) as test_client:
        yield test_client


def _labels(client: TestClient, model: str = "pets") -> set[str]:
    response = client.post(f"/predict?model={model}", files={"image": ("c.jpg", JPEG)})
    assert response.status_code == 200, response.text
    return {prediction["label"] for prediction in response.json()["predictions"]}


def _until(condition: Callable[[], bool], seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the model folder's change was not picked up"
        time.sleep(0.05)


def _model(client: TestClient, name: str) -> dict | None:
    return next((m for m in client.get("/health").json()["models"] if m["name"] == name), None)


def _replace(folder: Path, name: str, write: Callable[[Path], object]) -> None:
    # As a deployment does it: written beside, then renamed over in one step.
    staged = folder / f".{name}.partial"
    write(staged)
    staged.rename(folder / f"{name}.onnx")


def test_a_changed_file_is_swapped_in_and_a_new_one_loaded(client: TestClient, folder: Path) -> None:
    assert _labels(client) <= set(OLD)
    _replace(folder, "pets", lambda path: write_null_model(path, NEW, seed=3))
    _until(lambda: (_model(client, "pets") or {}).get("version") == 2)
    assert _labels(client) <= set(NEW)
    assert client.get("/health/ready").status_code == 200
    write_null_model(folder / "birds.onnx", ["owl", "wren"])
    _until(lambda: _model(client, "birds") is not None)
    assert _labels(client, "birds") <= {"owl", "wren"}
    (folder / "birds.onnx").unlink()
    _until(lambda: _model(client, "birds") is None)
    assert client.post("/predict?model=birds", files={"image": ("c.jpg", JPEG)}).status_code == 404


def test_a_file_that_fails_to_load_leaves_the_old_version_serving_and_says_why(
    client: TestClient, folder: Path
) -> None:
    _replace(folder, "pets", lambda path: path.write_bytes(b"half a model"))
    _until(lambda: (_model(client, "pets") or {}).get("last_error") is not None)
    model = _model(client, "pets")
    assert model is not None and model["version"] == 1 and "could not be loaded" in model["last_error"]
    assert _labels(client) <= set(OLD) and client.get("/health/ready").status_code == 200
    (entry,) = client.post("/v2/repository/index").json()
    assert entry["state"] == "READY" and "could not be loaded" in entry["reason"]
    # Fixed, it is picked up again.
    _replace(folder, "pets", lambda path: write_null_model(path, NEW, seed=3))
    _until(lambda: (_model(client, "pets") or {}).get("version") == 2)
    assert _labels(client) <= set(NEW) and _model(client, "pets")["last_error"] is None  # type: ignore[index]


def test_load_and_unload_through_the_repository_extension(folder: Path, clean_env: None) -> None:
    # Watching off: only POST .../load loads.
    with TestClient(create_app(Settings(model_dir=folder, model_poll_s=0))) as client:
        write_null_model(folder / "pets.onnx", NEW, seed=3)
        write_null_model(folder / "birds.onnx", ["owl", "wren"])
        assert _labels(client) <= set(OLD)
        assert client.post("/v2/repository/models/pets/load").json() == {}
        assert _labels(client) <= set(NEW) and _model(client, "pets")["version"] == 2  # type: ignore[index]
        assert client.post("/v2/repository/models/birds/load").status_code == 200
        assert _labels(client, "birds") <= {"owl", "wren"}
        (folder / "pets.onnx").write_bytes(b"broken")
        failed = client.post("/v2/repository/models/pets/load")
        assert failed.status_code == 400 and "version 2 keeps serving" in failed.json()["error"]
        assert _labels(client) <= set(NEW)
        assert client.post("/v2/repository/models/zebra/load").status_code == 404
        refused = client.post("/v2/repository/models/pets/unload")
        assert refused.status_code == 409 and "default model" in refused.json()["error"]
        assert client.post("/v2/repository/models/birds/unload").json() == {}
        assert client.post("/predict?model=birds", files={"image": ("c.jpg", JPEG)}).status_code == 404
        states = {entry["name"]: entry["state"] for entry in client.post("/v2/repository/index").json()}
        assert states == {"birds": "UNAVAILABLE", "pets": "READY"}
