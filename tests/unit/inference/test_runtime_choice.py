"""Which runtime RESNET_RUNTIME and RESNET_PRECISION pick, and the settings refused at startup. The GPU is the one
boundary faked (by provider lists); a CPU without bf16 is OpenVINO's capability list without BF16."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from resnet_service.core.errors import StartupError
from resnet_service.core.settings import Settings
from resnet_service.inference.engine import CPU, CUDA, choose_runtime
from resnet_service.inference.openvino_model import check_precision

ONLY_CPU = [CPU]
WITH_CUDA = [CUDA, CPU]


@pytest.mark.parametrize(
    ("runtime", "device", "available", "openvino", "expected"),
    [
        ("auto", "auto", ONLY_CPU, True, "openvino"),
        ("auto", "cpu", WITH_CUDA, True, "openvino"),
        ("auto", "auto", ONLY_CPU, False, "onnxruntime"),
        # A GPU is ONNX Runtime's, OpenVINO installed or not.
        ("auto", "auto", WITH_CUDA, True, "onnxruntime"),
        ("auto", "cuda", WITH_CUDA, True, "onnxruntime"),
        ("onnxruntime", "cpu", ONLY_CPU, True, "onnxruntime"),
        ("openvino", "cpu", ONLY_CPU, False, "openvino"),  # and then fails to import, with the fix
        ("openvino", "auto", WITH_CUDA, True, "openvino"),  # asked for by name: the CPU, beside a GPU
    ],
)
def test_the_runtime_chosen(runtime: str, device: str, available: list[str], openvino: bool, expected: str) -> None:
    assert choose_runtime(runtime, "fp32", device, available, openvino) == expected  # type: ignore[arg-type]


def test_openvino_with_device_cuda_is_a_startup_error() -> None:
    with pytest.raises(StartupError, match="RESNET_RUNTIME=openvino runs the model on the CPU"):
        choose_runtime("openvino", "fp32", "cuda", WITH_CUDA, True)


@pytest.mark.parametrize(
    ("runtime", "available", "openvino", "why"),
    [
        ("onnxruntime", ONLY_CPU, True, "but RESNET_RUNTIME=onnxruntime"),
        ("auto", ONLY_CPU, False, "but OpenVINO is not installed"),
        ("auto", WITH_CUDA, True, "on a GPU ONNX Runtime runs the model"),
    ],
)
def test_bf16_without_openvino_on_the_cpu_is_a_startup_error_never_fp32(
    runtime: str, available: list[str], openvino: bool, why: str
) -> None:
    with pytest.raises(StartupError, match="RESNET_PRECISION=bf16 needs OpenVINO") as raised:
        choose_runtime(runtime, "bf16", "auto", available, openvino)  # type: ignore[arg-type]
    assert raised.match(why) and "RESNET_PRECISION=fp32" in str(raised.value)


def test_bf16_on_a_cpu_without_bf16_is_a_startup_error_naming_the_cpu() -> None:
    without = ["WINOGRAD", "FP32", "FP16", "INT8", "BIN", "EXPORT_IMPORT"]
    with pytest.raises(StartupError, match=r"RESNET_PRECISION=bf16, but this CPU \(AVX2 box\)") as raised:
        check_precision("bf16", without, "AVX2 box")
    assert "set RESNET_PRECISION=fp32" in str(raised.value)
    check_precision("fp32", without, "AVX2 box")
    check_precision("bf16", [*without, "BF16"], "AMX box")


def test_the_settings_take_only_the_runtimes_and_precisions_there_are(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESNET_RUNTIME", "openvino")
    monkeypatch.setenv("RESNET_PRECISION", "bf16")
    settings = Settings()
    assert (settings.runtime, settings.precision, settings.batches_in_flight) == ("openvino", "bf16", 1)
    monkeypatch.setenv("RESNET_PRECISION", "int8")
    with pytest.raises(ValidationError, match="precision"):
        Settings()
    monkeypatch.setenv("RESNET_PRECISION", "fp32")
    monkeypatch.setenv("RESNET_RUNTIME", "tensorrt")
    with pytest.raises(ValidationError, match="runtime"):
        Settings()
