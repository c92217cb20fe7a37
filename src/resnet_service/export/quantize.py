"""fp32 ONNX → static INT8 QDQ with onnxruntime's quantization tools, and how far INT8 agrees with fp32.

Calibration reads real images from a folder; every fourth one is held out, so agreement is reported both on
images the calibration saw and on images it did not. Needs the ``onnx`` package (the export extra), not
TensorFlow.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from resnet_service.core.errors import ServiceError, StartupError
from resnet_service.inference.model_contract import InputSpec, session_contract
from resnet_service.inference.preprocessing import preprocess

__all__ = ["QuantizationReport", "quantize_int8", "calibration_images"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"})
HOLDOUT_EVERY = 4
MIN_CALIBRATION_IMAGES = 4


@dataclass(frozen=True)
class Agreement:
    images: int
    top1: float
    top5_overlap: float


@dataclass(frozen=True)
class QuantizationReport:
    output: str
    fp32_bytes: int
    int8_bytes: int
    calibration: Agreement
    holdout: Agreement


def calibration_images(directory: Path) -> list[Path]:
    paths = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(paths) < MIN_CALIBRATION_IMAGES + 1:
        raise ValueError(f"{directory} holds {len(paths)} images; calibration needs at least 5 real photos")
    return paths


def _tensors(paths: Sequence[Path], spec: InputSpec) -> np.ndarray:
    tensors = []
    for path in paths:
        try:
            tensors.append(preprocess(path.read_bytes(), max_pixels=10**9, spec=spec))
        except ServiceError as exc:
            raise ValueError(f"{path} is not a usable image: {exc.message}") from exc
    return np.concatenate(tensors)


class _Reader:
    """onnxruntime's CalibrationDataReader protocol: one preprocessed image per call, then None."""

    def __init__(self, input_name: str, tensors: np.ndarray) -> None:
        self._feeds = iter([{input_name: tensor[np.newaxis]} for tensor in tensors])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def _agreement(fp32: np.ndarray, int8: np.ndarray) -> Agreement:
    top5_fp32, top5_int8 = np.argsort(-fp32, axis=1)[:, :5], np.argsort(-int8, axis=1)[:, :5]
    overlap = [len(set(a) & set(b)) / 5 for a, b in zip(top5_fp32, top5_int8, strict=True)]
    return Agreement(
        images=len(fp32),
        top1=float(np.mean(top5_fp32[:, 0] == top5_int8[:, 0])),
        top5_overlap=float(np.mean(overlap)),
    )


def _predict(path: Path, tensors: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (name,) = [i.name for i in session.get_inputs()]
    return np.concatenate([session.run(None, {name: tensor[np.newaxis]})[0] for tensor in tensors])


def quantize_int8(
    fp32: Path, output: Path, calibration_dir: Path, progress: Callable[[str], None]
) -> QuantizationReport:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    paths = calibration_images(calibration_dir)
    holdout = paths[::HOLDOUT_EVERY]
    calibrate = [p for p in paths if p not in holdout]
    progress(f"calibrating INT8 on {len(calibrate)} images from {calibration_dir} ({len(holdout)} held out)")
    session = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    try:
        spec = session_contract(session, fp32).input
    except StartupError as exc:
        raise ValueError(str(exc)) from exc
    calibration_tensors, holdout_tensors = _tensors(calibrate, spec), _tensors(holdout, spec)
    input_name = session.get_inputs()[0].name
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        # ONNX shape inference suffices: only the batch axis is symbolic, so sympy is not needed.
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        output.parent.mkdir(parents=True, exist_ok=True)
        # U8 activations with S8 per-channel weights is the layout x86 VNNI kernels run fastest.
        quantize_static(
            str(prepared),
            str(output),
            _Reader(input_name, calibration_tensors),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            # Quantizing the softmax output would round most probabilities to the same few levels and scramble
            # the top 5; the compute is in the convolutions and the classifier.
            op_types_to_quantize=["Conv", "MatMul", "Gemm"],
        )
    progress("comparing INT8 with fp32")
    report = QuantizationReport(
        output=str(output),
        fp32_bytes=fp32.stat().st_size,
        int8_bytes=output.stat().st_size,
        calibration=_agreement(_predict(fp32, calibration_tensors), _predict(output, calibration_tensors)),
        holdout=_agreement(_predict(fp32, holdout_tensors), _predict(output, holdout_tensors)),
    )
    source = onnx.load(str(fp32))
    model = onnx.load(str(output))
    props = {prop.key: prop.value for prop in source.metadata_props}
    props.update(
        {
            "quantization": "int8 static QDQ, U8 activations, S8 per-channel weights, MinMax calibration",
            "calibration_images": str(len(calibrate)),
            "int8_top1_agreement_holdout": f"{report.holdout.top1:.3f}",
            "int8_top5_overlap_holdout": f"{report.holdout.top5_overlap:.3f}",
        }
    )
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(output))
    return report
