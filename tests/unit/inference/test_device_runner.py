"""The device path (fixed buffers per batch size, IO binding) and the engine's batch sizes and warm-up.

The buffers live on the device the session runs on; here that is the CPU, which runs the same binding code as
CUDA. What only a GPU has (pinned memory, CUDA graphs, cuDNN) is measured by `python -m bench.gpu` on one.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from resnet_service.export.uint8_input import to_uint8_input
from resnet_service.inference.device_runner import DeviceRunner
from resnet_service.inference.engine import CudaOptions, Engine
from resnet_service.inference.model_contract import InputSpec


def _rows(count: int, seed: int) -> list[np.ndarray]:
    generator = np.random.default_rng(seed)
    return [generator.uniform(-120, 150, (1, 224, 224, 3)).astype(np.float32) for _ in range(count)]


@pytest.fixture(scope="module")
def session(model_path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])


def _direct(session: ort.InferenceSession, rows: list[np.ndarray]) -> np.ndarray:
    return session.run(None, {"input": np.concatenate(rows)})[0]


def test_a_padded_bound_run_gives_each_row_what_an_unpadded_run_gives(session: ort.InferenceSession) -> None:
    runner = DeviceRunner(dict.fromkeys((1, 2, 4), session), device="cpu")
    rows = _rows(3, seed=1)
    probabilities = runner.run(rows)
    assert probabilities.shape == (3, 1000)
    np.testing.assert_allclose(probabilities, _direct(session, rows), atol=1e-6)
    runner.close()


def test_a_model_that_takes_uint8_pixels_gets_uint8_device_buffers_a_quarter_the_size(model_path: Path) -> None:
    uint8 = to_uint8_input(onnx.load(str(model_path)), InputSpec()).SerializeToString()
    session = ort.InferenceSession(uint8, providers=["CPUExecutionProvider"])
    runner = DeviceRunner(dict.fromkeys((1, 4), session), device="cpu")
    pixels = [np.random.default_rng(seed).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8) for seed in range(3)]
    buffers = runner._buffers[4]
    assert buffers.host.dtype == np.uint8 and buffers.host.nbytes == 4 * 224 * 224 * 3
    np.testing.assert_allclose(runner.run(pixels), _direct(session, pixels), atol=1e-6)
    runner.close()


def test_each_result_is_the_callers_own_not_a_view_of_a_reused_buffer(session: ort.InferenceSession) -> None:
    runner = DeviceRunner(dict.fromkeys((1, 2), session), device="cpu")
    first_rows, second_rows = _rows(2, seed=2), _rows(2, seed=3)
    first = runner.run(first_rows)
    kept = first.copy()
    runner.run(second_rows)
    assert np.array_equal(first, kept)
    assert not np.allclose(first, _direct(session, second_rows))
    runner.close()


def test_a_session_per_batch_size_runs_each_size_on_its_own_session(model_path: Path) -> None:
    sessions = {size: ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"]) for size in (1, 4)}
    runner = DeviceRunner(sessions, device="cpu")
    rows = _rows(3, seed=4)
    np.testing.assert_allclose(runner.run(rows), _direct(sessions[4], rows), atol=1e-6)
    with pytest.raises(ValueError, match="larger than the largest model batch size, 4"):
        runner.run(_rows(5, seed=5))
    runner.close()


def _engine(model_path: Path, **options: object) -> Engine:
    return Engine.load(model_path, device="cpu", intra_op_threads=2, **options)  # type: ignore[arg-type]


def test_on_a_cpu_every_size_runs_unpadded_and_warm_up_runs_one(model_path: Path) -> None:
    engine = _engine(model_path, max_batch_size=4)
    assert engine.batch_sizes == (1, 2, 3, 4) and engine.runner is None
    seen: list[int] = []
    run_rows = engine._run_rows
    engine._run_rows = lambda rows: seen.append(len(rows)) or run_rows(rows)  # type: ignore[method-assign]
    asyncio.run(engine.warm_up())
    assert seen == [1] and engine.warm_up_s > 0
    engine.close()


def test_own_batch_sizes_pad_on_the_cpu_too(model_path: Path) -> None:
    engine = _engine(model_path, batch_sizes=(1, 4), max_batch_size=4)
    rows = _rows(3, seed=6)
    np.testing.assert_allclose(asyncio.run(engine.run(rows)), _direct(engine.session, rows), atol=1e-6)
    engine.close()


def test_with_a_device_path_warm_up_runs_every_size_and_replays_each_graph_again(model_path: Path) -> None:
    # The GPU's arrangement, on CPU buffers: every batch size bound, with CUDA graphs or without.
    for graphs, expected in ((False, [1, 2, 4]), (True, [1, 1, 1, 2, 2, 2, 4, 4, 4, 4, 2, 1])):
        engine = _engine(model_path, batch_sizes=(1, 2, 4), max_batch_size=4)
        engine.runner = DeviceRunner(dict.fromkeys(engine.batch_sizes, engine.session), "cpu", cuda_graphs=graphs)
        seen: list[int] = []
        run = engine.runner.run
        engine.runner.run = lambda rows, run=run, seen=seen: seen.append(len(rows)) or run(rows)  # type: ignore[method-assign]
        asyncio.run(engine.warm_up())
        assert seen == expected
        engine.close()


def test_cuda_options_reach_the_cuda_provider_as_its_own_option_names() -> None:
    assert CudaOptions().provider_options() == {
        "cudnn_conv_algo_search": "HEURISTIC",
        "enable_cuda_graph": "1",
        "prefer_nhwc": "1",
    }
    assert CudaOptions("EXHAUSTIVE", graphs=False, prefer_nhwc=False).provider_options() == {
        "cudnn_conv_algo_search": "EXHAUSTIVE",
        "enable_cuda_graph": "0",
        "prefer_nhwc": "0",
    }
