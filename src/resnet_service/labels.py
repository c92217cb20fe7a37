"""Class names in model output order, and Keras' top-k decoding.

An exported file names its classes in its metadata (``labels``: a JSON list, or ``imagenet`` for the 1,000
ImageNet classes, whose names ship with the service); a file without that key is taken for ImageNet ResNet-50.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

import numpy as np

from resnet_service.errors import StartupError

__all__ = ["Labels"]


@dataclass(frozen=True)
class Labels:
    """The model's class names in output order."""

    names: tuple[str, ...]

    @classmethod
    def for_model(cls, metadata: Mapping[str, str], classes: int, path: object) -> Labels:
        """The names a model's metadata gives, checked against its number of outputs."""
        recorded = metadata.get("labels", "imagenet")
        if recorded == "imagenet":
            labels = cls.load()
        else:
            try:
                names = json.loads(recorded)
            except ValueError as exc:
                raise StartupError(f"model file {path}: its labels metadata is not a JSON list ({exc})") from exc
            labels = cls(names=tuple(str(name) for name in names))
        if len(labels.names) != classes:
            raise StartupError(
                f"model file {path} has {classes} outputs but names {len(labels.names)} classes: export it with "
                "scripts/export_onnx.py --model FILE --labels FILE"
            )
        return labels

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
