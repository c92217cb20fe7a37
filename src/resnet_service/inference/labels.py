"""Class names in model output order, and Keras' top-k decoding.

An exported file names its classes in its metadata (see model_contract); the 1,000 ImageNet names ship with the
package for the export to write into ResNet-50's files and for RESNET_LABELS=imagenet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

import numpy as np

__all__ = ["Labels"]


@dataclass(frozen=True)
class Labels:
    """The model's class names in output order."""

    names: tuple[str, ...]

    @classmethod
    def load(cls) -> Labels:
        # The canonical Keras file that decode_predictions downloads; shipped so nothing is fetched at run time.
        text = resources.files("resnet_service").joinpath("data/imagenet_class_index.json").read_text("utf-8")
        index = json.loads(text)
        return cls(names=tuple(index[str(i)][1] for i in range(len(index))))

    def top_k(self, probabilities: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The k most likely (label, probability) pairs, ordered as ``decode_predictions`` orders them."""
        if probabilities.shape != (len(self.names),):
            raise ValueError(f"expected {len(self.names)} probabilities, got shape {probabilities.shape}")
        # A model with fewer classes than k answers with all of them.
        k = min(k, len(self.names))
        top = probabilities.argsort()[-k:][::-1]
        ranked = [(self.names[i], float(probabilities[i])) for i in top]
        ranked.sort(key=lambda pair: pair[1], reverse=True)
        return ranked
