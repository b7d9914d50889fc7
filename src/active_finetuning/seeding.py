"""The one place a seed becomes randomness.

Every random choice of the library draws from a generator made here from the user's ``seed`` (and,
for a stream of its own, a few more parts, e.g. an epoch), so that the same seed gives the same
result, and a resumed run the same randomness as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import random

import numpy as np

from .errors import InputError


def check_seed(seed, what: str = "seed") -> int:
    """A seed must be a non-negative integer (a whole float, as KFP passes numbers, is accepted)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer, float)) or not float(seed).is_integer() \
            or seed < 0:
        raise InputError(f"{what} must be a non-negative integer, got {seed!r}")
    return int(seed)


def derived_seed(seed: int, *stream) -> int:
    """A 63-bit seed for the stream ``(seed, *stream)``, independent of every other stream."""
    text = ":".join(str(part) for part in (seed, *stream))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1


def numpy_generator(seed: int, *stream) -> np.random.Generator:
    """NumPy's generator for ``seed`` (``default_rng(seed)``), or for a derived stream."""
    return np.random.default_rng(derived_seed(seed, *stream) if stream else seed)


def python_random(seed: int) -> random.Random:
    """Python's generator: ActiveFT's initial centroids are drawn with it, as the authors' script does."""
    return random.Random(seed)


def torch_generator(seed: int, *stream):
    import torch

    return torch.Generator().manual_seed(derived_seed(seed, *stream) if stream else seed)
