"""The keras.applications classifiers the export knows: each one's input size and ``preprocess_input`` mode.

The mode is what the architecture's own Keras module does in ``preprocess_input`` (the export's tests check each
against Keras itself); "none" means the model rescales its 0-255 RGB input inside.
"""

from __future__ import annotations

from dataclasses import dataclass

from resnet_service.inference.model_contract import PreprocessingMode

__all__ = ["Architecture", "ARCHITECTURES", "architecture"]


@dataclass(frozen=True)
class Architecture:
    name: str
    size: int
    preprocessing: PreprocessingMode
    # keras.applications.<module>.preprocess_input is the reference for the mode.
    module: str


def _family(module: str, mode: PreprocessingMode, sizes: dict[str, int]) -> list[Architecture]:
    return [Architecture(name, size, mode, module) for name, size in sizes.items()]


_ALL = [
    *_family("resnet", "caffe", {"ResNet50": 224, "ResNet101": 224, "ResNet152": 224}),
    *_family("resnet_v2", "tf", {"ResNet50V2": 224, "ResNet101V2": 224, "ResNet152V2": 224}),
    *_family("vgg16", "caffe", {"VGG16": 224}),
    *_family("vgg19", "caffe", {"VGG19": 224}),
    *_family("mobilenet", "tf", {"MobileNet": 224}),
    *_family("mobilenet_v2", "tf", {"MobileNetV2": 224}),
    *_family("mobilenet_v3", "none", {"MobileNetV3Small": 224, "MobileNetV3Large": 224}),
    *_family(
        "efficientnet",
        "none",
        {
            "EfficientNetB0": 224,
            "EfficientNetB1": 240,
            "EfficientNetB2": 260,
            "EfficientNetB3": 300,
            "EfficientNetB4": 380,
            "EfficientNetB5": 456,
            "EfficientNetB6": 528,
            "EfficientNetB7": 600,
        },
    ),
    *_family(
        "efficientnet_v2",
        "none",
        {
            "EfficientNetV2B0": 224,
            "EfficientNetV2B1": 240,
            "EfficientNetV2B2": 260,
            "EfficientNetV2B3": 300,
            "EfficientNetV2S": 384,
            "EfficientNetV2M": 480,
            "EfficientNetV2L": 480,
        },
    ),
    *_family(
        "convnext",
        "none",
        {"ConvNeXtTiny": 224, "ConvNeXtSmall": 224, "ConvNeXtBase": 224, "ConvNeXtLarge": 224, "ConvNeXtXLarge": 224},
    ),
    *_family("densenet", "torch", {"DenseNet121": 224, "DenseNet169": 224, "DenseNet201": 224}),
    *_family("inception_v3", "tf", {"InceptionV3": 299}),
    *_family("inception_resnet_v2", "tf", {"InceptionResNetV2": 299}),
    *_family("xception", "tf", {"Xception": 299}),
    *_family("nasnet", "tf", {"NASNetMobile": 224, "NASNetLarge": 331}),
]
ARCHITECTURES: dict[str, Architecture] = {arch.name: arch for arch in _ALL}


def architecture(name: str) -> Architecture:
    """The architecture called ``name`` (any case), or ValueError naming the known ones."""
    for known in ARCHITECTURES.values():
        if known.name.lower() == name.lower():
            return known
    raise ValueError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}")
