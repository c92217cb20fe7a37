"""A user's own Keras classifier for the export: the saved model, and the class names its outputs stand for.

A fine-tuned ResNet-50 with a new head (12 classes, say) is exported like ResNet50 itself, with its label file;
the names go into the ONNX file's metadata, which the service reads, so the file says what its outputs mean.
The model takes one RGB image of a fixed size (its own, or its backbone's where the model leaves it open).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from resnet_service.core.digest import file_sha256
from resnet_service.inference.labels import read_label_file

if TYPE_CHECKING:
    import keras

__all__ = ["OwnModelRefused", "load_own_model", "read_labels"]


class OwnModelRefused(Exception):
    """Raised when a model or label file cannot be exported as given; nothing is written."""


def read_labels(path: Path) -> list[str]:
    """``--labels FILE``: the class names in it, or ``OwnModelRefused`` saying what is wrong with it."""
    try:
        return read_label_file(path)
    except ValueError as exc:
        raise OwnModelRefused(f"--labels {exc}") from exc


def load_own_model(
    path: Path, labels: list[str] | None, backbone_size: int
) -> tuple[keras.Model, str, tuple[int, int]]:
    """The saved model, its provenance and input size, checked against its labels (None: the ImageNet classes).

    A model whose height and width are open (None) is exported at ``backbone_size``.
    """
    import keras

    if not path.is_file():
        raise OwnModelRefused(f"--model {path}: no such file")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:
        raise OwnModelRefused(f"--model {path}: Keras could not load it ({exc})") from exc
    shape = model.input_shape
    if not isinstance(shape, tuple) or len(shape) != 4 or shape[-1] != 3:
        raise OwnModelRefused(f"--model {path} takes {shape}; the service feeds one (batch, height, width, 3) input")
    height, width = shape[1] or backbone_size, shape[2] or backbone_size
    if (shape[1] is None) != (shape[2] is None):
        raise OwnModelRefused(f"--model {path} takes {shape}: fix both height and width, or neither")
    classes = model.output_shape[-1]
    if len(model.output_shape) != 2 or not isinstance(classes, int):
        raise OwnModelRefused(f"--model {path} gives {model.output_shape}, not (batch, classes) probabilities")
    if labels is None and classes != 1000:
        raise OwnModelRefused(f"--model {path} has {classes} classes: give their names with --labels FILE")
    if labels is not None and len(labels) != classes:
        raise OwnModelRefused(f"the label file has {len(labels)} names; --model {path} has {classes} classes")
    return model, f"file {path.name} sha256={file_sha256(path)}", (height, width)
