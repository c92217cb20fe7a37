"""The Open Inference Protocol v2 over gRPC, driven by the real tritonclient.grpc against a real server."""

from __future__ import annotations

import logging
import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc
from tritonclient.utils import InferenceServerException

from resnet_service import Settings
from resnet_service.core.log import ACCESS_LOGGER
from resnet_service.inference.labels import Labels
from resnet_service.inference.preprocessing import preprocess
from resnet_service.v2.inference import PLATFORMS
from resnet_service.web.runtime import runtime_of
from tests.conftest import ThreadedServer, free_port, threaded_server
from tests.support.faulty_model import write_faulty_model
from tests.support.images import encode, image_tensor, photo
from tests.support.runtimes import AUTO_ON_CPU

CAT = encode(photo("chelsea"), "JPEG", quality=90)
COFFEE = encode(photo("coffee"), "PNG")
KEY = "grpc-test-key"


@pytest.fixture(scope="module")
def grpc_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def server(model_path: Path, grpc_port: int) -> Iterator[ThreadedServer]:
    with threaded_server(Settings(model_path=model_path, grpc_port=grpc_port)) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: ThreadedServer, grpc_port: int) -> Iterator[triton.InferenceServerClient]:
    connection = triton.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    yield connection
    connection.close()


def _http_answer(server: ThreadedServer, image: bytes) -> list[dict[str, object]]:
    response = httpx.post(f"{server.url}/predict", files={"image": ("i", image)}, params={"top_k": 1000})
    return response.json()["predictions"]


def test_probes_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("resnet50") and client.is_model_ready("resnet50", "1")
    assert not client.is_model_ready("resnet18")
    server = client.get_server_metadata(as_json=True)
    assert server["name"] == "resnet-service" and "classification" in server["extensions"]
    model = client.get_model_metadata("resnet50", as_json=True)
    assert {tensor["name"]: tensor["datatype"] for tensor in model["inputs"]} == {"image": "BYTES", "input": "FP32"}
    assert model["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": ["-1", "1000"]}]
    # gRPC's metadata message has no parameters: the platform names the runtime.
    assert model["platform"] == PLATFORMS[AUTO_ON_CPU]


def test_images_as_bytes_get_the_same_probabilities_as_predict(
    client: triton.InferenceServerClient, server: ThreadedServer
) -> None:
    result = client.infer("resnet50", [image_tensor(triton, [CAT, COFFEE])], request_id="r-1")
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (2, 1000) and result.get_response().id == "r-1"
    labels = Labels.load().names
    for row, image in zip(probabilities, (CAT, COFFEE), strict=True):
        expected = _http_answer(server, image)  # every class, best first
        assert [p["label"] for p in expected[:5]] == [labels[i] for i in np.argsort(-row, kind="stable")[:5]]
        assert np.allclose(sorted(row, reverse=True), [p["probability"] for p in expected], atol=1e-6)


def test_the_classification_extension_answers_the_top_k_as_strings(client: triton.InferenceServerClient) -> None:
    top3 = triton.InferRequestedOutput("probabilities", class_count=3)
    result = client.infer("resnet50", [image_tensor(triton, [CAT])], outputs=[top3])
    (row,) = result.as_numpy("probabilities")
    assert len(row) == 3 and all(len(entry.decode().split(":")) == 3 for entry in row)


def test_a_preprocessed_fp32_tensor_gives_what_the_image_gives(client: triton.InferenceServerClient) -> None:
    tensor = preprocess(CAT, 10**9)
    rows = triton.InferInput("input", list(tensor.shape), "FP32").set_data_from_numpy(tensor)
    from_tensor = client.infer("resnet50", [rows]).as_numpy("probabilities")
    from_image = client.infer("resnet50", [image_tensor(triton, [CAT])]).as_numpy("probabilities")
    assert np.allclose(from_tensor, from_image, atol=1e-6)


@pytest.mark.parametrize(
    ("model", "inputs", "status", "words"),
    [
        ("resnet18", [image_tensor(triton, [CAT])], "StatusCode.NOT_FOUND", "resnet18"),
        ("resnet50", [image_tensor(triton, [CAT, b"not an image"])], "StatusCode.INVALID_ARGUMENT", "row 1: "),
        ("resnet50", [triton.InferInput("pixels", [1], "BYTES")], "StatusCode.INVALID_ARGUMENT", "unknown input"),
    ],
    ids=["unknown model", "bad image", "unknown input"],
)
def test_errors_carry_grpc_status_codes_and_the_services_message(
    client: triton.InferenceServerClient, model: str, inputs: list[triton.InferInput], status: str, words: str
) -> None:
    if inputs[0].name() == "pixels":
        inputs[0].set_data_from_numpy(np.array([CAT], dtype=np.object_))
    with pytest.raises(InferenceServerException) as raised:
        client.infer(model, inputs)
    assert raised.value.status() == status and words in raised.value.message()


def test_calls_are_counted_in_the_request_metrics_with_the_status_they_stand_for(
    client: triton.InferenceServerClient, server: ThreadedServer
) -> None:
    client.infer("resnet50", [image_tensor(triton, [CAT])])
    with pytest.raises(InferenceServerException):
        client.infer("resnet18", [image_tensor(triton, [CAT])])
    metrics = httpx.get(f"{server.url}/metrics").text
    series = 'resnet_requests_total{method="GRPC",route="/inference.GRPCInferenceService/ModelInfer",status="%s"}'
    for status in ("200", "404"):
        assert re.search(re.escape(series % status) + r" [1-9]", metrics), metrics


def test_with_api_keys_infer_needs_the_key_and_the_probes_stay_open(model_path: Path) -> None:
    port = free_port()
    settings = Settings(model_path=model_path, grpc_port=port, api_keys=KEY)
    with threaded_server(settings):
        client = triton.InferenceServerClient(f"127.0.0.1:{port}")
        assert client.is_server_ready() and client.get_model_metadata("resnet50", as_json=True)["name"] == "resnet50"
        with pytest.raises(InferenceServerException) as raised:
            client.infer("resnet50", [image_tensor(triton, [CAT])])
        assert raised.value.status() == "StatusCode.UNAUTHENTICATED"
        with pytest.raises(InferenceServerException) as wrong:
            client.infer("resnet50", [image_tensor(triton, [CAT])], headers={"authorization": "Bearer wrong"})
        assert wrong.value.status() == "StatusCode.UNAUTHENTICATED"
        answered = client.infer("resnet50", [image_tensor(triton, [CAT])], headers={"authorization": f"Bearer {KEY}"})
        assert answered.as_numpy("probabilities").shape == (1, 1000)
        client.close()


def _eight_cats() -> triton.InferInput:
    return image_tensor(triton, [CAT] * 8)


def test_a_full_queue_is_unavailable(slow_model_path: Path, clean_env: None) -> None:
    port = free_port()
    limits = {"max_queue": 1, "max_batch_size": 1, "queue_wait_s": 0}
    with threaded_server(Settings(model_path=slow_model_path, grpc_port=port, **limits)):
        client = triton.InferenceServerClient(f"127.0.0.1:{port}")
        with pytest.raises(InferenceServerException) as raised:
            client.infer("resnet50", [_eight_cats()])
        # Eight rows need eight queue places; past the first, each finds the queue full (503 on HTTP).
        assert raised.value.status() == "StatusCode.UNAVAILABLE" and "row 1: " in raised.value.message()
        client.close()


def test_a_call_in_progress_counts_as_a_request_in_flight(slow_model_path: Path, clean_env: None) -> None:
    port = free_port()
    # One row per batch at about ResNet-50's cost: eight rows keep the call busy while /metrics is read.
    with threaded_server(Settings(model_path=slow_model_path, grpc_port=port, max_batch_size=1)) as server:
        client = triton.InferenceServerClient(f"127.0.0.1:{port}")
        call = threading.Thread(target=client.infer, args=("resnet50", [_eight_cats()]))
        call.start()
        seen = []
        while call.is_alive():
            text = httpx.get(f"{server.url}/metrics").text
            seen.append(float(re.search(r"^resnet_requests_in_flight (\S+)$", text, flags=re.M).group(1)))
        call.join()
        client.close()
        after = httpx.get(f"{server.url}/metrics").text
    # The scrape itself is one request in flight; the gRPC call was the other.
    assert max(seen) == 2 and re.search(r"^resnet_requests_in_flight 1\.0$", after, flags=re.M)


def test_a_request_past_its_deadline_is_deadline_exceeded(slow_model_path: Path, clean_env: None) -> None:
    port = free_port()
    # One row per batch at about ResNet-50's cost: eight rows take several times the 0.1 s deadline.
    limits = {"max_queue": 64, "max_batch_size": 1, "request_timeout_s": 0.1}
    with threaded_server(Settings(model_path=slow_model_path, grpc_port=port, **limits)) as server:
        client = triton.InferenceServerClient(f"127.0.0.1:{port}")
        with pytest.raises(InferenceServerException) as raised:
            client.infer("resnet50", [_eight_cats()])
        assert raised.value.status() == "StatusCode.DEADLINE_EXCEEDED" and "deadline" in raised.value.message()
        # The images still waiting when it struck never cost model time.
        assert runtime_of(server.app).models.default.batcher.rows_run < 8  # type: ignore[union-attr]
        client.close()


def test_a_failing_model_run_is_internal_and_logged_with_its_traceback(
    tmp_path: Path, clean_env: None, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    with threaded_server(
        Settings(
            # The model fails inside ONNX Runtime; OpenVINO's Gather clamps the index instead of failing.
            model_path=write_faulty_model(tmp_path / "faulty.onnx"),
            grpc_port=port,
            runtime="onnxruntime",
        )
    ):
        client = triton.InferenceServerClient(f"127.0.0.1:{port}")
        with pytest.raises(InferenceServerException) as raised:
            client.infer("resnet50", [image_tensor(triton, [CAT])])
        client.close()
    assert raised.value.status() == "StatusCode.INTERNAL" and "Traceback" not in raised.value.message()
    failed = [record for record in caplog.records if "gRPC ModelInfer failed" in record.getMessage()]
    assert failed and failed[0].exc_info is not None


def test_the_access_line_counts_the_bytes_a_call_answered(
    client: triton.InferenceServerClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        client.infer("resnet50", [image_tensor(triton, [CAT])])
    (line,) = [r for r in caplog.records if r.name == ACCESS_LOGGER and "ModelInfer" in r.getMessage()]
    # 1,000 float32 probabilities, and the response's names and shape around them.
    assert 4_000 < line.fields["bytes_out"] < 4_200, line.fields  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def repository(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ThreadedServer, int]]:
    folder = tmp_path_factory.mktemp("repository")
    for name in ("alpha", "beta"):
        shutil.copy(model_path, folder / f"{name}.onnx")
    port = free_port()
    with threaded_server(Settings(model_dir=folder, model_poll_s=0, grpc_port=port, api_keys=KEY)) as running:
        yield running, port


@contextmanager
def _stub(port: int) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    """The protocol's own stub, for the fields tritonclient does not send."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def test_the_repository_extension_lists_unloads_and_loads_as_http_does(repository: tuple[ThreadedServer, int]) -> None:
    server, port = repository
    client = triton.InferenceServerClient(f"127.0.0.1:{port}")
    key = {"authorization": f"Bearer {KEY}"}
    http_index = httpx.post(f"{server.url}/v2/repository/index", headers=key).json()
    index = client.get_model_repository_index(headers=key, as_json=True)["models"]
    assert index == [
        {"name": "alpha", "version": "1", "state": "READY"},
        {"name": "beta", "version": "1", "state": "READY"},
    ]
    assert [{k: v for k, v in entry.items() if v} for entry in http_index] == index
    client.unload_model("beta", headers=key)
    assert not client.is_model_ready("beta")
    assert client.get_model_repository_index(headers=key, as_json=True)["models"][1] == {
        "name": "beta",
        "state": "UNAVAILABLE",
        "reason": "not loaded",
    }
    # Triton's "ready" field, which tritonclient does not send: only the models that are ready, on both transports.
    with _stub(port) as stub:
        ready = stub.RepositoryIndex(pb.RepositoryIndexRequest(ready=True), metadata=list(key.items()))
    assert [model.name for model in ready.models] == ["alpha"]
    assert httpx.post(f"{server.url}/v2/repository/index", headers=key, json={"ready": True}).json() == [http_index[0]]
    client.load_model("beta", headers=key)
    assert client.is_model_ready("beta")
    assert client.infer("beta", [image_tensor(triton, [CAT])], headers=key).as_numpy("probabilities").shape == (1, 1000)
    client.close()


def test_the_repository_refuses_without_the_key_the_default_model_and_another_repository(
    repository: tuple[ThreadedServer, int],
) -> None:
    _, port = repository
    client = triton.InferenceServerClient(f"127.0.0.1:{port}")
    key = {"authorization": f"Bearer {KEY}"}
    for call in (
        lambda: client.get_model_repository_index(),
        lambda: client.load_model("beta"),
        lambda: client.unload_model("beta", headers={"authorization": "Bearer wrong"}),
    ):
        with pytest.raises(InferenceServerException) as refused:
            call()
        assert refused.value.status() == "StatusCode.UNAUTHENTICATED"
    with pytest.raises(InferenceServerException) as default:
        client.unload_model("alpha", headers=key)
    assert default.value.status() == "StatusCode.FAILED_PRECONDITION" and "default" in default.value.message()
    with pytest.raises(InferenceServerException) as missing:
        client.load_model("gamma", headers=key)
    assert missing.value.status() == "StatusCode.NOT_FOUND" and "gamma" in missing.value.message()
    assert client.is_model_ready("alpha") and client.is_model_ready("beta")
    client.close()
    metadata = [("authorization", f"Bearer {KEY}")]
    with _stub(port) as stub:
        with pytest.raises(grpc.RpcError) as other:
            stub.RepositoryIndex(pb.RepositoryIndexRequest(repository_name="elsewhere"), metadata=metadata)
        assert other.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "one model repository" in other.value.details()
