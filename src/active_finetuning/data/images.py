"""Image decoding: encoded bytes in, an 8-bit RGB ``PIL.Image`` out, whatever the source mode.

Grayscale, palette, RGBA/LA and 16-bit images are converted, not rejected; a file that is not an
image, or is corrupt or truncated, is an :class:`InputError` that names the sample.
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np

from ..errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


#: Images above this many pixels are refused before they are decoded (a guard against decompression
#: bombs; PIL's own default). Raise it with ``--max-image-pixels`` or this environment variable,
#: which worker processes and pipeline steps inherit.
MAX_PIXELS_ENV = "ACTIVE_FINETUNING_MAX_IMAGE_PIXELS"
DEFAULT_MAX_PIXELS = 89_478_485


def max_image_pixels() -> int:
    text = os.environ.get(MAX_PIXELS_ENV, "")
    if not text:
        return DEFAULT_MAX_PIXELS
    if not text.isdigit() or int(text) < 1:
        raise InputError(f"{MAX_PIXELS_ENV} (--max-image-pixels) must be a positive integer, got {text!r}")
    return int(text)


def decode_image(data: bytes, sample_id: str):
    """Decode ``data`` into an RGB image, turned upright by its EXIF orientation (as cameras and phones
    record it; what training pipelines apply). A bad image raises :class:`InputError` naming ``sample_id``."""
    from PIL import Image, ImageOps

    if not data:
        raise InputError(f"image of sample_id {sample_id!r} is empty (0 bytes)")
    limit = max_image_pixels()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit applies, below
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                image = Image.open(io.BytesIO(data))
            finally:
                Image.MAX_IMAGE_PIXELS = saved
            width, height = image.size
            if width * height > limit:
                raise InputError(
                    f"image of sample_id {sample_id!r} is {width} × {height} = {width * height:,} pixels, above the "
                    f"limit of {limit:,} (a guard against decompression bombs); raise it with --max-image-pixels "
                    "if the image is trusted, or downscale it"
                )
            image.load()  # decode now: a truncated file fails here, not later in a worker
            image = ImageOps.exif_transpose(image)
    except InputError:
        raise
    except Exception as err:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ValueError ...
        raise InputError(
            f"image of sample_id {sample_id!r} cannot be decoded ({type(err).__name__}: {err}); it is "
            "corrupt, truncated or not an image"
        ) from None
    return to_rgb(image)


def to_rgb(image):
    """Convert any PIL mode to 8-bit RGB; 16-bit and 32-bit integer images are rescaled, not clipped."""
    from PIL import Image

    if image.mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        gray = np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        top = 1.0 if values.max(initial=0) <= 1.0 else 255.0
        gray = np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode == "RGB":
        return image
    return image.convert("RGB")


class ManifestImages:
    """The one image dataset (map-style): item k is the manifest row ``rows[k]``, decoded and
    transformed, with its target (``labels[k]``, or k itself when there are no labels: extraction
    keeps its order with it) and an error message; with ``digests=True`` also the digest of its
    encoded bytes (:func:`image_digest`). ``tolerate_bad=True`` (extraction with
    ``bad_images="skip"``) turns an unreadable image into a zero tensor and the message; otherwise
    it is raised."""

    def __init__(self, manifest, rows, transform, labels=None, tolerate_bad: bool = False,
                 shape: tuple[int, int] | None = None, digests: bool = False):
        self.manifest, self.rows, self.transform = manifest, np.asarray(rows, dtype=np.int64), transform
        self.labels, self.tolerate_bad, self.shape, self.digests = labels, tolerate_bad, shape, digests

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, k: int):
        import torch

        row = int(self.rows[k])
        target = k if self.labels is None else int(self.labels[k])
        digest = ""
        try:
            data = self.manifest.load_bytes(row)
            digest = image_digest(data) if self.digests else ""
            image = decode_image(data, str(self.manifest.sample_ids[row]))
        except InputError as err:
            if not self.tolerate_bad:
                raise
            item = torch.zeros(3, *self.shape), target, str(err)
        else:
            item = self.transform(image), target, ""
        return (*item, digest) if self.digests else item


def image_digest(data: bytes) -> str:
    """The content digest of an encoded image (BLAKE2b, 128 bits, hex): equal bytes, equal digest."""
    import hashlib

    return hashlib.blake2b(data, digest_size=16).hexdigest()
