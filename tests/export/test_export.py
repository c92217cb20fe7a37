"""The real tf2onnx export of seeded random weights, and the export script's failure modes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tests.conftest import ROOT, KerasReference

pytestmark = pytest.mark.export


def test_export_parity_is_within_its_own_thresholds(keras_reference: KerasReference) -> None:
    report = keras_reference.report
    assert report["max_abs_diff"] <= 1e-5 and report["top5_match"] is True
    assert report["photos"] >= 4 and report["random_tensors"] >= 4


# Photos get the export's own threshold. A 7×5 thumbnail blown up to 224² and a 1-bit image are far from any photo
# and drive the random network's softmax towards saturation, where float32 summation order shows a little more.
SYNTHETIC_IMAGE_TOLERANCE = 5e-5


def test_onnx_runtime_matches_keras_on_every_test_image(keras_reference: KerasReference) -> None:
    session = ort.InferenceSession(str(keras_reference.model_path), providers=["CPUExecutionProvider"])
    for name, keras_input in keras_reference.inputs.items():
        (onnx_probabilities,) = session.run(["probabilities"], {"input": keras_input[np.newaxis]})
        expected = keras_reference.probabilities[name]
        tolerance = SYNTHETIC_IMAGE_TOLERANCE if ("tiny" in name or "1bit" in name) else 1e-5
        assert float(np.abs(onnx_probabilities[0] - expected).max()) <= tolerance, name
        assert np.array_equal(np.argsort(-onnx_probabilities[0])[:5], np.argsort(-expected)[:5]), name


def test_exported_file_carries_its_provenance(keras_reference: KerasReference) -> None:
    session = ort.InferenceSession(str(keras_reference.model_path), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["weights"] == "random (seed 0)" and meta["random_weights"] == "true"
    assert (meta["preprocessing"], meta["colour_order"], meta["input_size"]) == ("caffe", "BGR", "224x224")
    assert json.loads(meta["mean"]) == [103.939, 116.779, 123.68] and meta["resize_filter"] == "bicubic"
    assert meta["architecture"] == "ResNet50" and len(json.loads(meta["labels"])) == 1000
    assert float(meta["parity_max_abs_diff"]) <= 1e-5 and meta["parity_top5_match"] == "true"
    for package in ("tensorflow", "keras", "tf2onnx", "onnx"):
        assert meta[f"{package}_version"][0].isdigit()
    (model_input,) = session.get_inputs()
    assert model_input.name == "input" and model_input.shape == ["batch", 224, 224, 3]
    assert session.get_outputs()[0].name == "probabilities"


def _export(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    # A proxy on a closed port makes the download fail the way it does with no network, wherever this runs.
    env = {**os.environ, "HOME": str(home), "KERAS_HOME": str(home / ".keras"), "HTTPS_PROXY": "http://127.0.0.1:9"}
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts/export_onnx.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_imagenet_without_network_fails_fast_and_says_how_to_proceed(tmp_path: Path) -> None:
    result = _export("--weights", "imagenet", "--output", str(tmp_path / "m.onnx"), home=tmp_path)
    assert result.returncode == 3, result.stderr
    assert "~/.keras/models/" in result.stderr and "--weights random" in result.stderr
    assert "--weights PATH" in result.stderr
    assert not (tmp_path / "m.onnx").exists()


def test_missing_weights_file_is_refused(tmp_path: Path) -> None:
    result = _export("--weights", str(tmp_path / "none.h5"), "--output", str(tmp_path / "m.onnx"), home=tmp_path)
    assert result.returncode == 3 and "no such file" in result.stderr
