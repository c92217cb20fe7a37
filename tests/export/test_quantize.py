"""INT8: a real static QDQ quantization of the session's model, its agreement report, and the service serving it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient

from resnet_service import Settings, create_app
from tests.conftest import ROOT
from tests.support.images import encode, photo, write_calibration_images

pytestmark = pytest.mark.export


def _export_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts/export_onnx.py"), *args], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="session")
def int8(resnet50_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    calibration = tmp_path_factory.mktemp("calibration")
    write_calibration_images(calibration)
    output = tmp_path_factory.mktemp("int8") / "resnet50.int8.onnx"
    result = _export_script(
        "--from-onnx",
        str(resnet50_path),
        "--quantize",
        "int8",
        "--calibration-dir",
        str(calibration),
        "--int8-output",
        str(output),
    )
    assert result.returncode == 0, result.stderr
    return output, json.loads(result.stdout.strip().splitlines()[-1])


def test_int8_model_is_static_qdq_and_about_four_times_smaller(int8: tuple[Path, dict], resnet50_path: Path) -> None:
    path, report = int8
    assert report["int8_bytes"] * 3.5 < report["fp32_bytes"] == resnet50_path.stat().st_size
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["quantization"].startswith("int8 static QDQ") and meta["weights"] == "random (seed 0)"


def test_int8_agreement_with_fp32_is_reported_on_calibration_and_held_out_images(int8: tuple[Path, dict]) -> None:
    _, report = int8
    assert report["calibration"]["images"] == 22 and report["holdout"]["images"] == 8
    for split in ("calibration", "holdout"):
        assert 0.0 <= report[split]["top1"] <= 1.0 and 0.0 <= report[split]["top5_overlap"] <= 1.0
    # Far from identical would mean a broken calibration, even on random weights.
    assert report["calibration"]["top5_overlap"] >= 0.5


def test_the_service_serves_the_int8_model_with_the_same_api(int8: tuple[Path, dict], settings: Settings) -> None:
    path, _ = int8
    with TestClient(create_app(settings.model_copy(update={"model_path": path}))) as client:
        response = client.post("/predict", files={"image": ("cat.jpg", encode(photo("chelsea"), "JPEG"))})
        assert response.status_code == 200 and len(response.json()["predictions"]) == 5
        assert "quantization" in client.get("/health").json()["model"]["metadata"]


def test_quantize_without_calibration_images_is_refused(resnet50_path: Path, tmp_path: Path) -> None:
    result = _export_script("--from-onnx", str(resnet50_path), "--quantize", "int8")
    assert result.returncode == 2 and "--calibration-dir" in result.stderr
    (tmp_path / "one.jpg").write_bytes(encode(photo("coffee"), "JPEG"))
    result = _export_script("--from-onnx", str(resnet50_path), "--quantize", "int8", "--calibration-dir", str(tmp_path))
    assert result.returncode == 2 and "at least 5" in result.stderr
