"""Upload bytes → the tensor the model takes, as its ``InputSpec`` (from the model's metadata) says.

For ResNet-50 that is what Keras does: PIL ``open`` → ``convert("RGB")`` when the mode is not RGB →
``resize((224, 224))`` → ``img_to_array`` → ``imagenet_utils.preprocess_input`` (caffe mode). A plain RGB upload
goes through the same PIL and numpy operations here, so the tensor is bit-identical; only images that path handles
badly (EXIF rotation, alpha, 16-bit) take a different, documented route. Other models get their own size, resize
filter, colour order, means and scales, and layout. A model that preprocesses in its own graph gets the resized
uint8 RGB pixels instead, and does the same arithmetic itself.
"""

from __future__ import annotations

import functools
import io
import logging
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from resnet_service.core.errors import ImageTooLarge, InvalidImage, UnsupportedImageFormat
from resnet_service.inference.model_contract import InputSpec

__all__ = [
    "RESNET50_INPUT",
    "SUPPORTED_FORMATS",
    "Preprocessed",
    "decode_image",
    "to_model_input",
    "preprocess",
    "preprocess_image",
]

logger = logging.getLogger(__name__)

SUPPORTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "GIF", "BMP", "WEBP", "TIFF"})
# Keras ResNet50's input: 224×224, caffe mode (BGR minus the ImageNet BGR means), bicubic resize.
RESNET50_INPUT = InputSpec()

_EXIF_ORIENTATION = 0x0112
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
# Brands in an ISO-BMFF "ftyp" box that mark HEIF/AVIF stills and sequences.
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis"})


def _unsupported_format_name(data: bytes) -> str | None:
    """Name the image format of bytes Pillow cannot open, so the client gets a 415 rather than a 400."""
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith((b"<svg", b"<?xml")) and b"<svg" in head:
        return "SVG"
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return "HEIF/AVIF"
    if data.startswith((b"\xff\x0a", b"\x00\x00\x00\x0cJXL ")):
        return "JPEG XL"
    return None


def _open(data: bytes, max_pixels: int) -> Image.Image:
    if not data:
        raise InvalidImage("the image is empty (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"the image has too many pixels: {exc}") from exc
    except Image.UnidentifiedImageError as exc:
        name = _unsupported_format_name(data)
        if name:
            raise UnsupportedImageFormat(
                f"{name} images are not supported; send {', '.join(sorted(SUPPORTED_FORMATS))}"
            ) from exc
        raise InvalidImage("the upload is not an image Pillow can identify") from exc
    except MemoryError:
        raise
    except Exception as exc:
        # Identifying tries every format's header parser, and some raise on bytes that only look like theirs
        # (IPTC: "illegal field length"): the upload is broken, not the server.
        raise InvalidImage(f"the upload is not an image Pillow can read ({type(exc).__name__}: {exc})") from exc
    if image.format not in SUPPORTED_FORMATS:
        raise UnsupportedImageFormat(
            f"{image.format} images are not supported; send {', '.join(sorted(SUPPORTED_FORMATS))}"
        )
    width, height = image.size
    # Image.open reads only the header, so this refuses a bomb before any pixel buffer is allocated.
    if width * height > max_pixels:
        raise ImageTooLarge(f"the image is {width}×{height} = {width * height} pixels; the limit is {max_pixels}")
    if width < 1 or height < 1:
        raise InvalidImage(f"the image has no pixels ({width}×{height})")
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in _SIXTEEN_BIT_MODES:
        # convert("RGB") clips 16-bit values at 255, which turns most photos white; scale to 8 bits instead.
        wide = np.asarray(image, dtype=np.float64)
        narrow = np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(narrow, mode="L").convert("RGB")
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        # convert("RGB") would show whatever colour hides under transparent pixels (often black); a photo
        # pasted on white is what a person sees in a browser.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def decode_image(data: bytes, max_pixels: int, fast: bool = False, spec: InputSpec = RESNET50_INPUT) -> Image.Image:
    """Decode an upload to an upright RGB image, translating every Pillow failure into a ServiceError.

    ``fast`` lets a JPEG with both sides at least 4× the model's input decode at 1/2, 1/4 or 1/8 scale in the DCT
    domain (``Image.draft``), never below 2× it, so the resize still has twice the pixels it needs; the pixels then
    differ slightly from a full decode.
    """
    return _decode(_open(data, max_pixels), fast, spec)


def _decode(image: Image.Image, fast: bool, spec: InputSpec) -> Image.Image:
    side = max(spec.height, spec.width)
    if fast and image.format in ("JPEG", "MPO") and min(image.size) >= 4 * side:
        image.draft(None, (2 * spec.width, 2 * spec.height))
    try:
        # Animations open on their first frame, which is the one classified.
        image.load()
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
        if orientation != 1:
            image = ImageOps.exif_transpose(image)
        return _to_rgb(image)
    except MemoryError:
        raise
    except Exception as exc:
        # Pillow's decoders raise OSError, SyntaxError, ValueError, struct.error and more on broken files;
        # every one of them means the upload is broken, not the server.
        raise InvalidImage(f"the image could not be decoded ({type(exc).__name__}: {exc})") from exc


@functools.lru_cache(maxsize=8)
def _mean_plane(height: int, width: int, mean: tuple[float, float, float]) -> np.ndarray:
    return np.broadcast_to(np.array(mean, dtype=np.float32), (height, width, 3)).copy()


def to_model_input(image: Image.Image, fast: bool = False, spec: InputSpec = RESNET50_INPUT) -> np.ndarray:
    """RGB image → ``spec.row_shape``: resized, then (float32) channels ordered, ``(pixel - mean) / std``, or
    (uint8 pixels) as it is."""
    # Pillow's default filter is bicubic, as Keras' own path used it; keep it for parity. In fast mode a large
    # image is first box-reduced by an integer factor, which Pillow does far faster than bicubic.
    resized = image.resize((spec.width, spec.height), spec.resample, reducing_gap=3.0 if fast else None)
    if spec.uint8_pixels:
        return np.asarray(resized)
    if spec.colour_order == "BGR":
        # Pillow swaps the channels into a contiguous buffer, so numpy widens and centres it in one contiguous
        # pass, three times faster than through a reversed view.
        resized = Image.merge("RGB", resized.split()[::-1])
    if spec.std == (1.0, 1.0, 1.0):
        # caffe and none: each element is float32(x) - mean, as Keras computes it.
        plane = _mean_plane(spec.height, spec.width, spec.mean)
        tensor = np.subtract(np.asarray(resized), plane, dtype=np.float32)
    else:
        tensor = np.asarray(resized, dtype=np.float32)
        tensor -= np.array(spec.mean, dtype=np.float32)
        tensor /= np.array(spec.std, dtype=np.float32)
    if spec.layout == "NCHW":
        return np.ascontiguousarray(tensor.transpose(2, 0, 1))
    return tensor


def preprocess(data: bytes, max_pixels: int, fast: bool = False, spec: InputSpec = RESNET50_INPUT) -> np.ndarray:
    """Encoded image bytes → (1, *spec.row_shape) ready for the model; ``fast`` is RESNET_RESIZE=fast."""
    return to_model_input(decode_image(data, max_pixels, fast, spec), fast, spec)[np.newaxis]


@dataclass(frozen=True)
class Preprocessed:
    """One upload, ready for the model, with the size it arrived at (for logs and metrics)."""

    tensor: np.ndarray
    width: int
    height: int


def preprocess_image(
    data: bytes, max_pixels: int, fast: bool = False, spec: InputSpec = RESNET50_INPUT
) -> Preprocessed:
    """``preprocess``, also reporting the upload's width and height as stored in the file."""
    image = _open(data, max_pixels)
    width, height = image.size
    return Preprocessed(to_model_input(_decode(image, fast, spec), fast, spec)[np.newaxis], width, height)
