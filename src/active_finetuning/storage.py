"""URI handling in one place: local paths and ``file://`` URIs.

Every artifact read or write goes through :func:`resolve`, so adding a scheme (``gs://``) touches
only this module. Writes are atomic: the bytes go to a temporary name beside the target and are
renamed into place only when complete, so a killed process never leaves a half artifact.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

from .errors import InputError

LOCAL_SCHEMES = ("", "file")


def scheme_of(uri: str) -> str:
    """The URI scheme in lower case ('' for a plain local path)."""
    uri = os.fspath(uri)
    if len(uri) > 1 and uri[1] == ":" and uri[0].isalpha():  # a Windows drive letter, not a scheme
        return ""
    return urlparse(uri).scheme.lower()


def local_path(uri: str) -> Path:
    """The local filesystem path a local URI names; rejects other schemes with a clear message."""
    uri = os.fspath(uri)
    scheme = scheme_of(uri)
    if scheme == "file":
        parsed = urlparse(uri)
        if parsed.netloc not in ("", "localhost"):
            raise InputError(f"file URI {uri!r} names host {parsed.netloc!r}; use file:///absolute/path")
        return Path(parsed.path)
    if scheme == "":
        return Path(uri)
    raise InputError(
        f"unsupported URI scheme {scheme!r} in {uri!r}; use a local path or a file:// URI"
    )


def exists(uri: str) -> bool:
    return local_path(uri).exists()


def open_input(uri: str):
    """A binary file object for reading ``uri``; a missing file is an :class:`InputError`."""
    path = local_path(uri)
    if not path.is_file():
        raise InputError(f"{uri!r} does not exist or is not a file; check the path")
    return open(path, "rb")


@contextlib.contextmanager
def atomic_output(uri: str) -> Iterator[Path]:
    """Yield a temporary local path; on success it is renamed to ``uri``, on error removed.

    The temporary file lives in the target's directory so the final rename is atomic.
    """
    target = local_path(uri)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
