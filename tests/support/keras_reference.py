"""Export the test model and record what the seed's Keras path gives for each test image.

Run in its own process by the test session: TensorFlow and its 7 GB export peak stay out of pytest's process.

    python tests/support/keras_reference.py --images DIR --out DIR
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from importlib import resources
from pathlib import Path

import numpy as np

SEED = 0


def seed_keras_input(path: Path) -> np.ndarray:
    """The seed's preprocessing, line for line: PIL → RGB if needed → resize → img_to_array → preprocess_input."""
    from keras.applications import imagenet_utils
    from keras.utils import img_to_array
    from PIL import Image

    image = Image.open(path)
    if image.mode != "RGB":
        image = image.convert("RGB")
    image = image.resize((224, 224))
    array = np.expand_dims(img_to_array(image), axis=0)
    return imagenet_utils.preprocess_input(array)


def use_packaged_class_index() -> None:
    """Give decode_predictions the packaged class index, which it would otherwise download.

    The shared copy is the canonical content re-formatted, so Keras' md5 check on a cached file would refuse it;
    decode_predictions reads the module global CLASS_INDEX when it is set.
    """
    from keras.src.applications import imagenet_utils

    packaged = resources.files("resnet_service").joinpath("data/imagenet_class_index.json")
    imagenet_utils.CLASS_INDEX = json.loads(packaged.read_text("utf-8"))


FINETUNED_LABELS = ("tabby", "tiger", "siamese", "persian", "sphynx", "lynx", "ocelot")


def export_finetuned(model: object, out: Path, progress: object) -> None:
    """A user's fine-tuned classifier, as docs/model.md shows it: ResNet50's features under a new 7-class head, saved
    with model.save and exported with --model and --labels; and the same with a label file one name short."""
    import keras

    from resnet_service.export.convert import main as export_main

    features = model.get_layer("avg_pool").output  # type: ignore[attr-defined]
    head = keras.layers.Dense(len(FINETUNED_LABELS), activation="softmax", name="cats")
    finetuned = keras.Model(model.input, head(features))  # type: ignore[attr-defined]
    # The randomised ImageNet classifier's first columns: logits with a spread, so a top 5 means something.
    kernel, bias = model.get_layer("predictions").get_weights()  # type: ignore[attr-defined]
    head.set_weights([kernel[:, : len(FINETUNED_LABELS)], bias[: len(FINETUNED_LABELS)]])
    finetuned.save(out / "cats.keras")
    (out / "cats.txt").write_text("\n".join(FINETUNED_LABELS) + "\n")
    (out / "cats-short.txt").write_text("\n".join(FINETUNED_LABELS[:-1]) + "\n")
    base = ["--model", str(out / "cats.keras"), "--seed", str(SEED)]
    codes = {
        "cats": export_main([*base, "--labels", str(out / "cats.txt"), "--output", str(out / "cats.onnx")]),
        "short": export_main([*base, "--labels", str(out / "cats-short.txt"), "--output", str(out / "short.onnx")]),
        "unlabelled": export_main([*base, "--output", str(out / "unlabelled.onnx")]),
    }
    (out / "finetuned.json").write_text(json.dumps(codes))
    progress(f"exported the fine-tuned model: {codes}")  # type: ignore[operator]


def save_notop_weights(model: object, out: Path) -> None:
    """The random ResNet50's weights without its classifier, where docs/model.md's example loads ImageNet's.

    Keras cannot download the ImageNet weights here; ResNet50(weights=FILE, include_top=False) loads these.
    """
    import keras

    notop = keras.applications.ResNet50(weights=None, include_top=False, pooling="avg")
    for layer in notop.layers:
        if layer.get_weights():
            layer.set_weights(model.get_layer(layer.name).get_weights())  # type: ignore[attr-defined]
    notop.save_weights(out / "resnet50_notop.weights.h5")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from resnet_service.export.convert import prepare_tensorflow

    prepare_tensorflow()
    use_packaged_class_index()

    from keras.applications.imagenet_utils import decode_predictions

    from resnet_service.export.convert import convert_and_verify, load_keras_model

    def progress(message: str) -> None:
        print(f"[reference] {message}", file=sys.stderr, flush=True)

    model, weights = load_keras_model("random", SEED, progress)
    report = convert_and_verify(model, weights, args.out / "resnet50.onnx", 17, SEED, progress)
    (args.out / "report.json").write_text(json.dumps(asdict(report), indent=2))
    half = convert_and_verify(model, weights, args.out / "resnet50.fp16.onnx", 17, SEED, progress, "fp16")
    (args.out / "report.fp16.json").write_text(json.dumps(asdict(half), indent=2))

    export_finetuned(model, args.out, progress)
    save_notop_weights(model, args.out)

    names = sorted(path.name for path in args.images.iterdir())
    inputs = np.concatenate([seed_keras_input(args.images / name) for name in names])
    probabilities = model.predict(inputs, verbose=0)
    top5 = {
        name: [[label, float(p)] for _, label, p in decoded]
        for name, decoded in zip(names, decode_predictions(probabilities, top=5), strict=True)
    }
    np.savez(args.out / "keras.npz", names=np.array(names), inputs=inputs, probabilities=probabilities)
    (args.out / "keras_top5.json").write_text(json.dumps(top5, indent=2))
    progress(f"recorded Keras outputs for {len(names)} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
