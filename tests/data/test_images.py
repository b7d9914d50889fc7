"""Image decoding: the size guard says what it is and how to raise it; EXIF orientation is applied."""

import io

import numpy as np
import pytest

from active_finetuning.data.images import MAX_PIXELS_ENV, decode_image
from active_finetuning.errors import InputError


def _encode(image, fmt="PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def test_a_valid_huge_image_is_named_as_huge_not_corrupt_and_the_limit_can_be_raised(monkeypatch):
    from PIL import Image

    huge = _encode(Image.new("1", (12_000, 9_000)))  # 108 megapixels, a few kB as a PNG
    with pytest.raises(InputError) as caught:
        decode_image(huge, "scan-001")
    message = str(caught.value)
    assert "'scan-001' is 12000 × 9000 = 108,000,000 pixels, above the limit of 89,478,485" in message
    assert "--max-image-pixels" in message and "corrupt" not in message
    small = _encode(Image.new("RGB", (100, 60)))
    monkeypatch.setenv(MAX_PIXELS_ENV, "5000")
    with pytest.raises(InputError, match="above the limit of 5,000"):
        decode_image(small, "thumb")
    monkeypatch.setenv(MAX_PIXELS_ENV, "6000")
    assert decode_image(small, "thumb").size == (100, 60)


def test_exif_orientation_is_applied():
    from PIL import Image

    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = 255  # left half white
    image = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    decoded = decode_image(_encode(image, "JPEG", exif=exif.tobytes(), quality=95), "phone")
    assert decoded.size == (20, 40)  # upright: width and height swapped
    upright = np.asarray(decoded)
    assert upright[:15].mean() > 200 and upright[25:].mean() < 50  # the white half is now on top
    plain = decode_image(_encode(image, "JPEG", quality=95), "camera")
    assert plain.size == (40, 20)
