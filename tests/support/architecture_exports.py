"""Export four more keras.applications architectures, one per preprocessing mode, and record Keras' answers.

Run in its own process by the test session (TensorFlow stays out of pytest's process):

    python tests/support/architecture_exports.py --out DIR

Writes DIR/models/NAME.onnx (random weights, verified against Keras by the export), DIR/photo.jpg, and
DIR/keras.json: per architecture the export's report and Keras' probabilities for photo.jpg preprocessed by the
service's code; and per architecture in the export's table, how far the service's preprocessing is from the
architecture's own ``keras.applications.<module>.preprocess_input`` on the same random pixels.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

EXPORTED = ("MobileNetV2", "MobileNetV3Small", "EfficientNetB0", "DenseNet121")
SEED = 0


SMALL_LABELS = ("circle", "square", "star", "heart", "arrow")


def export_own_small_models(out: Path) -> dict[str, int]:
    """A user's own small 64×64 classifier said to expect MobileNetV2's preprocessing (tf), exported through the
    command line as is and with --preprocessing torch; returns the exit statuses."""
    import keras

    from resnet_service.export.convert import main as export_main

    keras.utils.set_random_seed(SEED)
    inputs = keras.Input((64, 64, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(len(SMALL_LABELS), activation="softmax")(x))
    model.save(out / "shapes.keras")
    (out / "shapes.txt").write_text("\n".join(SMALL_LABELS) + "\n")
    base = ["--model", str(out / "shapes.keras"), "--labels", str(out / "shapes.txt"), "--architecture", "MobileNetV2"]
    return {
        "shapes": export_main([*base, "--output", str(out / "models" / "shapes.onnx")]),
        "shapes_torch": export_main(
            [*base, "--preprocessing", "torch", "--output", str(out / "models" / "shapes_torch.onnx")]
        ),
    }


def export_unconvertible(out: Path) -> dict[str, object]:
    """ConvNeXtTiny through the command line: tf2onnx cannot convert its layers. Returns the exit status and
    what the export said on stderr."""
    from resnet_service.export.convert import main as export_main

    said = io.StringIO()
    with contextlib.redirect_stderr(said):
        code = export_main(
            ["--architecture", "ConvNeXtTiny", "--weights", "random", "--output", str(out / "ConvNeXtTiny.onnx")]
        )
    return {"code": code, "stderr": said.getvalue(), "written": (out / "ConvNeXtTiny.onnx").exists()}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    from resnet_service.export.convert import prepare_tensorflow

    prepare_tensorflow()
    from PIL import Image

    from resnet_service.export.architectures import ARCHITECTURES
    from resnet_service.export.convert import convert_and_verify, imagenet_contract, load_keras_model, skimage_photo
    from resnet_service.inference.model_contract import InputSpec
    from resnet_service.inference.preprocessing import preprocess, to_model_input

    def progress(message: str) -> None:
        print(f"[architectures] {message}", file=sys.stderr, flush=True)

    (args.out / "models").mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    skimage_photo("chelsea").save(buffer, "JPEG", quality=90)
    jpeg = buffer.getvalue()
    (args.out / "photo.jpg").write_bytes(jpeg)
    recorded: dict[str, object] = {"exports": {}, "preprocess_input_max_abs_diff": {}}
    for name in EXPORTED:
        arch = ARCHITECTURES[name]
        model, weights = load_keras_model("random", SEED, progress, arch)
        contract = imagenet_contract(arch)
        report = convert_and_verify(
            model, weights, args.out / "models" / f"{name}.onnx", 17, SEED, progress, "fp32", contract
        )
        probabilities = model.predict(preprocess(jpeg, 10**9, spec=contract.input), verbose=0)[0]
        recorded["exports"][name] = {"report": asdict(report), "probabilities": probabilities.tolist()}  # type: ignore[index]
    recorded["own"] = export_own_small_models(args.out)
    recorded["convnext"] = export_unconvertible(args.out)
    rng = np.random.default_rng(SEED)
    for arch in ARCHITECTURES.values():
        pixels = rng.integers(0, 256, (arch.size, arch.size, 3), dtype=np.uint8)
        module = importlib.import_module(f"keras.applications.{arch.module}")
        theirs = np.asarray(module.preprocess_input(pixels.astype(np.float32)[np.newaxis].copy()))[0]
        ours = to_model_input(
            Image.fromarray(pixels), spec=InputSpec.for_mode(arch.preprocessing, arch.size, arch.size)
        )
        recorded["preprocess_input_max_abs_diff"][arch.name] = float(np.abs(theirs - ours).max())  # type: ignore[index]
    (args.out / "keras.json").write_text(json.dumps(recorded))
    progress(f"exported {', '.join(EXPORTED)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
