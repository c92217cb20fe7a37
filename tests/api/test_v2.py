"""Open Inference Protocol v2, driven by the real tritonclient.http against a real uvicorn server."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from resnet_service import Settings
from resnet_service.inference.labels import Labels
from resnet_service.inference.preprocessing import preprocess
from resnet_service.v2.inference import PLATFORMS
from tests.conftest import ThreadedServer, threaded_server
from tests.support.images import encode, photo
from tests.support.runtimes import AUTO_ON_CPU, PROVIDERS

CAT = encode(photo("chelsea"), "JPEG", quality=90)
COFFEE = encode(photo("coffee"), "PNG")
LABELS = Labels.load()


@pytest.fixture(scope="module")
def server(model_path: Path) -> Iterator[ThreadedServer]:
    with threaded_server(Settings(model_path=model_path)) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: ThreadedServer) -> Iterator[triton.InferenceServerClient]:
    connection = triton.InferenceServerClient(server.url.removeprefix("http://"))
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def seed_answers(server: ThreadedServer) -> dict[bytes, list[dict[str, object]]]:
    answers = {}
    for image in (CAT, COFFEE):
        response = httpx.post(f"{server.url}/predict", files={"image": ("i", image)}, params={"top_k": 1000})
        answers[image] = response.json()["predictions"]
    return answers


def _image_input(images: list[bytes], binary: bool) -> triton.InferInput:
    tensor = triton.InferInput("image", [len(images)], "BYTES")
    # JSON cannot carry raw bytes: in JSON each image is a base64 string, as docs/api.md documents.
    data = images if binary else [base64.b64encode(image) for image in images]
    return tensor.set_data_from_numpy(np.array(data, dtype=np.object_), binary_data=binary)


def test_server_and_model_metadata_and_probes(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("resnet50") and client.is_model_ready("resnet50", "1")
    assert not client.is_model_ready("resnet18")
    server = client.get_server_metadata()
    assert {"binary_tensor_data", "classification"} <= set(server["extensions"])
    model = client.get_model_metadata("resnet50")
    assert model["inputs"] == [
        {"name": "image", "datatype": "BYTES", "shape": [-1]},
        {"name": "input", "datatype": "FP32", "shape": [-1, 224, 224, 3]},
    ]
    assert model["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 1000]}]
    # Which runtime serves it, in Triton's platform names, and with its precision.
    assert model["platform"] == PLATFORMS[AUTO_ON_CPU]
    assert model["parameters"] == {"runtime": AUTO_ON_CPU, "provider": PROVIDERS[AUTO_ON_CPU], "precision": "fp32"}


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_encoded_images_give_what_predict_gives(
    client: triton.InferenceServerClient, seed_answers: dict, binary: bool
) -> None:
    outputs = [triton.InferRequestedOutput("probabilities", binary_data=binary)]
    result = client.infer("resnet50", [_image_input([CAT, COFFEE], binary)], outputs=outputs, request_id="r-1")
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (2, 1000) and probabilities.dtype == np.float32
    assert result.get_response()["id"] == "r-1" and result.get_response()["model_name"] == "resnet50"
    for row, image in zip(probabilities, (CAT, COFFEE), strict=True):
        # /predict gave all 1000 classes, ranked; ranking this row the same way must give the same list exactly.
        ranked = [{"label": label, "probability": p} for label, p in LABELS.top_k(row, 1000)]
        assert ranked == seed_answers[image]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_preprocessed_tensors_give_what_the_encoded_images_give(
    client: triton.InferenceServerClient, binary: bool
) -> None:
    batch = np.concatenate([preprocess(image, 10**9) for image in (CAT, COFFEE)])
    tensor = triton.InferInput("input", list(batch.shape), "FP32").set_data_from_numpy(batch, binary_data=binary)
    from_tensors = client.infer("resnet50", [tensor]).as_numpy("probabilities")
    from_images = client.infer("resnet50", [_image_input([CAT, COFFEE], True)]).as_numpy("probabilities")
    # The same model on the same tensors, though perhaps in batches of another size: equal to float32 rounding.
    np.testing.assert_allclose(from_tensors, from_images, rtol=0, atol=1e-6)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_classification_extension_returns_score_index_label(client: triton.InferenceServerClient, binary: bool) -> None:
    outputs = [triton.InferRequestedOutput("probabilities", binary_data=binary, class_count=3)]
    result = client.infer("resnet50", [_image_input([CAT, COFFEE], True)], outputs=outputs)
    full = client.infer("resnet50", [_image_input([CAT, COFFEE], True)]).as_numpy("probabilities")
    top = result.as_numpy("probabilities")
    assert top.shape == (2, 3)
    for strings, row in zip(top, full, strict=True):
        # In JSON, BYTES come back as text; in binary, as bytes.
        parsed = [(e if isinstance(e, str) else e.decode()).split(":", 2) for e in strings]
        indices = [int(index) for _, index, _ in parsed]
        assert indices == list(np.argsort(-row, kind="stable")[:3])
        assert [label for _, _, label in parsed] == [LABELS.names[i] for i in indices]
        np.testing.assert_allclose([float(score) for score, _, _ in parsed], row[indices], atol=1e-6)


def test_a_versioned_infer_route_answers_too(server: ThreadedServer) -> None:
    body = {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(CAT).decode()]}]}
    response = httpx.post(f"{server.url}/v2/models/resnet50/versions/1/infer", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["shape"] == [1, 1000]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([("nope", [1], "BYTES")], "unknown input 'nope'"),
        ([("input", [1, 224, 224], "FP32")], "must have shape [N, 224, 224, 3]"),
        ([("image", [1], "FP32")], "unknown input 'image' (FP32)"),
    ],
)
def test_protocol_errors_reach_tritonclient_as_the_protocol_error_shape(
    client: triton.InferenceServerClient, inputs: list[tuple[str, list[int], str]], message: str
) -> None:
    tensors = []
    for name, shape, datatype in inputs:
        tensor = triton.InferInput(name, shape, datatype)
        dtype = np.object_ if datatype == "BYTES" else np.float32
        tensor.set_data_from_numpy(
            np.zeros(shape, dtype=dtype) if dtype is np.float32 else np.array([CAT], dtype=dtype)
        )
        tensors.append(tensor)
    with pytest.raises(InferenceServerException) as raised:
        client.infer("resnet50", tensors)
    assert raised.value.status() == "400" and message in raised.value.message()


def test_an_image_that_cannot_be_decoded_fails_the_request_and_names_its_row(
    client: triton.InferenceServerClient,
) -> None:
    with pytest.raises(InferenceServerException) as raised:
        client.infer("resnet50", [_image_input([CAT, b"not an image"], True)])
    assert raised.value.status() == "400" and raised.value.message().startswith("row 1: ")


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/v2/models/resnet18/infer", b"{}", 404),
        ("/v2/models/resnet50/versions/2/infer", b"{}", 404),
        ("/v2/models/resnet50/infer", b"{not json", 400),
        ("/v2/models/resnet50/infer", b'{"inputs": []}', 400),
    ],
)
def test_raw_http_errors_are_json_with_an_error_string(
    server: ThreadedServer, path: str, body: bytes, status: int
) -> None:
    response = httpx.post(f"{server.url}{path}", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    assert set(response.json()) == {"error"} and isinstance(response.json()["error"], str)


def test_a_binary_section_that_does_not_match_its_header_is_a_400(server: ThreadedServer) -> None:
    header = json.dumps(
        {
            "inputs": [
                {"name": "input", "shape": [1, 224, 224, 3], "datatype": "FP32", "parameters": {"binary_data_size": 16}}
            ]
        }
    ).encode()
    response = httpx.post(
        f"{server.url}/v2/models/resnet50/infer",
        content=header + b"\0" * 16,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 400 and "needs 602112 bytes of FP32" in response.json()["error"]
