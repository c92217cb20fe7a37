"""fp32 ONNX → fp16 weights and arithmetic, float32 input and output kept, with its measured agreement.

A GPU runs fp16 convolutions on its tensor cores at about twice the fp32 speed. The model's contract does not
change: clients and the service still send float32 pixels and get float32 probabilities. Needs the ``onnx``
package (the export extra), not TensorFlow.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from resnet_service.export.parity import ParityReport, compare_outputs, run_proto

__all__ = ["FP16_MAX_ABS_DIFF", "to_fp16"]

# Half precision keeps about three significant digits: probabilities move by around 1e-3. Far past that, the
# conversion is broken (an overflow to inf, a NaN), not merely rounded.
FP16_MAX_ABS_DIFF = 2e-2


def to_fp16(proto: Any, inputs: np.ndarray, expected: np.ndarray, reference: str) -> tuple[Any, ParityReport]:
    """``proto`` converted to fp16, and how its outputs on ``inputs`` compare with ``expected`` (fp32's).

    The provenance in ``proto``'s metadata is kept; the precision and this comparison are added to it.
    """
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    converted = convert_float_to_float16(proto, keep_io_types=True)
    report = compare_outputs(expected, run_proto(converted, inputs))
    props = {prop.key: prop.value for prop in proto.metadata_props}
    props.update(
        {
            "precision": "fp16 (float32 input and output)",
            "fp16_reference": reference,
            "fp16_max_abs_diff": f"{report.max_abs_diff:.3g}",
            "fp16_top5_match": str(report.top5_match).lower(),
            "fp16_top1_agreement": f"{report.top1_agreement:.3f}",
        }
    )
    onnx.helper.set_model_props(converted, props)
    return converted, report
