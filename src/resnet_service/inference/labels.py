"""Class names in model output order, and Keras' top-k decoding.

An exported file names its classes in its metadata (see model_contract); the 1,000 ImageNet names ship with the
package for the export to write into ResNet-50's files and for RESNET_LABELS=imagenet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

__all__ = ["Labels", "read_label_file"]


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


def read_label_file(path: Path) -> list[str]:
    """Class names in output order: one per line, a JSON list, or a JSON index as Keras' imagenet_class_index.

    ValueError, starting with the file's name, says what is wrong with one.
    """
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read it ({exc})") from exc
    if path.suffix.lower() == ".json":
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"{path}: not JSON ({exc})") from exc
        if isinstance(document, list):
            names = [str(name) for name in document]
        elif isinstance(document, dict) and all(key.isdigit() for key in document):
            # {"0": ["n01440764", "tench"], ...} or {"0": "tench", ...}
            entries = [document[str(i)] if str(i) in document else None for i in range(len(document))]
            if any(entry is None for entry in entries):
                raise ValueError(f"{path}: the index's keys are not 0 to {len(document) - 1}")
            names = [str(entry[-1] if isinstance(entry, list) else entry) for entry in entries]
        else:
            raise ValueError(f"{path}: expected a JSON list of names or an index of them")
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise ValueError(f"{path}: no class names in it")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"{path}: names appear twice: {', '.join(duplicates[:5])}")
    return names
