"""Provider choice and model loading errors; the GPU itself is the one boundary faked (by provider lists)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from resnet_service.core.errors import StartupError
from resnet_service.inference.engine import CPU, CUDA, CudaOptions, Engine, check_provider, choose_providers


def test_cpu_device_never_asks_for_cuda() -> None:
    assert choose_providers("cpu", [CUDA, CPU]) == [CPU]


def test_auto_prefers_cuda_when_present_and_falls_back_to_cpu() -> None:
    assert choose_providers("auto", [CUDA, CPU]) == [(CUDA, CudaOptions().provider_options()), CPU]
    assert choose_providers("auto", [CPU]) == [CPU]


def test_cuda_without_a_cuda_provider_is_a_startup_error() -> None:
    with pytest.raises(StartupError, match="RESNET_DEVICE=cuda"):
        choose_providers("cuda", [CPU])


def test_cuda_that_silently_fell_back_to_cpu_is_a_startup_error() -> None:
    assert check_provider("cuda", [CUDA, CPU]) == CUDA
    assert check_provider("auto", [CPU]) == CPU
    with pytest.raises(StartupError, match="fell back"):
        check_provider("cuda", [CPU])


@pytest.mark.skipif(CUDA in ort.get_available_providers(), reason="this onnxruntime has CUDA")
def test_loading_with_device_cuda_on_this_cpu_only_onnxruntime_fails(model_path: Path) -> None:
    with pytest.raises(StartupError, match="no CUDA provider"):
        Engine.load(model_path, device="cuda", intra_op_threads=1)


def test_missing_model_file_names_the_file_and_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "nope.onnx"
    with pytest.raises(StartupError, match=f"{missing} not found: run `make model`"):
        Engine.load(missing, device="cpu", intra_op_threads=1)


def test_corrupt_model_file_names_the_file_and_the_fix(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07not an onnx protobuf" * 100)
    with pytest.raises(StartupError, match=f"{corrupt} could not be loaded.*re-export"):
        Engine.load(corrupt, device="cpu", intra_op_threads=1)


def test_engine_runs_a_batch_in_its_pool_and_reports_provenance(model_path: Path) -> None:
    engine = Engine.load(model_path, device="cpu", intra_op_threads=1)
    try:
        probabilities = asyncio.run(engine.run([np.zeros((1, 224, 224, 3), dtype=np.float32)] * 2))
        assert probabilities.shape == (2, 1000)
        assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
        assert engine.provider == CPU and engine.random_weights
        assert engine.input_shape == ["batch", 224, 224, 3] and engine.output_name == "probabilities"
    finally:
        engine.close()
