"""OpenVINO on the real ResNet-50 export against Keras: fp32 within the parity bound on every test image, as ONNX
Runtime is, and bf16 keeping Keras's top 5 on the photos (where the CPU has bf16)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from resnet_service.inference.engine import Engine
from tests.conftest import KerasReference
from tests.support.agreement import agreement
from tests.support.images import PHOTOS
from tests.support.runtimes import requires_openvino

pytestmark = pytest.mark.export

# The bound the service holds to Keras through either runtime (the export itself holds 1e-5 with ONNX Runtime).
KERAS_PARITY = 1e-4
REAL_PHOTOS = [f"{name}.{ext}" for name in PHOTOS for ext in ("jpg", "png")]


def _probabilities(engine: Engine, keras_input: np.ndarray) -> np.ndarray:
    return engine.run_sync([keras_input[np.newaxis]])[0]


@pytest.mark.parametrize("runtime", ["onnxruntime", pytest.param("openvino", marks=requires_openvino)])
def test_fp32_matches_keras_within_1e_4_on_every_test_image(
    keras_reference: KerasReference, runtime: str, report_figure: Callable[[str], None]
) -> None:
    engine = Engine.load(keras_reference.model_path, "cpu", 2, runtime=runtime)  # type: ignore[arg-type]
    try:
        worst = 0.0
        for name, keras_input in keras_reference.inputs.items():
            got = agreement(_probabilities(engine, keras_input), keras_reference.probabilities[name])
            assert got.max_abs_diff <= KERAS_PARITY, (name, got)
            if name in REAL_PHOTOS:
                assert got.top5_overlap == 5 and got.top1_same, (name, got)
            worst = max(worst, got.max_abs_diff)
    finally:
        engine.close()
    report_figure(f"{runtime} fp32 vs Keras on {len(keras_reference.inputs)} images: max |Δp| {worst:.2g}")


@requires_openvino
def test_bf16_keeps_at_least_four_of_keras_top_five_on_every_photo(
    keras_reference: KerasReference, report_figure: Callable[[str], None]
) -> None:
    import openvino as ov

    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU has no bf16 instructions (AVX-512 BF16 or AMX)")
    engine = Engine.load(keras_reference.model_path, "cpu", 2, runtime="openvino", precision="bf16")
    try:
        results = {
            name: agreement(_probabilities(engine, keras_reference.inputs[name]), keras_reference.probabilities[name])
            for name in REAL_PHOTOS
        }
    finally:
        engine.close()
    assert {name: r for name, r in results.items() if r.top5_overlap < 4} == {}
    top1 = sum(r.top1_same for r in results.values())
    overlaps = sorted(r.top5_overlap for r in results.values())
    worst = max(r.max_abs_diff for r in results.values())
    report_figure(
        f"bf16 vs Keras on {len(results)} photos (random weights): top-1 the same on {top1}, top-5 overlap "
        f"{overlaps}, max |Δp| {worst:.2g}"
    )
