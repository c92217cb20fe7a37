"""Preprocessing: bit-identical to the seed's Keras path for plain images, sensible for odd ones, typed errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from resnet_service.core.errors import ImageTooLarge, InvalidImage, UnsupportedImageFormat
from resnet_service.inference.preprocessing import RESNET50_INPUT, decode_image, preprocess
from tests.conftest import KerasReference
from tests.support.hostile import png_header_only, png_with_a_few_pixels
from tests.support.images import encode, photo

LIMIT = 89_478_485


def test_every_encoding_equals_the_seed_keras_tensor_element_for_element(keras_reference: KerasReference) -> None:
    assert len(keras_reference.images) >= 15
    for name, path in keras_reference.images.items():
        ours = preprocess(path.read_bytes(), LIMIT)
        assert ours.dtype == np.float32 and ours.shape == (1, 224, 224, 3), name
        assert np.array_equal(ours[0], keras_reference.inputs[name]), name


def _rgb_tensor(image: Image.Image) -> np.ndarray:
    return preprocess(encode(image.convert("RGB"), "PNG"), LIMIT)


def _white_pixel() -> np.ndarray:
    return np.float32(255.0) - np.float32(RESNET50_INPUT.mean)


def test_exif_rotated_photo_is_classified_upright() -> None:
    upright = photo("chelsea")
    stored_sideways = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    tagged = encode(stored_sideways, "PNG", exif=exif.tobytes())
    assert np.array_equal(preprocess(tagged, LIMIT), _rgb_tensor(upright))


def test_cmyk_jpeg_is_converted_to_rgb_close_to_the_original() -> None:
    original = photo("coffee")
    ours = preprocess(encode(original.convert("CMYK"), "JPEG", quality=95), LIMIT)
    assert float(np.abs(ours - _rgb_tensor(original)).mean()) < 4.0


def test_sixteen_bit_grayscale_is_scaled_to_eight_bits_not_clipped_to_white() -> None:
    gray = photo("coffee").convert("L")
    wide = Image.fromarray(np.asarray(gray).astype(np.uint16) * 257)
    assert wide.mode.startswith("I")
    assert np.array_equal(preprocess(encode(wide, "PNG"), LIMIT), _rgb_tensor(gray))


def test_transparent_pixels_of_a_palette_image_are_white() -> None:
    image = Image.new("P", (64, 64), 0)
    image.putpalette([0, 0, 0] * 128 + [255, 0, 0] * 128)
    image.paste(200, (32, 0, 64, 64))  # right half red
    tensor = preprocess(encode(image, "PNG", transparency=0), LIMIT)[0]
    assert np.array_equal(tensor[112, 10], _white_pixel())  # left half was transparent black
    assert np.array_equal(tensor[112, 200], np.float32([0, 0, 255]) - np.float32(RESNET50_INPUT.mean))


def test_rgba_hidden_colour_under_full_transparency_does_not_show() -> None:
    image = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    tensor = preprocess(encode(image, "PNG"), LIMIT)[0]
    assert np.array_equal(tensor, np.broadcast_to(_white_pixel(), tensor.shape))


def test_animated_gif_is_classified_by_its_first_frame() -> None:
    first, second = photo("chelsea").resize((100, 80)), photo("coffee").resize((100, 80))
    animated = encode(first, "GIF", save_all=True, append_images=[second], duration=100, loop=0)
    assert Image.open(__import__("io").BytesIO(animated)).n_frames == 2
    single = encode(first, "GIF")
    assert np.array_equal(preprocess(animated, LIMIT), preprocess(single, LIMIT))


def test_one_pixel_image_is_accepted() -> None:
    assert preprocess(encode(Image.new("RGB", (1, 1), (10, 20, 30)), "PNG"), LIMIT).shape == (1, 224, 224, 3)


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b"", InvalidImage),
        (encode(photo("chelsea"), "JPEG")[:4000], InvalidImage),
        (np.random.default_rng(1).bytes(5000), InvalidImage),
        (b"hello, this is plain text and not an image\n" * 20, InvalidImage),
        (png_header_only(64, 64), InvalidImage),
        (
            b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>',
            UnsupportedImageFormat,
        ),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", UnsupportedImageFormat),
        (encode(Image.new("RGB", (16, 16)), "ICO"), UnsupportedImageFormat),
        (encode(Image.new("RGB", (16, 16)), "PPM"), UnsupportedImageFormat),
        # Pillow's IPTC header parser raises OSError, not "unidentified", on these five bytes (found by the fuzzer).
        (b"\x1c\t\xef\xbf\xbd", InvalidImage),
    ],
    ids=["empty", "truncated-jpeg", "random-bytes", "text", "header-only-png", "svg", "heic", "ico", "ppm", "iptc"],
)
def test_bad_uploads_raise_their_typed_error(content: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        preprocess(content, LIMIT)


def test_decompression_bomb_is_refused_from_its_header_alone() -> None:
    # The file holds one row of pixels, so decoding it would fail as truncated: a 413 proves nothing was decoded.
    bomb = png_with_a_few_pixels(30_000, 30_000)
    assert len(bomb) < 200
    with pytest.raises(ImageTooLarge):
        preprocess(bomb, LIMIT)
    with pytest.raises(InvalidImage, match="decoded"):
        preprocess(png_with_a_few_pixels(3_000, 3_000), LIMIT)


def test_pixel_limit_is_the_configured_one() -> None:
    image = encode(Image.new("RGB", (100, 100)), "PNG")
    assert preprocess(image, 10_000).shape == (1, 224, 224, 3)
    with pytest.raises(ImageTooLarge, match="10000 pixels; the limit is 9999"):
        preprocess(image, 9_999)


def test_fast_resize_leaves_images_under_four_times_the_input_bit_identical() -> None:
    for size in ((451, 300), (880, 1000)):
        image = encode(photo("coffee").resize(size), "JPEG", quality=90)
        assert np.array_equal(preprocess(image, LIMIT, fast=True), preprocess(image, LIMIT))


def test_fast_resize_decodes_a_large_jpeg_at_reduced_scale_and_stays_close() -> None:
    large = encode(photo("chelsea").resize((4000, 3000), Image.Resampling.LANCZOS), "JPEG", quality=90)
    assert decode_image(large, LIMIT, fast=True).size == (1000, 750)  # 1/4 scale: the last one ≥ 448 per side
    assert decode_image(large, LIMIT).size == (4000, 3000)
    exact, fast = preprocess(large, LIMIT), preprocess(large, LIMIT, fast=True)
    assert not np.array_equal(exact, fast)
    assert float(np.abs(exact - fast).max()) <= 8.0 and float(np.abs(exact - fast).mean()) < 1.0
