"""What a model file says about itself, read back; what the service refuses; each preprocessing mode's arithmetic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resnet_service.core.errors import StartupError
from resnet_service.inference.labels import Labels
from resnet_service.inference.model_contract import (
    LEGACY_CAFFE,
    ContractDefaults,
    InputSpec,
    ModelContract,
    labels_digest,
    read_contract,
)
from resnet_service.inference.preprocessing import to_model_input

PATH = Path("model.onnx")
NAMES = ("cat", "dog", "owl")


def test_an_exported_contract_reads_back_as_written() -> None:
    written = ModelContract(InputSpec.for_mode("torch", 240, 260), Labels(NAMES), "EfficientNetB1")
    contract = read_contract(written.metadata(), ["batch", 240, 260, 3], 3, PATH)
    assert contract == written
    assert contract.input.row_shape == (240, 260, 3) and contract.input.colour_order == "RGB"


def test_means_scales_order_and_filter_come_from_the_file_not_the_mode() -> None:
    metadata = ModelContract(InputSpec.for_mode("tf", 8, 8), Labels(NAMES), "custom").metadata()
    metadata.update(mean="[1, 2, 3]", std="[4, 5, 6]", colour_order="BGR", resize_filter="bilinear")
    spec = read_contract(metadata, [None, 8, 8, 3], 3, PATH).input
    assert (spec.mean, spec.std, spec.colour_order, spec.resize_filter) == ((1, 2, 3), (4, 5, 6), "BGR", "bilinear")


def test_files_from_earlier_exports_are_resnet50_with_the_imagenet_classes() -> None:
    legacy = {"preprocessing": LEGACY_CAFFE + ", PIL bicubic 224x224", "input_size": "224"}
    contract = read_contract(legacy, ["batch", 224, 224, 3], 1000, PATH)
    assert contract.input == InputSpec() and contract.labels == Labels.load()


def test_a_file_that_does_not_describe_itself_is_refused_with_the_missing_keys() -> None:
    with pytest.raises(StartupError, match="has no input_size, preprocessing, labels.*RESNET_PREPROCESSING"):
        read_contract({"producer": "someone"}, ["N", 3, 224, 224], 1000, PATH)


def test_settings_describe_a_foreign_file_its_shape_gives_size_and_layout(tmp_path: Path) -> None:
    (tmp_path / "labels.txt").write_text("\n".join(NAMES))
    defaults = ContractDefaults("torch", str(tmp_path / "labels.txt"))
    contract = read_contract({}, ["N", 3, 32, 48], 3, PATH, defaults)
    assert contract.input == InputSpec.for_mode("torch", 32, 48, "NCHW") and contract.labels.names == NAMES
    imagenet = read_contract({}, ["N", 224, 224, 3], 1000, PATH, ContractDefaults("caffe", "imagenet"))
    assert imagenet.labels == Labels.load()
    with pytest.raises(StartupError, match="does not name its classes: set RESNET_LABELS"):
        read_contract({}, ["N", 3, 32, 48], 3, PATH, ContractDefaults("torch", None))
    with pytest.raises(StartupError, match="H and W fixed"):
        read_contract({}, ["N", 3, "h", "w"], 3, PATH, defaults)
    with pytest.raises(StartupError, match="has 3 outputs but names 1000"):
        read_contract({}, ["N", 3, 32, 48], 3, PATH, ContractDefaults("torch", "imagenet"))


def test_labels_that_disagree_with_their_digest_or_the_input_shape_are_refused() -> None:
    metadata = ModelContract(InputSpec(), Labels(NAMES), "ResNet50").metadata()
    with pytest.raises(StartupError, match="takes \\['N', 299, 299, 3\\], but its metadata says"):
        read_contract(metadata, ["N", 299, 299, 3], 3, PATH)
    metadata["labels"] = json.dumps(["cat", "dog", "emu"])
    with pytest.raises(StartupError, match="labels_sha256"):
        read_contract(metadata, ["N", 224, 224, 3], 3, PATH)
    metadata["labels_sha256"] = labels_digest(["cat", "dog", "emu"])
    assert read_contract(metadata, ["N", 224, 224, 3], 3, PATH).labels.names == ("cat", "dog", "emu")
    metadata["input_size"] = "224xwide"
    with pytest.raises(StartupError, match="HEIGHTxWIDTH"):
        read_contract(metadata, ["N", 224, 224, 3], 3, PATH)


@pytest.fixture
def image() -> Image.Image:
    pixels = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def test_each_mode_is_keras_preprocess_input_arithmetic(image: Image.Image) -> None:
    resized = np.asarray(image.resize((16, 12), Image.Resampling.BICUBIC), dtype=np.float32)
    expected = {
        "caffe": resized[..., ::-1] - np.float32([103.939, 116.779, 123.68]),
        "tf": resized / 127.5 - 1.0,
        "torch": (resized / 255.0 - np.float32([0.485, 0.456, 0.406])) / np.float32([0.229, 0.224, 0.225]),
        "none": resized,
    }
    for mode, wanted in expected.items():
        tensor = to_model_input(image, spec=InputSpec.for_mode(mode, 12, 16))  # type: ignore[arg-type]
        assert tensor.shape == (12, 16, 3) and tensor.dtype == np.float32
        assert np.abs(tensor - wanted).max() < 1e-5, mode
    nchw = to_model_input(image, spec=InputSpec.for_mode("torch", 12, 16, "NCHW"))
    assert nchw.shape == (3, 12, 16) and nchw.flags.c_contiguous
    assert np.array_equal(nchw, to_model_input(image, spec=InputSpec.for_mode("torch", 12, 16)).transpose(2, 0, 1))
