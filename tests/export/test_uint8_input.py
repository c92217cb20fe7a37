"""`--uint8-input`: the preprocessing moves into the graph, the model takes 0-255 RGB pixels, the outputs stay equal.

Small models with every preprocessing mode and both layouts check the graph's arithmetic against the service's
own; the exported ResNet-50 (an export test) checks the real file, in fp32 and fp16, on both CPU runtimes.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from bench.null_model import save_self_described
from resnet_service.core.errors import StartupError
from resnet_service.export.uint8_input import pixels_and_tensors, to_uint8_input
from resnet_service.inference.engine import Engine
from resnet_service.inference.labels import Labels
from resnet_service.inference.model_contract import InputSpec, ModelContract, session_contract
from resnet_service.inference.preprocessing import preprocess
from tests.conftest import ROOT, KerasReference
from tests.support.images import encode, photo
from tests.support.runtimes import requires_openvino

CAT = (ROOT / "tests/data/cat.jpg").read_bytes()


def _tiny_model(path: Path, spec: InputSpec) -> Path:
    """A float32 classifier over 10 classes whose answer depends on every input element, in ``spec``'s layout."""
    rng = np.random.default_rng(1)
    width = spec.height * spec.width * 3
    matrix = (rng.standard_normal((width, 10)) / (60.0 * np.sqrt(width))).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["input"], ["flat"]),
            helper.make_node("MatMul", ["flat", "classifier"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
        ],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *spec.row_shape])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(matrix, "classifier")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    contract = ModelContract(spec, Labels(tuple(f"class {i}" for i in range(10))), "tiny")
    return save_self_described(model, path, contract, "random (tiny test model)")


def _session(source: Path | bytes) -> ort.InferenceSession:
    return ort.InferenceSession(
        source if isinstance(source, bytes) else str(source), providers=["CPUExecutionProvider"]
    )


def _images(spec: InputSpec) -> list[Image.Image]:
    noise = np.random.default_rng(3).integers(0, 256, size=(2, 40, 56, 3), dtype=np.uint8)
    return [photo("chelsea"), photo("coffee"), *(Image.fromarray(image) for image in noise)]


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
@pytest.mark.parametrize("mode", ["caffe", "tf", "torch", "none"])
def test_the_graph_does_the_services_preprocessing_to_the_bit(tmp_path: Path, mode: str, layout: str) -> None:
    spec = InputSpec.for_mode(mode, 32, 48, layout)  # type: ignore[arg-type]
    source = _tiny_model(tmp_path / "tiny.onnx", spec)
    uint8 = to_uint8_input(onnx.load(str(source)), spec)
    pixels, tensors = pixels_and_tensors(_images(spec), spec)
    assert pixels.dtype == np.uint8 and pixels.shape == (4, 32, 48, 3)
    assert tensors.dtype == np.float32 and tensors.shape == (4, *spec.row_shape)
    (expected,) = _session(source).run(None, {"input": tensors})
    (actual,) = _session(uint8.SerializeToString()).run(None, {"input": pixels})
    np.testing.assert_array_equal(actual, expected)


def test_the_copy_says_it_takes_uint8_pixels_and_keeps_the_rest_of_the_contract(model_path: Path) -> None:
    float_contract = session_contract(_session(model_path), model_path)
    uint8 = to_uint8_input(onnx.load(str(model_path)), float_contract.input)
    session = _session(uint8.SerializeToString())
    (model_input,) = session.get_inputs()
    assert (model_input.name, model_input.type, model_input.shape) == ("input", "tensor(uint8)", ["batch", 224, 224, 3])
    contract = session_contract(session, model_path)
    assert contract.input == replace(float_contract.input, uint8_pixels=True)
    assert contract.labels == float_contract.labels and contract.architecture == float_contract.architecture
    assert contract.input.describe()["datatype"] == "UINT8" and contract.input.describe()["preprocessing_in_model"]
    with pytest.raises(ValueError, match="not float32"):
        to_uint8_input(uint8, contract.input)


def test_a_uint8_input_without_the_metadata_or_metadata_without_it_is_refused(tmp_path: Path, model_path: Path) -> None:
    spec = session_contract(_session(model_path), model_path).input
    uint8 = to_uint8_input(onnx.load(str(model_path)), spec)
    unlabelled = tmp_path / "unlabelled.onnx"
    helper.set_model_props(uint8, {p.key: p.value for p in uint8.metadata_props if p.key != "input_dtype"})
    onnx.save(uint8, str(unlabelled))
    with pytest.raises(StartupError, match="takes uint8 input, but its metadata has no input_dtype=uint8"):
        session_contract(_session(unlabelled), unlabelled)
    claims = tmp_path / "claims.onnx"
    float_model = onnx.load(str(model_path))
    helper.set_model_props(
        float_model, {**{p.key: p.value for p in float_model.metadata_props}, "input_dtype": "uint8"}
    )
    onnx.save(float_model, str(claims))
    with pytest.raises(StartupError, match="takes float32 input; its metadata says uint8"):
        session_contract(_session(claims), claims)


@pytest.mark.parametrize("runtime", ["onnxruntime", pytest.param("openvino", marks=requires_openvino)])
def test_the_engine_feeds_uint8_pixels_and_answers_what_the_float_model_does(
    tmp_path: Path, model_path: Path, runtime: str
) -> None:
    spec = session_contract(_session(model_path), model_path).input
    path = tmp_path / "uint8.onnx"
    onnx.save(to_uint8_input(onnx.load(str(model_path)), spec), str(path))
    float_engine = Engine.load(model_path, "cpu", 1, runtime=runtime)  # type: ignore[arg-type]
    uint8_engine = Engine.load(path, "cpu", 1, runtime=runtime)  # type: ignore[arg-type]
    try:
        images = [CAT, encode(photo("coffee"), "PNG")]
        pixels = [preprocess(image, 10**9, spec=uint8_engine.contract.input) for image in images]
        assert all(row.dtype == np.uint8 and row.shape == (1, 224, 224, 3) for row in pixels)
        tensors = [preprocess(image, 10**9, spec=float_engine.contract.input) for image in images]
        np.testing.assert_allclose(uint8_engine.run_sync(pixels), float_engine.run_sync(tensors), atol=1e-6)
    finally:
        float_engine.close()
        uint8_engine.close()


def _export(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(ROOT / "scripts/export_onnx.py"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.process
def test_the_cli_writes_a_verified_uint8_copy_beside_the_file_and_refuses_misuse(
    tmp_path: Path, model_path: Path
) -> None:
    source = tmp_path / "stand-in.onnx"
    source.write_bytes(model_path.read_bytes())
    done = _export("--from-onnx", str(source), "--uint8-input")
    assert done.returncode == 0, done.stderr
    written = tmp_path / "stand-in.uint8.onnx"
    assert "max |Δ probability| = 0 " in done.stderr and f"wrote {written}" in done.stderr
    meta = _session(written).get_modelmeta().custom_metadata_map
    assert meta["input_dtype"] == "uint8" and meta["uint8_input_max_abs_diff"] == "0"
    again = _export("--from-onnx", str(written), "--uint8-input")
    assert again.returncode != 0 and "already takes uint8 pixels" in again.stderr
    alone = _export("--uint8-input", "--output", str(tmp_path / "x.onnx"))
    assert alone.returncode == 2 and "add --from-onnx FILE" in alone.stderr
    same = _export("--from-onnx", str(source), "--uint8-input", "--output", str(source))
    assert same.returncode == 2 and "must name a new file" in same.stderr


@pytest.mark.export
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_resnet50_with_uint8_input_answers_what_the_float_file_does_on_every_parity_image(
    tmp_path: Path, keras_reference: KerasReference, precision: str
) -> None:
    reference = keras_reference.model_path
    if precision == "fp16":
        reference = tmp_path / "resnet50.fp16.onnx"
        half = _export(
            "--from-onnx", str(keras_reference.model_path), "--precision", "fp16", "--output", str(reference)
        )
        assert half.returncode == 0, half.stderr
    output = tmp_path / f"resnet50.{precision}.uint8.onnx"
    flags = ["--uint8-input", "--precision", precision, "--output", str(output)]
    done = _export("--from-onnx", str(keras_reference.model_path), *flags)
    assert done.returncode == 0, done.stderr
    assert "tensorflow" not in done.stderr.lower()
    float_session, uint8_session = _session(reference), _session(output)
    spec = session_contract(uint8_session, output).input
    worst = 0.0
    for name, image in keras_reference.images.items():
        data = image.read_bytes()
        (actual,) = uint8_session.run(None, {"input": preprocess(data, 10**9, spec=spec)})
        (expected,) = float_session.run(None, {"input": preprocess(data, 10**9)})
        worst = max(worst, float(np.abs(actual - expected).max()))
        assert list(np.argsort(-actual[0])[:5]) == list(np.argsort(-expected[0])[:5]), name
    assert worst <= 1e-6
