"""Uploads a public image endpoint gets: broken files, bombs, and good-but-odd images, built at test time."""

from __future__ import annotations

import struct
import zlib

import numpy as np
from PIL import Image

from tests.support.images import encode, photo

SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header_only(width: int, height: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))


def png_with_a_few_pixels(width: int, height: int) -> bytes:
    """A valid PNG header claiming width × height, followed by one compressed row: a bomb's shape, 100 bytes."""
    row = zlib.compress(b"\x00" + b"\x00" * 3 * 16)
    return png_header_only(width, height) + png_chunk(b"IDAT", row) + png_chunk(b"IEND", b"")


def png_bomb(side: int = 30_000) -> bytes:
    """A complete, decodable 1-bit PNG of side × side black pixels: ~110 KB that would decode to side² bytes."""
    compressor = zlib.compressobj(9)
    row = b"\x00" + bytes((side + 7) // 8)  # filter byte, then the packed bits of one row
    pixels = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + png_chunk(b"IDAT", pixels) + png_chunk(b"IEND", b"")


def broken_uploads() -> dict[str, tuple[bytes, int, str]]:
    """Name → (file, status, error code) for uploads that are not an image the service classifies."""
    return {
        "empty": (b"", 400, "invalid_image"),
        "truncated-jpeg": (encode(photo("chelsea"), "JPEG")[:4000], 400, "invalid_image"),
        "random-bytes": (np.random.default_rng(1).bytes(5000), 400, "invalid_image"),
        "text": (b"hello, this is plain text and not an image\n" * 20, 400, "invalid_image"),
        "header-only-png": (png_header_only(64, 64), 400, "invalid_image"),
        "svg": (SVG, 415, "unsupported_image_format"),
        "bomb-header": (png_with_a_few_pixels(30_000, 30_000), 413, "image_too_large"),
    }


def odd_images() -> dict[str, bytes]:
    """Images that are unusual but valid: each must be classified (200)."""
    chelsea = photo("chelsea")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    palette = Image.new("P", (64, 64), 0)
    palette.putpalette([0, 0, 0] * 128 + [255, 0, 0] * 128)
    palette.paste(200, (32, 0, 64, 64))
    small = chelsea.resize((100, 80))
    return {
        "cmyk-jpeg": encode(photo("coffee").convert("CMYK"), "JPEG", quality=90),
        "16-bit-png": encode(Image.fromarray(np.asarray(chelsea.convert("L")).astype(np.uint16) * 257), "PNG"),
        "palette-with-transparency": encode(palette, "PNG", transparency=0),
        "animated-gif": encode(small, "GIF", save_all=True, append_images=[small.rotate(90)], duration=100),
        "exif-rotated-jpeg": encode(chelsea.transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif.tobytes()),
        "1x1-png": encode(Image.new("RGB", (1, 1), (10, 20, 30)), "PNG"),
    }
