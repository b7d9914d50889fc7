"""Image decoding: encoded bytes in, an 8-bit RGB ``PIL.Image`` out, whatever the source mode.

Grayscale, palette, RGBA/LA and 16-bit images are converted, not rejected; a file that is not an
image, or is corrupt or truncated, is an :class:`InputError` that names the sample.
"""

from __future__ import annotations

import io
import warnings

import numpy as np

from ..errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def decode_image(data: bytes, sample_id: str):
    """Decode ``data`` into an RGB image; a bad image raises :class:`InputError` naming ``sample_id``."""
    from PIL import Image

    if not data:
        raise InputError(f"image of sample_id {sample_id!r} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image.load()  # decode now: a truncated file fails here, not later in a worker
    except Exception as err:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ValueError ...
        raise InputError(
            f"image of sample_id {sample_id!r} cannot be decoded ({type(err).__name__}: {err}); it is "
            "corrupt, truncated or not an image — fix or drop it, or use --on-bad-image skip"
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
    keeps its order with it) and an error message. ``tolerate_bad=True`` (extraction with
    ``bad_images="skip"``) turns an undecodable image into a zero tensor and the message; otherwise
    it is raised."""

    def __init__(self, manifest, rows, transform, labels=None, tolerate_bad: bool = False,
                 shape: tuple[int, int] | None = None):
        self.manifest, self.rows, self.transform = manifest, np.asarray(rows, dtype=np.int64), transform
        self.labels, self.tolerate_bad, self.shape = labels, tolerate_bad, shape

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, k: int):
        import torch

        row = int(self.rows[k])
        target = k if self.labels is None else int(self.labels[k])
        try:
            image = decode_image(self.manifest.load_bytes(row), str(self.manifest.sample_ids[row]))
        except InputError as err:
            if not self.tolerate_bad:
                raise
            return torch.zeros(3, *self.shape), target, str(err)
        return self.transform(image), target, ""
