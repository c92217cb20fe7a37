"""Keras image classifiers → ONNX with tf2onnx, verified against Keras before the file is written.

ResNet50 by default; any keras.applications classifier with ``--architecture``, or a user's own saved model with
``--model``. The file's metadata records everything the service serves it by (see model_contract).

This is the only module that imports TensorFlow, and only inside functions: the service never loads it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from resnet_service.core.digest import file_sha256
from resnet_service.core.errors import StartupError
from resnet_service.core.exit_status import WEIGHTS_UNAVAILABLE
from resnet_service.export.architectures import ARCHITECTURES, Architecture, architecture
from resnet_service.export.own_model import OwnModelRefused
from resnet_service.inference.labels import Labels
from resnet_service.inference.model_contract import MODES, InputSpec, ModelContract, PreprocessingMode, session_contract
from resnet_service.inference.preprocessing import to_model_input

if TYPE_CHECKING:
    import keras
    from PIL import Image

__all__ = ["ExportReport", "WeightsUnavailable", "ParityFailed", "load_keras_model", "convert_and_verify", "main"]

MAX_ABS_DIFF = 1e-5
INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"
BATCH_AXIS = "batch"
EXIT_PARITY_FAILED = 1
EXIT_WEIGHTS_UNAVAILABLE = WEIGHTS_UNAVAILABLE
EXIT_MISSING_EXTRA = 4
EXIT_REFUSED = 2

Progress = Callable[[str], None]
Precision = Literal["fp32", "fp16"]


class WeightsUnavailable(Exception):
    """Raised when the requested weights cannot be had here (no network for imagenet, no such file)."""


class ParityFailed(Exception):
    """Raised when ONNX Runtime and Keras disagree beyond the thresholds; nothing is written."""


class ConversionFailed(Exception):
    """Raised when tf2onnx cannot convert the model at all (ConvNeXt's layers, for one); nothing is written."""


@dataclass(frozen=True)
class ExportReport:
    output: str
    weights: str
    random_weights: bool
    opset: int
    max_abs_diff: float
    top5_match: bool
    photos: int
    random_tensors: int
    seconds: float
    sha256: str
    precision: str = "fp32"
    architecture: str = "ResNet50"
    preprocessing: str = "caffe"
    input_size: int = 224
    classes: int = 1000


def _versions() -> dict[str, str]:
    return {f"{name}_version": metadata.version(dist) for name, dist in _VERSIONED.items()}


_VERSIONED = {"tensorflow": "tensorflow-cpu", "keras": "keras", "tf2onnx": "tf2onnx", "onnx": "onnx"}


VERIFICATION_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")
# Colour and grayscale photos that scikit-image ships in its wheel (the rest of skimage.data is downloaded).
CALIBRATION_PHOTOS = (
    *VERIFICATION_PHOTOS,
    *("hubble_deep_field", "immunohistochemistry", "retina", "stereo_motorcycle"),
    *("camera", "clock", "coins", "moon", "brick", "grass", "gravel"),
)


def skimage_photo(name: str) -> Image.Image:
    """One of the real photos scikit-image ships in its wheel, as RGB."""
    from PIL import Image
    from skimage import data

    pixels = getattr(data, name)()
    if isinstance(pixels, tuple):  # stereo pairs come as (left, right, disparity)
        pixels = pixels[0]
    return Image.fromarray(pixels).convert("RGB")


def skimage_photos(names: Sequence[str], spec: InputSpec | None = None) -> np.ndarray:
    """Real photos shipped by scikit-image, preprocessed by the service's own code: (N, *spec.row_shape)."""
    spec = spec or InputSpec()
    return np.stack([to_model_input(skimage_photo(name), spec=spec) for name in names])


def random_tensors(seed: int, count: int = 4, spec: InputSpec | None = None) -> np.ndarray:
    """Seeded random pixels, preprocessed as the model's input: the whole range its inputs take."""
    from PIL import Image

    spec = spec or InputSpec()
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(count, spec.height, spec.width, 3), dtype=np.uint8)
    return np.stack([to_model_input(Image.fromarray(image), spec=spec) for image in pixels])


def _classifier(model: keras.Model) -> Any:
    """The last layer with weights: the Dense (or MobileNetV3's 1×1 Conv2D) that gives the logits."""
    for layer in reversed(model.layers):
        if layer.get_weights():
            return layer
    raise ValueError("the model has no layer with weights")


def _randomise(model: keras.Model, seed: int, photos: np.ndarray, noise: np.ndarray, calibrate: bool) -> None:
    """Make random weights non-degenerate, so that parity on them proves something.

    keras.applications' models with weights=None leave every BatchNorm the identity and every bias zero, and their
    softmax saturates. BatchNorm scales, shifts and biases get seeded random values. Their statistics:

    - ``calibrate`` false (ResNet50/101/152): seeded random values too. This is the model the rest of the test
      suite and the published figures use; its residual connections keep the activations alive.
    - ``calibrate`` true (the others): through dozens of layers without shortcuts the activations then vanish or
      explode (MobileNetV3's features differed between photos by 1e-8), so each BatchNorm's statistics are set to
      those of its input over the photos and random pixels, in one training-mode pass (momentum 0, dropout off),
      then jittered. Random pixels are included so that the parity check's random tensors do not land where
      nothing was calibrated (MobileNetV3 then differed from ONNX Runtime by 2.8e-5).

    Random features of all inputs share a large common part, which would send every input to one class, so the
    classifier is applied to standardised features and scaled so that logits spread with std 2 over the photos
    (keeping a photo's top-1 well below 0.5), or std 1 over photos and random pixels when calibrating: at std 2
    random pixels reached a top-1 of 0.8 there and ONNX Runtime differed by up to 3.9e-5 (the larger the logits, the
    larger the same relative rounding).
    """
    import keras

    rng = np.random.default_rng(seed)
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    # One pass in layer order: the seeded draws, and so ResNet50's random model, stay what they have always been.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            # InceptionV3's BatchNorms have no scale (gamma): each variable is set only where the layer has it.
            if layer.scale:
                layer.gamma.assign(rng.uniform(0.5, 1.0, n).astype(np.float32))
            if layer.center:
                layer.beta.assign(rng.normal(0.0, 0.1, n).astype(np.float32))
            layer.moving_mean.assign(rng.normal(0.0, 0.1, n).astype(np.float32))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, n).astype(np.float32))
        elif isinstance(layer, keras.layers.Conv2D) and layer.use_bias:
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.normal(0.0, 0.01, bias.shape).astype(np.float32)])
    calibration = photos
    if calibrate:
        calibration = np.concatenate([photos, noise])
        _calibrate_norms(model, norms, calibration, rng)
    classifier = _classifier(model)
    features = keras.Model(model.input, classifier.input).predict(calibration, verbose=0)
    features = features.reshape(len(features), -1)
    kernel_shape = classifier.get_weights()[0].shape
    kernel, bias = classifier.get_weights()
    kernel = kernel.reshape(-1, kernel_shape[-1])
    # Flooring the spread at its median keeps near-constant features from getting huge weights, which would make
    # the logits a small difference of large terms that any rounding (INT8 above all) scrambles.
    centre, spread = features.mean(axis=0), features.std(axis=0)
    spread = np.maximum(spread, max(float(np.median(spread)), 1e-6))
    kernel = kernel / spread[:, np.newaxis]
    scale = (1.0 if calibrate else 2.0) / float(((features - centre) @ kernel).std())
    bias = -(centre @ kernel) * scale + rng.normal(0.0, 0.1, bias.shape)
    classifier.set_weights([(kernel * scale).reshape(kernel_shape).astype(np.float32), bias.astype(np.float32)])


def _calibrate_norms(model: keras.Model, norms: list[Any], inputs: np.ndarray, rng: np.random.Generator) -> None:
    """Set every BatchNorm's statistics to its input's over ``inputs`` in one pass, then jitter them."""
    import keras

    dropouts = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    momenta, rates = [layer.momentum for layer in norms], [layer.rate for layer in dropouts]
    for layer in norms:
        layer.momentum = 0.0
    for layer in dropouts:
        layer.rate = 0.0
    model(inputs, training=True)
    for layer, momentum in zip(norms, momenta, strict=True):
        layer.momentum = momentum
        mean, variance = np.asarray(layer.moving_mean), np.asarray(layer.moving_variance)
        layer.moving_mean.assign((mean + rng.normal(0.0, 0.1, mean.shape) * np.sqrt(variance)).astype(np.float32))
        layer.moving_variance.assign((variance * rng.uniform(0.8, 1.2, variance.shape)).astype(np.float32))
    for layer, rate in zip(dropouts, rates, strict=True):
        layer.rate = rate


def load_keras_model(
    weights: str, seed: int, progress: Progress, arch: Architecture = ARCHITECTURES["ResNet50"]
) -> tuple[keras.Model, str]:
    """A keras.applications classifier with ``imagenet``, ``random`` or a weights file, and its provenance."""
    import keras

    keras.utils.set_random_seed(seed)
    build = getattr(keras.applications, arch.name)
    shape = (arch.size, arch.size, 3)
    if weights == "imagenet":
        progress(f"building {arch.name} with ImageNet weights (Keras downloads them to ~/.keras/models/ once)")
        try:
            return build(weights="imagenet", input_shape=shape), "imagenet"
        except Exception as exc:
            if "URL fetch failure" not in str(exc):
                raise
            raise WeightsUnavailable(
                f"the ImageNet weights could not be downloaded ({exc}). Put Keras' weights file for {arch.name} "
                "in ~/.keras/models/, pass the file with --weights PATH, or use --weights random (meaningless "
                "predictions, for tests)"
            ) from exc
    if weights == "random":
        progress(f"building {arch.name} with seeded random weights (seed {seed}); predictions will be MEANINGLESS")
        model = build(weights=None, input_shape=shape)
        spec = InputSpec.for_mode(arch.preprocessing, arch.size, arch.size)
        photos, noise = skimage_photos(CALIBRATION_PHOTOS, spec), random_tensors(seed + 2, spec=spec)
        _randomise(model, seed, photos, noise, calibrate=arch.module != "resnet")
        return model, f"random (seed {seed})"
    path = Path(weights)
    if not path.is_file():
        raise WeightsUnavailable(f"--weights {weights}: no such file; give imagenet, random or a Keras weights file")
    progress(f"building {arch.name} with weights from {path}")
    return build(weights=str(path), input_shape=shape), f"file {path.name} sha256={file_sha256(path)}"


def _convert(model: keras.Model, opset: int, spec: InputSpec) -> Any:
    import onnx
    import tensorflow as tf
    import tf2onnx

    signature = (tf.TensorSpec((None, spec.height, spec.width, 3), tf.float32, name=INPUT_NAME),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=opset)
    graph = proto.graph
    # tf2onnx names the output after the Keras layer and the batch axis "unk__N"; give both stable names.
    old_output = graph.output[0].name
    for node in graph.node:
        node.output[:] = [OUTPUT_NAME if name == old_output else name for name in node.output]
    graph.output[0].name = OUTPUT_NAME
    for value in (*graph.input, *graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = BATCH_AXIS
    onnx.checker.check_model(proto)
    return proto


def _parity(expected: np.ndarray, proto: Any, inputs: np.ndarray) -> tuple[float, bool]:
    import onnxruntime as ort

    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (actual,) = session.run([OUTPUT_NAME], {INPUT_NAME: inputs})
    max_abs_diff = float(np.abs(actual - expected).max())
    top5_match = bool(np.array_equal(np.argsort(-expected, axis=1)[:, :5], np.argsort(-actual, axis=1)[:, :5]))
    return max_abs_diff, top5_match


def _half(proto: Any, inputs: np.ndarray, expected: np.ndarray, reference: str, progress: Progress) -> Any:
    """``proto`` in fp16, after checking it against ``expected``; ``ParityFailed`` if it is broken."""
    from resnet_service.export.fp16 import FP16_MAX_ABS_DIFF, to_fp16

    progress(f"converting to fp16 and comparing with {reference} on {len(inputs)} inputs")
    half, report = to_fp16(proto, inputs, expected, reference)
    progress(
        f"fp16 vs {reference}: max |Δ probability| = {report.max_abs_diff:.3g} (limit {FP16_MAX_ABS_DIFF:g}), "
        f"top-5 identical: {report.top5_match}, top-1 agreement {report.top1_agreement:.0%}"
    )
    if report.max_abs_diff > FP16_MAX_ABS_DIFF:
        raise ParityFailed(f"the fp16 model differs from {reference} by {report.max_abs_diff:.3g}")
    return half


def _write(proto: Any, output: Path) -> None:
    import onnx

    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_suffix(output.suffix + ".partial")
    onnx.save(proto, partial)
    os.replace(partial, output)  # a crash mid-write never leaves a file that looks finished


def imagenet_contract(arch: Architecture = ARCHITECTURES["ResNet50"]) -> ModelContract:
    """A keras.applications classifier's contract: its own size and preprocessing, the 1,000 ImageNet classes."""
    return ModelContract(InputSpec.for_mode(arch.preprocessing, arch.size, arch.size), Labels.load(), arch.name)


def convert_and_verify(
    model: keras.Model,
    weights: str,
    output: Path,
    opset: int,
    seed: int,
    progress: Progress,
    precision: Precision = "fp32",
    contract: ModelContract | None = None,
) -> ExportReport:
    """Convert, check ONNX Runtime against Keras on photos and random tensors, then write the file.

    ``contract`` is what the file will say about itself (ResNet50 with the ImageNet classes by default).
    """
    import onnx

    contract = contract or imagenet_contract()
    spec = contract.input
    started = time.monotonic()
    progress(f"converting to ONNX with tf2onnx (opset {opset}), input {spec.height}x{spec.width}, {spec.mode} mode")
    try:
        proto = _convert(model, opset, spec)
    except Exception as exc:
        # tf2onnx and the ONNX checker raise many kinds; each means this model has no faithful ONNX form here.
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ConversionFailed(
            f"tf2onnx could not convert {contract.architecture} ({type(exc).__name__}: {first_line})"
        ) from exc
    photos, tensors = skimage_photos(VERIFICATION_PHOTOS, spec), random_tensors(seed + 1, spec=spec)
    progress(f"verifying ONNX Runtime against Keras on {len(photos)} photos and {len(tensors)} random tensors")
    inputs = np.concatenate([photos, tensors])
    expected = model.predict(inputs, verbose=0)
    max_abs_diff, top5_match = _parity(expected, proto, inputs)
    progress(
        f"parity: max |Δ probability| = {max_abs_diff:.3g} (limit {MAX_ABS_DIFF:g}), top-5 identical: {top5_match}"
    )
    if not max_abs_diff <= MAX_ABS_DIFF or not top5_match:  # NaN fails too
        raise ParityFailed(f"ONNX Runtime differs from Keras: max |Δ| {max_abs_diff:.3g}, top-5 match {top5_match}")
    provenance = {
        **contract.metadata(),
        "weights": weights,
        "random_weights": str(weights.startswith("random")).lower(),
        "parity_max_abs_diff": f"{max_abs_diff:.3g}",
        "parity_top5_match": str(top5_match).lower(),
        "parity_inputs": f"{len(photos)} photos + {len(tensors)} random tensors",
        "opset": str(opset),
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **_versions(),
    }
    onnx.helper.set_model_props(proto, provenance)
    if precision == "fp16":
        proto = _half(proto, inputs, expected, "Keras fp32", progress)
    _write(proto, output)
    return ExportReport(
        output=str(output),
        weights=weights,
        random_weights=weights.startswith("random"),
        opset=opset,
        max_abs_diff=max_abs_diff,
        top5_match=top5_match,
        photos=len(photos),
        random_tensors=len(tensors),
        seconds=time.monotonic() - started,
        sha256=file_sha256(output),
        precision=precision,
        architecture=contract.architecture,
        preprocessing=spec.mode,
        input_size=spec.height,
        classes=len(contract.labels.names),
    )


def export_model(args: argparse.Namespace, progress: Progress) -> ExportReport:
    """--architecture NAME: a keras.applications classifier with the 1,000 ImageNet classes."""
    arch = architecture(args.architecture)
    model, provenance = load_keras_model(args.weights, args.seed, progress, arch)
    contract = imagenet_contract(arch)
    if args.preprocessing:
        contract = ModelContract(
            InputSpec.for_mode(args.preprocessing, arch.size, arch.size), contract.labels, contract.architecture
        )
    return convert_and_verify(model, provenance, args.output, args.opset, args.seed, progress, args.precision, contract)


def export_own_model(args: argparse.Namespace, progress: Progress) -> ExportReport:
    """--model FILE.keras [--labels FILE]: a user's own classifier, its labels checked against its outputs.

    Its input size is its own; its preprocessing is that of the backbone --architecture names, or --preprocessing.
    """
    from resnet_service.export.own_model import load_own_model, read_labels

    arch = architecture(args.architecture)
    labels = read_labels(args.labels) if args.labels else None
    progress(f"loading {args.model}")
    model, provenance, (height, width) = load_own_model(args.model, labels, arch.size)
    mode: PreprocessingMode = args.preprocessing or arch.preprocessing
    contract = ModelContract(
        InputSpec.for_mode(mode, height, width),
        Labels(tuple(labels)) if labels is not None else Labels.load(),
        f"{arch.name} (own model {args.model.name})",
    )
    return convert_and_verify(model, provenance, args.output, args.opset, args.seed, progress, args.precision, contract)


def half_from_onnx(fp32: Path, output: Path, seed: int, progress: Progress) -> None:
    """An fp16 copy of an exported fp32 file, compared with it on the verification photos (no TensorFlow)."""
    import onnx
    import onnxruntime as ort

    proto = onnx.load(str(fp32))
    session = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    spec = session_contract(session, fp32).input
    inputs = np.concatenate([skimage_photos(VERIFICATION_PHOTOS, spec), random_tensors(seed + 1, spec=spec)])
    (expected,) = session.run([OUTPUT_NAME], {session.get_inputs()[0].name: inputs})
    _write(_half(proto, inputs, expected, f"fp32 {fp32.name}", progress), output)
    progress(f"wrote {output}")


def pixels_from_onnx(source: Path, output: Path, fp16: bool, seed: int, progress: Progress) -> None:
    """A copy of an exported file that takes uint8 pixels and preprocesses them in its graph (in fp16 too, with
    ``fp16``), compared with the original on the verification photos and random pixels (no TensorFlow)."""
    import onnx
    import onnxruntime as ort
    from PIL import Image

    from resnet_service.export.uint8_input import (
        UINT8_MAX_ABS_DIFF,
        pixels_and_tensors,
        to_uint8_input,
        verify_uint8_input,
    )

    proto = onnx.load(str(source))
    session = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    spec = session_contract(session, source).input
    if spec.uint8_pixels:
        raise StartupError(f"model file {source} already takes uint8 pixels")
    rng = np.random.default_rng(seed + 1)
    noise = rng.integers(0, 256, size=(4, spec.height, spec.width, 3), dtype=np.uint8)
    images = [skimage_photo(name) for name in VERIFICATION_PHOTOS] + [Image.fromarray(image) for image in noise]
    pixels, tensors = pixels_and_tensors(images, spec)
    reference = source.name
    if fp16:
        (expected,) = session.run(None, {session.get_inputs()[0].name: tensors})
        proto = _half(proto, tensors, expected, f"fp32 {source.name}", progress)
        reference = f"its fp16 copy of {source.name}"
    progress(f"moving the {spec.mode} preprocessing into the graph and comparing with {reference}")
    uint8 = to_uint8_input(proto, spec)
    report = verify_uint8_input(proto, uint8, pixels, tensors)
    progress(
        f"uint8 pixels vs {reference} on float32 tensors of the same {report.images} images: max |Δ probability| "
        f"= {report.max_abs_diff:.3g} (limit {UINT8_MAX_ABS_DIFF:g}), top-5 identical: {report.top5_match}"
    )
    if not report.max_abs_diff <= UINT8_MAX_ABS_DIFF or not report.top5_match:
        raise ParityFailed(f"the uint8-input model differs from {reference} by {report.max_abs_diff:.3g}")
    props = {prop.key: prop.value for prop in uint8.metadata_props}
    props["uint8_input_max_abs_diff"] = f"{report.max_abs_diff:.3g}"
    onnx.helper.set_model_props(uint8, props)
    _write(uint8, output)
    progress(f"wrote {output}: it takes [N, {spec.height}, {spec.width}, 3] uint8 RGB pixels")


def prepare_tensorflow() -> None:
    """Settings TensorFlow reads once, at import: call before anything imports it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter hides the progress
    # oneDNN's kernels round differently from TensorFlow's own (its start-up log says so): with them MobileNetV2
    # differed from ONNX Runtime by 2e-5, without them by 7.5e-6. The parity reference is TensorFlow's own kernels.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def _progress_printer() -> Progress:
    started = time.monotonic()

    def progress(message: str) -> None:
        print(f"[export {time.monotonic() - started:5.1f}s] {message}", file=sys.stderr, flush=True)

    return progress


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Export a Keras image classifier (ResNet50 by default) to ONNX and prove ONNX Runtime matches "
        "Keras. ResNet50 takes about 25 s and peaks near 7 GB of RAM.",
    )
    parser.add_argument(
        "--architecture",
        default="ResNet50",
        metavar="NAME",
        help="the keras.applications classifier to export, with its own input size and preprocessing (default: "
        "ResNet50); with --model, the backbone whose preprocessing your model expects. Known: "
        + ", ".join(ARCHITECTURES),
    )
    parser.add_argument(
        "--preprocessing",
        choices=list(MODES),
        help="override the architecture's preprocessing: caffe (BGR minus ImageNet means), tf (to [-1, 1]), "
        "torch (to [0, 1], ImageNet mean and std), none (the model rescales 0-255 RGB itself)",
    )
    parser.add_argument(
        "--weights",
        default="imagenet",
        help="imagenet (downloaded by Keras), random (seeded, meaningless predictions), or a Keras weights file",
    )
    parser.add_argument(
        "--model",
        type=Path,
        help="your own Keras classifier (a .keras file from model.save, RGB input of a fixed size, preprocessed "
        "as --architecture's); its weights come with it",
    )
    parser.add_argument(
        "--labels",
        type=Path,
        help="with --model: its class names in output order, one per line (or a JSON list or class index); "
        "needed unless the model has the 1,000 ImageNet classes",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="the .onnx file to write (default: models/NAME.onnx, NAME the architecture or the --model file's)",
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    parser.add_argument("--seed", type=int, default=0, help="seed for random weights and test tensors (default: 0)")
    parser.add_argument(
        "--precision",
        choices=["fp32", "fp16"],
        default="fp32",
        help="fp16: half-precision weights and arithmetic for GPUs, float32 input and output kept; its difference "
        "from fp32 is printed and recorded in the file (default: fp32)",
    )
    parser.add_argument("--quantize", choices=["int8"], help="also write a static INT8 QDQ model")
    parser.add_argument("--calibration-dir", type=Path, help="real photos to calibrate INT8 on (needed by --quantize)")
    parser.add_argument("--int8-output", type=Path, help="the INT8 file (default: OUTPUT with .int8.onnx)")
    parser.add_argument(
        "--from-onnx",
        type=Path,
        help="start from this exported fp32 ONNX file instead of Keras (no TensorFlow): with --quantize int8, or "
        "with --precision fp16 to write an fp16 copy of it to --output, or with --uint8-input",
    )
    parser.add_argument(
        "--uint8-input",
        action="store_true",
        help="with --from-onnx: write a copy that takes resized 0-255 RGB pixels as uint8 and does its own "
        "preprocessing in the graph, so a quarter of the bytes travel to the model (default --output: FILE with "
        ".uint8.onnx); combine with --precision fp16 for a GPU",
    )
    return parser


def _quantize(args: argparse.Namespace, fp32: Path, progress: Progress) -> int:
    from resnet_service.export.quantize import quantize_int8

    output = args.int8_output or fp32.with_name(fp32.name.removesuffix(".onnx") + ".int8.onnx")
    try:
        report = quantize_int8(fp32, output, args.calibration_dir, progress)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    progress(
        f"wrote {output}: {report.int8_bytes / 1e6:.1f} MB (fp32 {report.fp32_bytes / 1e6:.1f} MB); INT8 vs fp32 "
        f"top-1 agreement {report.calibration.top1:.0%} on {report.calibration.images} calibration images, "
        f"{report.holdout.top1:.0%} on {report.holdout.images} held out; top-5 overlap "
        f"{report.calibration.top5_overlap:.0%} / {report.holdout.top5_overlap:.0%}"
    )
    progress("judge INT8 accuracy with the real ImageNet weights: agreement on random weights says little")
    print(json.dumps(asdict(report)))
    return 0


# Each way an export stops: its exit status, and whether it stopped after starting on the output file.
_STOPS: tuple[tuple[type[Exception] | tuple[type[Exception], ...], int, bool], ...] = (
    (StartupError, EXIT_REFUSED, False),
    (OwnModelRefused, EXIT_REFUSED, True),
    (WeightsUnavailable, EXIT_WEIGHTS_UNAVAILABLE, False),
    ((ParityFailed, ConversionFailed), EXIT_PARITY_FAILED, True),
)


def _stopped(exc: Exception, output: Path) -> int:
    """Say why the export stopped, and that ``output`` was not written where it had begun; its exit status."""
    for kinds, status, began in _STOPS:
        if isinstance(exc, kinds):
            print(f"error: {exc}" + (f"; {output} was not written" if began else ""), file=sys.stderr)
            return status
    raise exc


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.quantize and not args.calibration_dir:
        parser.error("--quantize int8 needs --calibration-dir DIR of real photos")
    if args.from_onnx and not (args.quantize or args.precision == "fp16" or args.uint8_input):
        parser.error("--from-onnx is for --quantize int8, --precision fp16 or --uint8-input")
    if args.uint8_input and not args.from_onnx:
        parser.error("--uint8-input rewrites an exported file: add --from-onnx FILE")
    if args.uint8_input and args.quantize:
        parser.error("--quantize int8 writes its own file: make its uint8 copy afterwards with --from-onnx INT8_FILE")
    if args.uint8_input and args.output is None:
        args.output = args.from_onnx.with_name(args.from_onnx.name.removesuffix(".onnx") + ".uint8.onnx")
    if args.quantize and args.precision == "fp16":
        parser.error("--quantize int8 starts from an fp32 model: leave out --precision fp16")
    if args.labels and not args.model:
        parser.error("--labels names the classes of --model FILE; keras.applications' are the ImageNet ones")
    try:
        architecture(args.architecture)
    except ValueError as exc:
        parser.error(str(exc))
    if args.output is None:
        stem = args.model.stem if args.model else args.architecture.lower()
        args.output = Path("models") / f"{stem}.onnx"
    progress = _progress_printer()
    if args.from_onnx and (args.precision == "fp16" or args.uint8_input):
        if args.from_onnx.resolve() == args.output.resolve():
            parser.error("--output must name a new file, not the --from-onnx one")
        try:
            if args.uint8_input:
                pixels_from_onnx(args.from_onnx, args.output, args.precision == "fp16", args.seed, progress)
            else:
                half_from_onnx(args.from_onnx, args.output, args.seed, progress)
        except (StartupError, ParityFailed) as exc:
            return _stopped(exc, args.output)
        return 0
    if args.from_onnx:
        return _quantize(args, args.from_onnx, progress)
    prepare_tensorflow()
    try:
        progress("importing TensorFlow and tf2onnx")
        if args.model:
            report = export_own_model(args, progress)
        else:
            report = export_model(args, progress)
    except ImportError as exc:
        print(f"the export needs the export extra: pip install 'resnet-service[export]' ({exc})", file=sys.stderr)
        return EXIT_MISSING_EXTRA
    except (OwnModelRefused, WeightsUnavailable, ParityFailed, ConversionFailed) as exc:
        return _stopped(exc, args.output)
    progress(f"wrote {report.output} (sha256 {report.sha256[:12]}…) in {report.seconds:.1f}s")
    if report.random_weights:
        progress("WARNING: the weights are RANDOM; this model's predictions are meaningless")
    print(json.dumps(asdict(report)))
    return _quantize(args, args.output, progress) if args.quantize else 0
