"""Real photos from scikit-image in the encodings users send, made at test time and never downloaded."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from PIL import Image
from skimage import data

PHOTOS: dict[str, Callable[[], np.ndarray]] = {
    "chelsea": data.chelsea,
    "coffee": data.coffee,
    "astronaut": data.astronaut,
    "rocket": data.rocket,
}


def photo(name: str) -> Image.Image:
    return Image.fromarray(PHOTOS[name]()).convert("RGB")


def encode(image: Image.Image, format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def parity_images() -> dict[str, bytes]:
    """Uploads whose tensor must equal the seed's Keras path element for element."""
    images: dict[str, bytes] = {}
    for name in PHOTOS:
        image = photo(name)
        images[f"{name}.jpg"] = encode(image, "JPEG", quality=90)
        images[f"{name}.png"] = encode(image, "PNG")
    chelsea, coffee = photo("chelsea"), photo("coffee")
    images["chelsea-progressive-444.jpg"] = encode(chelsea, "JPEG", quality=95, progressive=True, subsampling=0)
    images["chelsea.bmp"] = encode(chelsea, "BMP")
    images["chelsea.tiff"] = encode(chelsea, "TIFF")
    images["chelsea-lossless.webp"] = encode(chelsea, "WEBP", lossless=True)
    images["chelsea-lossy.webp"] = encode(chelsea, "WEBP", quality=80)
    images["chelsea-palette.gif"] = encode(chelsea.quantize(256), "GIF")
    images["coffee-grayscale.jpg"] = encode(coffee.convert("L"), "JPEG", quality=90)
    images["coffee-grayscale.png"] = encode(coffee.convert("L"), "PNG")
    images["coffee-1bit.png"] = encode(coffee.convert("1"), "PNG")
    images["coffee-tiny.png"] = encode(coffee.resize((7, 5)), "PNG")
    return images


def write_parity_images(directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, content in parity_images().items():
        paths[name] = directory / name
        paths[name].write_bytes(content)
    return paths


def write_calibration_images(directory: Path) -> list[Path]:
    """Every photo scikit-image ships, as JPEG and mirrored: 30 real images to calibrate INT8 on."""
    from resnet_service.export.convert import CALIBRATION_PHOTOS, skimage_photo

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in CALIBRATION_PHOTOS:
        image = skimage_photo(name)
        for variant, picture in (("", image), ("-mirrored", image.transpose(Image.Transpose.FLIP_LEFT_RIGHT))):
            path = directory / f"{name}{variant}.jpg"
            path.write_bytes(encode(picture, "JPEG", quality=90))
            paths.append(path)
    return paths


def image_tensor(triton: ModuleType, images: list[bytes]) -> Any:
    """The v2 protocol's ``image`` input holding ``images`` as BYTES, for ``triton``: tritonclient.http or .grpc."""
    tensor = triton.InferInput("image", [len(images)], "BYTES")
    return tensor.set_data_from_numpy(np.array(images, dtype=np.object_))
