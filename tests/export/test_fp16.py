"""`--precision fp16`: half-precision arithmetic behind the same float32 contract, its difference from fp32 recorded.

fp16 pays on a GPU's tensor cores; here ONNX Runtime's CPU provider runs the same file, which is enough to check
the contract, the recorded agreement and that the predictions stay where fp32 puts them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from resnet_service.export.fp16 import FP16_MAX_ABS_DIFF
from tests.conftest import ROOT, KerasReference

pytestmark = pytest.mark.export


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_fp16_export_keeps_float32_input_and_output_and_halves_the_weights(keras_reference: KerasReference) -> None:
    session = _session(keras_reference.fp16_model_path)
    (model_input,), (model_output,) = session.get_inputs(), session.get_outputs()
    assert (model_input.name, model_input.type, model_input.shape) == ("input", "tensor(float)", ["batch", 224, 224, 3])
    assert (model_output.name, model_output.type) == ("probabilities", "tensor(float)")
    weights = onnx.load(str(keras_reference.fp16_model_path)).graph.initializer
    halves = sum(1 for tensor in weights if tensor.data_type == onnx.TensorProto.FLOAT16)
    assert halves > 0.9 * len(weights)
    assert keras_reference.fp16_model_path.stat().st_size < 0.6 * keras_reference.model_path.stat().st_size


def test_fp16_export_records_its_agreement_with_keras_fp32(keras_reference: KerasReference) -> None:
    report = keras_reference.fp16_report
    assert report["precision"] == "fp16"
    meta = _session(keras_reference.fp16_model_path).get_modelmeta().custom_metadata_map
    assert meta["precision"] == "fp16 (float32 input and output)" and meta["fp16_reference"] == "Keras fp32"
    assert 0 < float(meta["fp16_max_abs_diff"]) <= FP16_MAX_ABS_DIFF
    assert meta["fp16_top5_match"] in ("true", "false") and 0 <= float(meta["fp16_top1_agreement"]) <= 1
    # The fp32 conversion's own parity, checked before the cast, is kept alongside.
    assert float(meta["parity_max_abs_diff"]) <= 1e-5 and meta["weights"] == "random (seed 0)"


def test_fp16_predictions_stay_close_to_keras_on_every_test_image(keras_reference: KerasReference) -> None:
    session = _session(keras_reference.fp16_model_path)
    worst = 0.0
    for name, keras_input in keras_reference.inputs.items():
        (probabilities,) = session.run(["probabilities"], {"input": keras_input[np.newaxis]})
        assert probabilities.dtype == np.float32
        worst = max(worst, float(np.abs(probabilities[0] - keras_reference.probabilities[name]).max()))
    assert worst <= FP16_MAX_ABS_DIFF


def _export(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(ROOT / "scripts/export_onnx.py"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_an_fp32_file_converts_to_fp16_without_tensorflow(keras_reference: KerasReference, tmp_path: Path) -> None:
    output = tmp_path / "half.onnx"
    result = _export("--from-onnx", str(keras_reference.model_path), "--precision", "fp16", "--output", str(output))
    assert result.returncode == 0, result.stderr
    assert "fp16 vs fp32 resnet50.onnx: max |Δ probability|" in result.stderr
    meta = _session(output).get_modelmeta().custom_metadata_map
    assert meta["fp16_reference"] == "fp32 resnet50.onnx" and float(meta["fp16_max_abs_diff"]) <= FP16_MAX_ABS_DIFF
    assert "tensorflow" not in result.stderr.lower()


def test_fp16_refuses_to_overwrite_its_source_or_to_be_quantized(keras_reference: KerasReference) -> None:
    source = str(keras_reference.model_path)
    same = _export("--from-onnx", source, "--precision", "fp16", "--output", source)
    assert same.returncode == 2 and "--output must name a new file" in same.stderr
    both = _export("--precision", "fp16", "--quantize", "int8", "--calibration-dir", str(ROOT))
    assert both.returncode == 2 and "leave out --precision fp16" in both.stderr
