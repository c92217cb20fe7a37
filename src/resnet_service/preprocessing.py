"""Upload bytes → the float32 tensor the model takes, exactly as the seed's Keras path makes it.

The seed does: PIL ``open`` → ``convert("RGB")`` when the mode is not RGB → ``resize((224, 224))`` →
``img_to_array`` → ``imagenet_utils.preprocess_input`` (caffe mode). A plain RGB upload goes through the same
PIL and numpy operations here, so the tensor is bit-identical; only images the seed handled badly (EXIF
rotation, alpha, 16-bit) take a different, documented route.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from resnet_service.errors import ImageTooLarge, InvalidImage, UnsupportedImageFormat

__all__ = [
    "INPUT_SIZE",
    "SUPPORTED_FORMATS",
    "Preprocessed",
    "decode_image",
    "to_model_input",
    "preprocess",
    "preprocess_image",
]

logger = logging.getLogger(__name__)

INPUT_SIZE = (224, 224)
SUPPORTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "GIF", "BMP", "WEBP", "TIFF"})
# imagenet_utils.preprocess_input(mode="caffe") subtracts these from the B, G, R channels.
# RESNET_RESIZE=fast: DCT-domain downscaling only for JPEGs at least 4× the input, and only down to 2× it, so
# the bicubic resize still has twice the pixels it needs.
FAST_DECODE_MIN_SIDE = 4 * INPUT_SIZE[0]
FAST_DECODE_TARGET = (2 * INPUT_SIZE[0], 2 * INPUT_SIZE[1])
CAFFE_BGR_MEAN = np.array([103.939, 116.779, 123.68], dtype=np.float32)
_CAFFE_MEAN_PLANE = np.broadcast_to(CAFFE_BGR_MEAN, (INPUT_SIZE[1], INPUT_SIZE[0], 3)).copy()

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


def decode_image(data: bytes, max_pixels: int, fast: bool = False) -> Image.Image:
    """Decode an upload to an upright RGB image, translating every Pillow failure into a ServiceError.

    ``fast`` lets a JPEG with both sides ≥ 896 decode at 1/2, 1/4 or 1/8 scale in the DCT domain
    (``Image.draft``), never below 448 on either side; the pixels then differ slightly from the seed's full decode.
    """
    return _decode(_open(data, max_pixels), fast)


def _decode(image: Image.Image, fast: bool) -> Image.Image:
    if fast and image.format in ("JPEG", "MPO") and min(image.size) >= FAST_DECODE_MIN_SIDE:
        image.draft(None, FAST_DECODE_TARGET)
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


def to_model_input(image: Image.Image, fast: bool = False) -> np.ndarray:
    """RGB image → float32 (224, 224, 3), as ``img_to_array`` + ``preprocess_input(mode="caffe")``."""
    # The seed calls resize() with Pillow's default filter (bicubic); keep it for Keras parity. In fast mode a
    # large image is first box-reduced by an integer factor, which Pillow does far faster than bicubic.
    resized = image.resize(INPUT_SIZE, reducing_gap=3.0 if fast else None)
    # Pillow swaps the channels into a contiguous BGR buffer, so numpy widens and centres it in one contiguous
    # pass, three times faster than through a reversed view; each element is still float32(x) - mean.
    bgr = Image.merge("RGB", resized.split()[::-1])
    return np.subtract(np.asarray(bgr), _CAFFE_MEAN_PLANE, dtype=np.float32)


def preprocess(data: bytes, max_pixels: int, fast: bool = False) -> np.ndarray:
    """Encoded image bytes → float32 (1, 224, 224, 3) ready for the model; ``fast`` is RESNET_RESIZE=fast."""
    return to_model_input(decode_image(data, max_pixels, fast), fast)[np.newaxis]


@dataclass(frozen=True)
class Preprocessed:
    """One upload, ready for the model, with the size it arrived at (for logs and metrics)."""

    tensor: np.ndarray
    width: int
    height: int


def preprocess_image(data: bytes, max_pixels: int, fast: bool = False) -> Preprocessed:
    """``preprocess``, also reporting the upload's width and height as stored in the file."""
    image = _open(data, max_pixels)
    width, height = image.size
    return Preprocessed(to_model_input(_decode(image, fast), fast)[np.newaxis], width, height)
