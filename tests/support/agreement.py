"""How far a runtime's probabilities are from a reference's: the figures the bf16 and OpenVINO tests hold and print."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Agreement", "agreement"]


@dataclass(frozen=True)
class Agreement:
    max_abs_diff: float
    top1_same: bool
    top5_overlap: int


def agreement(got: np.ndarray, reference: np.ndarray) -> Agreement:
    return Agreement(
        max_abs_diff=float(np.abs(got - reference).max()),
        top1_same=int(got.argmax()) == int(reference.argmax()),
        top5_overlap=len(set(np.argsort(-got)[:5]) & set(np.argsort(-reference)[:5])),
    )
