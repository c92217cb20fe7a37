"""An ONNX file made elsewhere (here: channels-first, 32×32, torch preprocessing, no metadata).

Refused at startup, naming the missing keys, unless RESNET_PREPROCESSING and RESNET_LABELS say how to serve it;
then its answers are what its arithmetic gives on the image preprocessed as torch mode says.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from resnet_service import Settings, create_app
from tests.conftest import free_port, server_env
from tests.support.images import encode, photo

NAMES = ["red", "green", "blue", "grey"]
WEIGHTS = np.array([[3, -1, -1, 0.5], [-1, 3, -1, 0.5], [-1, -1, 3, 0.5]], dtype=np.float32)
EXIT_STARTUP_FAILURE = 3


@pytest.fixture
def foreign(tmp_path: Path) -> Path:
    """[N, 3, 32, 32] → mean colour → a fixed 3×4 matrix → softmax; no metadata at all."""
    nodes = [
        helper.make_node("ReduceMean", ["pixels", "axes"], ["colour"], keepdims=0),
        helper.make_node("MatMul", ["colour", "weights"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["scores"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "mean-colour",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["n", 3, 32, 32])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n", 4])],
        [numpy_helper.from_array(np.array([2, 3], np.int64), "axes"), numpy_helper.from_array(WEIGHTS, "weights")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    path = tmp_path / "foreign.onnx"
    onnx.save(model, str(path))
    return path


@pytest.mark.process
def test_serve_refuses_it_naming_the_missing_keys(foreign: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "resnet_service.process.cli",
            "serve",
            "--port",
            str(free_port()),
            "--model",
            str(foreign),
        ],
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == EXIT_STARTUP_FAILURE
    output = result.stdout + result.stderr  # the log goes to stdout
    assert "metadata has no input_size, preprocessing, labels" in output and "RESNET_PREPROCESSING" in output


def test_the_settings_describe_it_and_it_answers_as_its_arithmetic_says(
    foreign: Path, tmp_path: Path, clean_env: None
) -> None:
    (tmp_path / "colours.txt").write_text("\n".join(NAMES) + "\n")
    settings = Settings(model_path=foreign, preprocessing="torch", labels=str(tmp_path / "colours.txt"))
    jpeg = encode(photo("coffee"), "JPEG")
    # Independently of the service: torch mode by hand, then the model's arithmetic.
    pixels = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB").resize((32, 32)), dtype=np.float64) / 255
    normalised = (pixels - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    logits = normalised.mean(axis=(0, 1)) @ WEIGHTS
    expected = np.exp(logits) / np.exp(logits).sum()
    with TestClient(create_app(settings)) as client:
        answer = client.post("/predict", files={"image": ("coffee.jpg", jpeg)}).json()
        got = {p["label"]: p["probability"] for p in answer["predictions"]}
        assert set(got) == set(NAMES)
        for name, probability in zip(NAMES, expected, strict=True):
            assert abs(got[name] - probability) < 1e-5, (name, got[name], probability)
        metadata = client.get("/v2/models/resnet50").json()
        assert metadata["inputs"][1]["shape"] == [-1, 3, 32, 32] and metadata["outputs"][0]["shape"] == [-1, 4]
        (model,) = client.get("/models").json()
        assert model["input"]["layout"] == "NCHW" and model["input"]["preprocessing"] == "torch"
