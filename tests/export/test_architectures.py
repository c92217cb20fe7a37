"""Other keras.applications classifiers: one per preprocessing mode besides ResNet50's caffe, exported with random
weights, checked against Keras by the export, then served side by side from one model folder.

The session's process tests/support/architecture_exports.py does the TensorFlow part.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient

from resnet_service import Settings, create_app
from resnet_service.export.architectures import ARCHITECTURES
from resnet_service.export.convert import MAX_ABS_DIFF
from resnet_service.inference.engine import Engine
from resnet_service.inference.preprocessing import preprocess
from tests.conftest import ROOT, KerasReference
from tests.support.agreement import agreement
from tests.support.architecture_exports import EXPORTED, SMALL_LABELS
from tests.support.runtimes import requires_openvino

pytestmark = pytest.mark.export

EXIT_USAGE = 2


@dataclass(frozen=True)
class Exports:
    folder: Path
    photo: bytes
    recorded: dict


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Exports:
    out = tmp_path_factory.mktemp("architectures")
    script = ROOT / "tests/support/architecture_exports.py"
    subprocess.run([sys.executable, str(script), "--out", str(out)], check=True, timeout=900, cwd=ROOT)
    return Exports(out / "models", (out / "photo.jpg").read_bytes(), json.loads((out / "keras.json").read_text()))


def test_every_mode_is_covered_and_each_export_matches_keras(exports: Exports, keras_reference: KerasReference) -> None:
    modes = {ARCHITECTURES[name].preprocessing for name in (*EXPORTED, "ResNet50")}
    assert modes == {"caffe", "tf", "torch", "none"}
    for name in EXPORTED:
        report = exports.recorded["exports"][name]["report"]
        arch = ARCHITECTURES[name]
        assert report["max_abs_diff"] <= MAX_ABS_DIFF and report["top5_match"] is True, name
        assert (report["architecture"], report["preprocessing"], report["input_size"]) == (
            name,
            arch.preprocessing,
            arch.size,
        )
        session = ort.InferenceSession(str(exports.folder / f"{name}.onnx"), providers=["CPUExecutionProvider"])
        meta = session.get_modelmeta().custom_metadata_map
        assert meta["architecture"] == name and meta["preprocessing"] == arch.preprocessing
        assert meta["input_size"] == f"{arch.size}x{arch.size}" and meta["weights"] == "random (seed 0)"
        assert len(json.loads(meta["labels"])) == 1000 and len(meta["labels_sha256"]) == 64
    assert keras_reference.report["max_abs_diff"] <= MAX_ABS_DIFF


def test_the_services_preprocessing_is_each_architectures_own_preprocess_input(exports: Exports) -> None:
    differences = exports.recorded["preprocess_input_max_abs_diff"]
    assert set(differences) == set(ARCHITECTURES)
    assert {name: diff for name, diff in differences.items() if diff > 1e-5} == {}


@pytest.fixture(scope="module")
def served(exports: Exports) -> Iterator[TestClient]:
    saved = {name: os.environ.pop(name) for name in list(os.environ) if name.startswith("RESNET_")}
    try:
        settings = Settings(model_dir=exports.folder, model_poll_s=0, default_model="MobileNetV2")
        with TestClient(create_app(settings)) as client:
            yield client
    finally:
        os.environ.update(saved)


@pytest.mark.parametrize("name", EXPORTED)
def test_the_service_answers_as_keras_does_for_each(served: TestClient, exports: Exports, name: str) -> None:
    answer = served.post(f"/predict?model={name}&top_k=5", files={"image": ("cat.jpg", exports.photo)}).json()
    keras = np.asarray(exports.recorded["exports"][name]["probabilities"])
    names = [model["labels"] for model in served.get("/models").json() if model["name"] == name][0]
    top5 = [(names[i], float(keras[i])) for i in np.argsort(-keras)[:5]]
    assert [p["label"] for p in answer["predictions"]] == [label for label, _ in top5]
    for prediction, (_, probability) in zip(answer["predictions"], top5, strict=True):
        assert abs(prediction["probability"] - probability) <= MAX_ABS_DIFF
    size = ARCHITECTURES[name].size
    assert served.get(f"/v2/models/{name}").json()["inputs"][1]["shape"] == [-1, size, size, 3]


@pytest.mark.parametrize("name", EXPORTED)
@requires_openvino
def test_openvino_fp32_matches_keras_and_bf16_keeps_its_top_five_for_each(
    exports: Exports, name: str, report_figure: Callable[[str], None]
) -> None:
    import openvino as ov

    keras = np.asarray(exports.recorded["exports"][name]["probabilities"])
    results = {}
    precisions = ["fp32"]
    if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        precisions.append("bf16")
    for precision in precisions:
        engine = Engine.load(exports.folder / f"{name}.onnx", "cpu", 2, runtime="openvino", precision=precision)
        try:
            tensor = preprocess(exports.photo, 10**9, spec=engine.contract.input)
            results[precision] = agreement(engine.run_sync([tensor])[0], keras)
        finally:
            engine.close()
    assert results["fp32"].max_abs_diff <= MAX_ABS_DIFF and results["fp32"].top5_overlap == 5, results
    if "bf16" in results:
        assert results["bf16"].top5_overlap >= 4, results
    figures = [f"{p}: max |Δp| {r.max_abs_diff:.2g}, top-5 {r.top5_overlap}/5" for p, r in results.items()]
    report_figure(f"OpenVINO vs Keras, {name}: " + ", ".join(figures))


def test_an_own_model_takes_its_backbones_preprocessing_or_the_one_given(served: TestClient, exports: Exports) -> None:
    assert exports.recorded["own"] == {"shapes": 0, "shapes_torch": 0}
    inputs = {m["name"]: m["input"] for m in served.get("/models").json() if m["name"].startswith("shapes")}
    # Its own 64×64 input; MobileNetV2's tf mode as --architecture says, or torch as --preprocessing overrides it.
    assert inputs["shapes"]["shape"] == inputs["shapes_torch"]["shape"] == [64, 64, 3]
    assert (inputs["shapes"]["preprocessing"], inputs["shapes_torch"]["preprocessing"]) == ("tf", "torch")
    answer = served.post("/predict?model=shapes_torch", files={"image": ("cat.jpg", exports.photo)}).json()
    assert {p["label"] for p in answer["predictions"]} == set(SMALL_LABELS)


def test_a_model_tf2onnx_cannot_convert_is_refused_in_one_line_and_nothing_is_written(exports: Exports) -> None:
    convnext = exports.recorded["convnext"]
    assert convnext["code"] == 1 and convnext["written"] is False
    (line,) = [line for line in convnext["stderr"].splitlines() if line.startswith("error:")]
    assert line.startswith("error: tf2onnx could not convert ConvNeXtTiny (") and "was not written" in line


def test_an_unknown_architecture_is_refused_by_name() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/export_onnx.py"), "--architecture", "ResNet51"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == EXIT_USAGE and "unknown architecture 'ResNet51'" in result.stderr
    assert "EfficientNetV2S" in result.stderr
