"""How a rewritten model file (fp16, uint8 input) answers against the file it was made from, on the same images."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

__all__ = ["ParityReport", "compare_outputs", "run_proto"]


@dataclass(frozen=True)
class ParityReport:
    max_abs_diff: float
    # The same five classes in the same order, on every image.
    top5_match: bool
    top1_agreement: float
    images: int


def run_proto(proto: Any, inputs: np.ndarray) -> np.ndarray:
    """An in-memory model's outputs on ``inputs``, on ONNX Runtime's CPU provider."""
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (name,) = [value.name for value in session.get_inputs()]
    (probabilities,) = session.run(None, {name: inputs})
    return probabilities


def compare_outputs(expected: np.ndarray, actual: np.ndarray) -> ParityReport:
    """(images, classes) probabilities of the original (``expected``) and of the rewritten file."""
    top5 = np.argsort(-expected, axis=1)[:, :5], np.argsort(-actual, axis=1)[:, :5]
    return ParityReport(
        max_abs_diff=float(np.abs(actual - expected).max()),
        top5_match=bool(np.array_equal(*top5)),
        top1_agreement=float(np.mean(top5[0][:, 0] == top5[1][:, 0])),
        images=len(expected),
    )
