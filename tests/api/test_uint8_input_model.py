"""A model that preprocesses in its graph, served: the same answers, and UINT8 pixels as its v2 tensor input.

The server runs the stand-in model's `--uint8-input` copy; its answers are checked against the float file run by
ONNX Runtime on the service's own float32 tensors of the same images.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from resnet_service import Settings
from resnet_service.export.uint8_input import to_uint8_input
from resnet_service.inference.labels import Labels
from resnet_service.inference.model_contract import InputSpec, session_contract
from resnet_service.inference.preprocessing import preprocess
from tests.conftest import ThreadedServer, free_port, threaded_server
from tests.support.images import encode, image_tensor, photo

CAT = encode(photo("chelsea"), "JPEG", quality=90)
COFFEE = encode(photo("coffee"), "PNG")
SHAPE = [224, 224, 3]


@pytest.fixture(scope="module")
def float_session(model_path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def uint8_path(model_path: Path, float_session: ort.InferenceSession, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("uint8") / "stand-in.uint8.onnx"
    spec = session_contract(float_session, model_path).input
    onnx.save(to_uint8_input(onnx.load(str(model_path)), spec), str(path))
    return path


@pytest.fixture(scope="module")
def grpc_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def server(uint8_path: Path, grpc_port: int) -> Iterator[ThreadedServer]:
    with threaded_server(Settings(model_path=uint8_path, grpc_port=grpc_port)) as running:
        yield running


def _expected(float_session: ort.InferenceSession, images: list[bytes]) -> np.ndarray:
    (probabilities,) = float_session.run(None, {"input": np.concatenate([preprocess(i, 10**9) for i in images])})
    return probabilities


def _pixels(images: list[bytes]) -> np.ndarray:
    """What a client sends such a model: the images resized to 224×224, as uint8 RGB."""
    return np.concatenate([preprocess(image, 10**9, spec=InputSpec(uint8_pixels=True)) for image in images])


def test_predict_and_health_serve_it_with_the_float_files_answers(
    server: ThreadedServer, float_session: ort.InferenceSession
) -> None:
    health = httpx.get(f"{server.url}/health").json()
    described = json.dumps(health)
    assert '"datatype": "UINT8"' in described and '"preprocessing_in_model": true' in described
    response = httpx.post(f"{server.url}/predict", files={"image": ("cat.jpg", CAT)}, params={"top_k": 1000})
    assert response.status_code == 200
    served = [(p["label"], p["probability"]) for p in response.json()["predictions"]]
    expected = Labels.load().top_k(_expected(float_session, [CAT])[0], 1000)
    assert [label for label, _ in served[:5]] == [label for label, _ in expected[:5]]
    np.testing.assert_allclose([p for _, p in served], [p for _, p in expected], rtol=0, atol=1e-6)


def test_v2_metadata_names_uint8_pixels_as_the_tensor_input(server: ThreadedServer) -> None:
    client = triton_http.InferenceServerClient(server.url.removeprefix("http://"))
    try:
        inputs = client.get_model_metadata("resnet50")["inputs"]
    finally:
        client.close()
    assert inputs == [
        {"name": "image", "datatype": "BYTES", "shape": [-1]},
        {"name": "input", "datatype": "UINT8", "shape": [-1, *SHAPE]},
    ]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_v2_http_uint8_pixels_give_what_the_images_give(
    server: ThreadedServer, float_session: ort.InferenceSession, binary: bool
) -> None:
    client = triton_http.InferenceServerClient(server.url.removeprefix("http://"))
    try:
        pixels = _pixels([CAT, COFFEE])
        tensor = triton_http.InferInput("input", list(pixels.shape), "UINT8").set_data_from_numpy(
            pixels, binary_data=binary
        )
        from_pixels = client.infer("resnet50", [tensor]).as_numpy("probabilities")
    finally:
        client.close()
    np.testing.assert_allclose(from_pixels, _expected(float_session, [CAT, COFFEE]), rtol=0, atol=1e-6)


def test_v2_http_refuses_float_tensors_and_pixels_out_of_range_with_the_reason(server: ThreadedServer) -> None:
    url = f"{server.url}/v2/models/resnet50/infer"
    count = int(np.prod(SHAPE))
    floats = {"inputs": [{"name": "input", "shape": [1, *SHAPE], "datatype": "FP32", "data": [0.0] * count}]}
    response = httpx.post(url, json=floats)
    assert response.status_code == 400
    assert "'input' (UINT8 [N, 224, 224, 3] (resized 0-255 RGB pixels" in response.json()["error"]
    for bad in (256, -1, 1.5):
        data = [0] * count
        data[7] = bad
        pixels = {"inputs": [{"name": "input", "shape": [1, *SHAPE], "datatype": "UINT8", "data": data}]}
        response = httpx.post(url, json=pixels)
        assert response.status_code == 400, bad
        assert "UINT8 data must be whole numbers from 0 to 255" in response.json()["error"]
    header = json.dumps(
        {
            "inputs": [
                {"name": "input", "shape": [1, *SHAPE], "datatype": "UINT8", "parameters": {"binary_data_size": 8}}
            ]
        }
    ).encode()
    response = httpx.post(url, content=header + bytes(8), headers={"Inference-Header-Content-Length": str(len(header))})
    assert response.status_code == 400 and "needs 150528 bytes of UINT8, got 8" in response.json()["error"]


def test_grpc_takes_uint8_pixels_raw_or_as_uint_contents_and_refuses_values_past_255(
    server: ThreadedServer, grpc_port: int, float_session: ort.InferenceSession
) -> None:
    pixels = _pixels([CAT])
    expected = _expected(float_session, [CAT])
    client = triton_grpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    try:
        raw = triton_grpc.InferInput("input", list(pixels.shape), "UINT8").set_data_from_numpy(pixels)
        np.testing.assert_allclose(client.infer("resnet50", [raw]).as_numpy("probabilities"), expected, atol=1e-6)
        from_image = client.infer("resnet50", [image_tensor(triton_grpc, [CAT])]).as_numpy("probabilities")
        np.testing.assert_allclose(from_image, expected, atol=1e-6)
    finally:
        client.close()
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)

        def infer(values: np.ndarray) -> pb.ModelInferResponse:
            tensor = pb.ModelInferRequest.InferInputTensor(name="input", datatype="UINT8", shape=[1, *SHAPE])
            tensor.contents.uint_contents.extend(values.ravel().tolist())
            return stub.ModelInfer(pb.ModelInferRequest(model_name="resnet50", inputs=[tensor]))

        answered = infer(pixels)
        typed = np.frombuffer(answered.raw_output_contents[0], dtype="<f4").reshape(1, -1)
        np.testing.assert_allclose(typed, expected, atol=1e-6)
        wrapped = pixels.astype(np.uint32)
        wrapped.flat[3] = 300
        with pytest.raises(grpc.RpcError) as refused:
            infer(wrapped)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "UINT8 contents must be from 0 to 255" in (refused.value.details() or "")
