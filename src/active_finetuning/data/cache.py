"""Named arrays kept between runs in a directory (local or ``gs://``), one ``.npz`` file per key.

Selectors never do I/O: ``select`` opens the cache a parameter names and hands it to the selector
(ProbCover keeps its δ-ball graph here). Writes are atomic, so a crashed run leaves no partial file.
"""

from __future__ import annotations

import io

import numpy as np

from . import storage


class ArrayCache:
    def __init__(self, uri: str):
        storage.check_scheme(uri, "cache directory")
        self.uri = uri

    def _uri(self, key: str) -> str:
        return storage.join(self.uri, f"{key}.npz")

    def load(self, key: str) -> dict[str, np.ndarray] | None:
        """The arrays stored under ``key``, or None."""
        uri = self._uri(key)
        if not storage.exists(uri):
            return None
        with np.load(io.BytesIO(storage.read_bytes(uri))) as stored:
            return {name: stored[name] for name in stored.files}

    def save(self, key: str, **arrays: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        storage.write_bytes(self._uri(key), buffer.getvalue())
