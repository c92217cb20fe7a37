"""What an exported model says about itself, and what the service needs from it to serve it.

The export writes these keys into the ONNX file's metadata; the service reads them and nothing else: the input
size and layout, the preprocessing (mode, colour order, means and scales, resize filter), whether the model does
that arithmetic itself on uint8 pixels, the class names and their digest, the architecture and where the weights
came from. A file without them (an ONNX file from
elsewhere) is refused, unless RESNET_PREPROCESSING and RESNET_LABELS say how to serve it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
from PIL import Image

from resnet_service.core.errors import StartupError
from resnet_service.inference.labels import Labels, read_label_file

__all__ = [
    "InputSpec",
    "UINT8_PIXELS",
    "ModelContract",
    "ContractDefaults",
    "PreprocessingMode",
    "MODES",
    "REQUIRED_KEYS",
    "labels_digest",
    "read_contract",
    "session_contract",
]

PreprocessingMode = Literal["caffe", "tf", "torch", "none"]
Layout = Literal["NHWC", "NCHW"]
ColourOrder = Literal["RGB", "BGR"]
Triple = tuple[float, float, float]

# keras.applications' preprocess_input modes, with means and scales in pixel units (0-255), in channel order:
# caffe: RGB→BGR minus the ImageNet BGR means; tf: to [-1, 1]; torch: to [0, 1], then ImageNet mean and std;
# none: the model rescales inside (EfficientNet, ConvNeXt, MobileNetV3) and takes 0-255 RGB.
MODES: dict[str, tuple[ColourOrder, Triple, Triple]] = {
    "caffe": ("BGR", (103.939, 116.779, 123.68), (1.0, 1.0, 1.0)),
    "tf": ("RGB", (127.5, 127.5, 127.5), (127.5, 127.5, 127.5)),
    "torch": ("RGB", (0.485 * 255, 0.456 * 255, 0.406 * 255), (0.229 * 255, 0.224 * 255, 0.225 * 255)),
    "none": ("RGB", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}
RESIZE_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
REQUIRED_KEYS = ("input_size", "preprocessing", "labels")
# The input_dtype of a model that takes resized 0-255 RGB pixels, [N, H, W, 3] uint8, and does its preprocessing
# (cast, channel order, means and scales, layout) in its own graph.
UINT8_PIXELS = "uint8"
# What exports made before the preprocessing was recorded key by key said; such a file is ResNet-50's contract.
LEGACY_CAFFE = "keras imagenet_utils.preprocess_input mode=caffe (RGB->BGR, minus ImageNet BGR mean)"


@dataclass(frozen=True)
class InputSpec:
    """The tensor one image becomes: size, layout, and the arithmetic from 0-255 pixels to model input."""

    height: int = 224
    width: int = 224
    mode: PreprocessingMode = "caffe"
    colour_order: ColourOrder = "BGR"
    mean: Triple = MODES["caffe"][1]
    std: Triple = MODES["caffe"][2]
    resize_filter: str = "bicubic"
    layout: Layout = "NHWC"
    # The model takes uint8 RGB pixels, [H, W, 3] per image, and applies mode, colour order, means, scales and
    # layout itself: what travels to it is the resized image, a quarter of the float32 tensor's bytes.
    uint8_pixels: bool = False

    @classmethod
    def for_mode(cls, mode: PreprocessingMode, height: int, width: int, layout: Layout = "NHWC") -> InputSpec:
        colour_order, mean, std = MODES[mode]
        return cls(height, width, mode, colour_order, mean, std, "bicubic", layout)

    @property
    def row_shape(self) -> tuple[int, int, int]:
        """One image's tensor shape, without the batch axis: pixels are always height × width × RGB."""
        if self.layout == "NHWC" or self.uint8_pixels:
            return (self.height, self.width, 3)
        return (3, self.height, self.width)

    @property
    def dtype(self) -> type[np.generic]:
        return np.uint8 if self.uint8_pixels else np.float32

    @property
    def datatype(self) -> str:
        """The row's element type, as the Open Inference Protocol names it."""
        return "UINT8" if self.uint8_pixels else "FP32"

    @property
    def resample(self) -> Image.Resampling:
        return RESIZE_FILTERS[self.resize_filter]

    def describe(self) -> dict[str, object]:
        """For /health, /models and the docs: what a client sending a preprocessed tensor must do itself."""
        return {
            "shape": list(self.row_shape),
            "datatype": self.datatype,
            "preprocessing_in_model": self.uint8_pixels,
            "layout": self.layout,
            "preprocessing": self.mode,
            "colour_order": self.colour_order,
            "mean": list(self.mean),
            "std": list(self.std),
            "resize_filter": self.resize_filter,
        }

    def metadata(self) -> dict[str, str]:
        return {
            "input_size": f"{self.height}x{self.width}",
            "input_layout": self.layout,
            "preprocessing": self.mode,
            "colour_order": self.colour_order,
            "mean": json.dumps(list(self.mean)),
            "std": json.dumps(list(self.std)),
            "resize_filter": self.resize_filter,
            **({"input_dtype": UINT8_PIXELS} if self.uint8_pixels else {}),
        }


@dataclass(frozen=True)
class ModelContract:
    """Everything the service serves a model by."""

    input: InputSpec
    labels: Labels
    architecture: str

    def metadata(self) -> dict[str, str]:
        names = list(self.labels.names)
        return {
            **self.input.metadata(),
            "architecture": self.architecture,
            "num_classes": str(len(names)),
            "labels": json.dumps(names),
            "labels_sha256": labels_digest(names),
        }


@dataclass(frozen=True)
class ContractDefaults:
    """RESNET_PREPROCESSING and RESNET_LABELS: how to serve a file that does not describe itself."""

    preprocessing: PreprocessingMode | None = None
    labels: str | None = None


def labels_digest(names: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps(list(names)).encode()).hexdigest()


def _size(text: str, path: Path) -> tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or not all(part.strip().isdigit() and int(part) > 0 for part in parts):
        raise StartupError(f"model file {path}: input_size {text!r} is not HEIGHTxWIDTH")
    return int(parts[0]), int(parts[1])


def _triple(metadata: Mapping[str, str], key: str, default: Triple, path: Path) -> Triple:
    if key not in metadata:
        return default
    try:
        values = tuple(float(value) for value in json.loads(metadata[key]))
    except (ValueError, TypeError) as exc:
        raise StartupError(f"model file {path}: {key} {metadata[key]!r} is not a list of three numbers") from exc
    if len(values) != 3 or (key == "std" and min(values) <= 0):
        raise StartupError(f"model file {path}: {key} {metadata[key]!r} must be three numbers (std above 0)")
    return values  # type: ignore[return-value]


def _choice(value: str, allowed: Sequence[str], key: str, path: Path) -> str:
    if value not in allowed:
        raise StartupError(f"model file {path}: {key} {value!r} is not one of {', '.join(allowed)}")
    return value


def _input_from_metadata(metadata: Mapping[str, str], path: Path) -> InputSpec:
    recorded = metadata["preprocessing"]
    mode = "caffe" if recorded.startswith(LEGACY_CAFFE) else _choice(recorded, tuple(MODES), "preprocessing", path)
    colour_order, mean, std = MODES[mode]
    height, width = _size(metadata["input_size"], path)
    return InputSpec(
        height=height,
        width=width,
        mode=mode,  # type: ignore[arg-type]
        colour_order=_choice(metadata.get("colour_order", colour_order), get_args(ColourOrder), "colour_order", path),  # type: ignore[arg-type]
        mean=_triple(metadata, "mean", mean, path),
        std=_triple(metadata, "std", std, path),
        resize_filter=_choice(metadata.get("resize_filter", "bicubic"), tuple(RESIZE_FILTERS), "resize_filter", path),
        layout=_choice(metadata.get("input_layout", "NHWC"), get_args(Layout), "input_layout", path),  # type: ignore[arg-type]
        uint8_pixels=_choice(metadata.get("input_dtype", "float32"), ("float32", UINT8_PIXELS), "input_dtype", path)
        == UINT8_PIXELS,
    )


def _input_from_shape(shape: Sequence[int | str | None], mode: PreprocessingMode, path: Path) -> InputSpec:
    """A file from elsewhere: its size and layout from its input's shape, the preprocessing from the settings."""
    dims = list(shape[1:]) if len(shape) == 4 else []
    if len(dims) == 3 and dims[-1] == 3 and all(isinstance(d, int) for d in dims[:2]):
        return InputSpec.for_mode(mode, int(dims[0]), int(dims[1]), "NHWC")  # type: ignore[arg-type]
    if len(dims) == 3 and dims[0] == 3 and all(isinstance(d, int) for d in dims[1:]):
        return InputSpec.for_mode(mode, int(dims[1]), int(dims[2]), "NCHW")  # type: ignore[arg-type]
    raise StartupError(
        f"model file {path} takes {list(shape)}: the service feeds [N, H, W, 3] or [N, 3, H, W] with H and W fixed"
    )


def _labels(recorded: str, classes: int, path: Path, digest: str | None) -> Labels:
    if recorded == "imagenet":
        labels = Labels.load()
    else:
        try:
            names = json.loads(recorded)
        except ValueError as exc:
            raise StartupError(f"model file {path}: its labels metadata is not a JSON list ({exc})") from exc
        if not isinstance(names, list):
            raise StartupError(f"model file {path}: its labels metadata is not a JSON list")
        labels = Labels(names=tuple(str(name) for name in names))
        if digest is not None and labels_digest(labels.names) != digest:
            raise StartupError(f"model file {path}: its labels do not match their labels_sha256; re-export it")
    if len(labels.names) != classes:
        raise StartupError(
            f"model file {path} has {classes} outputs but names {len(labels.names)} classes: export it with "
            "scripts/export_onnx.py --model FILE --labels FILE"
        )
    return labels


def _labels_from_setting(setting: str, classes: int, path: Path) -> Labels:
    if setting == "imagenet":
        return _labels("imagenet", classes, path, None)
    try:
        names = read_label_file(Path(setting))
    except ValueError as exc:
        raise StartupError(f"RESNET_LABELS {exc}") from exc
    return _labels(json.dumps(names), classes, path, None)


def read_contract(
    metadata: Mapping[str, str],
    input_shape: Sequence[int | str | None],
    classes: int,
    path: Path,
    defaults: ContractDefaults | None = None,
    input_type: str | None = None,
) -> ModelContract:
    """The model's contract from its metadata, checked against its real input and output shapes and, when given,
    its input's element type (``float32`` or ``uint8``)."""
    defaults = defaults or ContractDefaults()
    # Files from the export's earlier versions name no classes: that export made only ImageNet ResNet-50.
    legacy = metadata.get("preprocessing", "").startswith(LEGACY_CAFFE)
    missing = [key for key in REQUIRED_KEYS if key not in metadata and not (legacy and key == "labels")]
    if missing and defaults.preprocessing is None:
        raise StartupError(
            f"model file {path} does not describe itself: its metadata has no {', '.join(missing)}. Export it with "
            "scripts/export_onnx.py, or say how to serve it with RESNET_PREPROCESSING=caffe|tf|torch|none and "
            "RESNET_LABELS=FILE (or imagenet)"
        )
    if "labels" not in metadata and defaults.labels is None and not legacy:
        raise StartupError(
            f"model file {path} does not name its classes: set RESNET_LABELS to a label file (one name per line) "
            "or to imagenet"
        )
    if "preprocessing" in metadata and "input_size" in metadata:
        spec = _input_from_metadata(metadata, path)
        dims = list(input_shape[1:])
        if len(dims) != 3 or any(
            isinstance(d, int) and d != want for d, want in zip(dims, spec.row_shape, strict=True)
        ):
            raise StartupError(
                f"model file {path} takes {list(input_shape)}, but its metadata says {list(spec.row_shape)} per image"
            )
    else:
        spec = _input_from_shape(input_shape, defaults.preprocessing or "caffe", path)
    _check_input_type(spec, input_type, path)
    if "labels" in metadata:
        labels = _labels(metadata["labels"], classes, path, metadata.get("labels_sha256"))
    else:
        labels = _labels_from_setting(defaults.labels or "imagenet", classes, path)  # "imagenet" only when legacy
    return ModelContract(spec, labels, metadata.get("architecture", "unknown"))


def _check_input_type(spec: InputSpec, input_type: str | None, path: Path) -> None:
    wanted = np.dtype(spec.dtype).name
    if input_type is None or input_type == wanted:
        return
    if input_type == UINT8_PIXELS:
        raise StartupError(
            f"model file {path} takes uint8 input, but its metadata has no input_dtype=uint8 to say it takes 0-255 "
            "RGB pixels and preprocesses them itself: make it with `resnet-service export --from-onnx FILE "
            "--uint8-input`"
        )
    raise StartupError(f"model file {path} takes {input_type} input; its metadata says {wanted}")


# ONNX Runtime's names for the input element types the service can feed.
_ONNX_TYPES = {"tensor(float)": "float32", "tensor(uint8)": UINT8_PIXELS}


def session_contract(session: Any, path: Path, defaults: ContractDefaults | None = None) -> ModelContract:
    """The contract of a model loaded in an ``onnxruntime.InferenceSession``: its metadata, checked against its
    one input's shape and its output's class count."""
    (model_input,) = session.get_inputs()
    (model_output,) = session.get_outputs()
    classes = model_output.shape[-1] if len(model_output.shape) == 2 else None
    if not isinstance(classes, int):
        raise StartupError(f"model file {path} gives {model_output.shape}, not [N, classes] probabilities")
    input_type = _ONNX_TYPES.get(model_input.type, model_input.type)
    metadata = session.get_modelmeta().custom_metadata_map
    return read_contract(metadata, model_input.shape, classes, path, defaults, input_type)
