"""The engine on OpenVINO, real and on this CPU, against ONNX Runtime on the same file: the contract it reads, the
probabilities it gives at every batch size, its failures and its pool of infer requests."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from resnet_service.core.errors import InferenceFailed, StartupError
from resnet_service.inference.engine import OPENVINO_CPU, Engine
from tests.support.runtimes import requires_openvino

pytestmark = requires_openvino


def _rows(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(-120, 150, (1, 224, 224, 3)).astype(np.float32) for _ in range(count)]


@pytest.fixture
def engine(model_path: Path) -> Engine:
    loaded = Engine.load(model_path, device="cpu", intra_op_threads=1, runtime="openvino", in_flight=2)
    yield loaded
    loaded.close()


def test_openvino_reads_the_files_own_contract_and_metadata(engine: Engine, model_path: Path) -> None:
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    reference = Engine.load(model_path, device="cpu", intra_op_threads=1, runtime="onnxruntime")
    try:
        assert (engine.runtime, engine.provider, engine.precision) == ("openvino", OPENVINO_CPU, "fp32")
        assert engine.metadata == session.get_modelmeta().custom_metadata_map
        assert engine.contract == reference.contract and engine.random_weights
        assert engine.input_shape == ["batch", 224, 224, 3]
        assert (engine.input_name, engine.output_name) == ("input", "probabilities")
        assert engine.batch_sizes == tuple(range(1, 9)) and engine.in_flight == 2
    finally:
        reference.close()


def test_openvino_fp32_gives_onnx_runtimes_probabilities_at_every_batch_size(engine: Engine, model_path: Path) -> None:
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    rows = _rows(8)
    (expected,) = session.run(["probabilities"], {"input": np.concatenate(rows)})

    async def every_size() -> list[np.ndarray]:
        await engine.warm_up()
        return [await engine.run(rows[:size]) for size in range(1, 9)]

    for size, got in enumerate(asyncio.run(every_size()), start=1):
        assert got.shape == (size, 1000)
        assert float(np.abs(got - expected[:size]).max()) <= 1e-5, size
    assert float(np.abs(engine.run_sync(rows[:3]) - expected[:3]).max()) <= 1e-5
    assert engine.warm_up_s > 0


def test_a_run_openvino_refuses_is_inference_failed_and_the_engine_goes_on(engine: Engine) -> None:
    async def scenario() -> np.ndarray:
        with pytest.raises(InferenceFailed, match="the model failed to run"):
            await engine.run([np.zeros((1, 100, 100, 3), dtype=np.float32)])
        return await engine.run(_rows(2))

    assert asyncio.run(scenario()).shape == (2, 1000)


def test_runs_cancelled_while_openvino_runs_them_give_their_requests_back(engine: Engine) -> None:
    async def scenario() -> np.ndarray:
        for _ in range(3):
            running = [asyncio.create_task(engine.run(_rows(8, seed))) for seed in range(2)]
            await asyncio.sleep(0)
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
        # Both requests come back once OpenVINO finishes them: more runs than requests still complete.
        return np.concatenate(await asyncio.gather(*(engine.run(_rows(1, seed)) for seed in range(4))))

    assert asyncio.run(asyncio.wait_for(scenario(), 60)).shape == (4, 1000)


def test_a_file_openvino_cannot_read_names_the_file_and_the_fix(tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx file")
    with pytest.raises(StartupError, match=r"broken\.onnx could not be loaded by OpenVINO.*RESNET_RUNTIME=onnxruntime"):
        Engine.load(broken, device="cpu", intra_op_threads=1, runtime="openvino")


def test_bf16_runs_where_the_cpu_has_it_and_is_refused_where_it_does_not(model_path: Path) -> None:
    import openvino as ov

    capable = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if not capable:
        with pytest.raises(StartupError, match="cannot run bf16 natively"):
            Engine.load(model_path, device="cpu", intra_op_threads=1, runtime="openvino", precision="bf16")
        return
    engine = Engine.load(model_path, device="cpu", intra_op_threads=1, runtime="openvino", precision="bf16")
    try:
        session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        rows = _rows(4)
        (expected,) = session.run(["probabilities"], {"input": np.concatenate(rows)})
        got = asyncio.run(engine.run(rows))
        assert engine.precision == "bf16" and got.shape == (4, 1000)
        # bf16 keeps 8 bits of mantissa: close to fp32, and not bit-equal (it really ran in bf16).
        assert 0 < float(np.abs(got - expected).max()) < 0.05
    finally:
        engine.close()
