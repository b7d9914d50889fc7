"""URI handling in one place: local paths, ``file://`` URIs and ``gs://bucket/object`` on Google Cloud Storage.

Every artifact read or write goes through this module, so adding a scheme touches only this file.

* **Credentials** come from the environment only: Application Default Credentials (Workload
  Identity on a cluster, ``gcloud auth application-default login`` on a workstation). When
  ``STORAGE_EMULATOR_HOST`` is set (tests, a local emulator) the client is anonymous. Credentials are
  never taken from arguments and never logged.
* **Atomic writes.** A local write goes to a temporary name beside the target and is renamed into
  place. A GCS write is one upload request of the finished file (GCS makes an object visible only
  when its upload completes), guarded by a generation precondition: ``if_generation_match=0``
  (create-only) when the object does not exist, or the generation we just read when it does. So a
  killed process leaves no half object, and re-running a step overwrites its previous output, but
  two writers racing for one name do not silently overwrite each other: the loser gets an error.
  ``overwrite=False`` makes a write strictly create-only.
* **Retries.** Transient GCS errors (408, 429, 5xx, connection resets, truncated reads) are retried
  with exponential backoff (:data:`RETRY`). Uploads always carry a generation precondition, which
  makes them safe to retry; a retry that finds our own upload already in place (the first attempt
  succeeded but its answer was lost) is recognised by checksum and counts as success.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import functools
import glob
import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator
from urllib.parse import urlparse

from ..errors import InputError

LOCAL_SCHEMES = ("", "file")
GCS_SCHEME = "gs"
SUPPORTED_SCHEMES = LOCAL_SCHEMES + (GCS_SCHEME,)
EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
UPLOAD_CHUNK_BYTES = 16 * 1024 * 1024  # resumable uploads above this size, in chunks of it


def _default_retry():
    from google.cloud.storage.retry import DEFAULT_RETRY

    return DEFAULT_RETRY.with_delay(initial=0.5, maximum=16.0, multiplier=2.0).with_timeout(180.0)


#: The retry policy of every GCS call (google.api_core Retry); replace it to shorten or lengthen.
RETRY = None


def retry_policy():
    global RETRY
    if RETRY is None:
        RETRY = _default_retry()
    return RETRY


# ----------------------------------------------------------------------------------------------
# URIs


def scheme_of(uri: str) -> str:
    """The URI scheme in lower case ('' for a plain local path)."""
    uri = os.fspath(uri)
    if len(uri) > 1 and uri[1] == ":" and uri[0].isalpha():  # a Windows drive letter, not a scheme
        return ""
    return urlparse(uri).scheme.lower()


def is_local(uri: str) -> bool:
    return scheme_of(uri) in LOCAL_SCHEMES


def check_scheme(uri: str, what: str = "URI") -> str:
    """The scheme of ``uri``; an unsupported scheme is an :class:`InputError` naming it."""
    scheme = scheme_of(uri)
    if scheme not in SUPPORTED_SCHEMES:
        raise InputError(
            f"unsupported URI scheme {scheme!r} in {what} {os.fspath(uri)!r}; use a local path, a "
            "file:// URI or gs://bucket/object"
        )
    return scheme


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
        f"unsupported URI scheme {scheme!r} in {uri!r} here; this needs a local path or a file:// URI"
    )


def split_gcs(uri: str) -> tuple[str, str]:
    """``gs://bucket/a/b`` -> ``("bucket", "a/b")``."""
    parsed = urlparse(os.fspath(uri))
    if parsed.scheme.lower() != GCS_SCHEME or not parsed.netloc:
        raise InputError(f"{uri!r} is not a gs://bucket/object URI")
    return parsed.netloc, parsed.path.lstrip("/")


def join(base: str, *parts: str) -> str:
    """Join path parts onto a local path or a URI (``gs://b/p`` + ``x`` -> ``gs://b/p/x``)."""
    base = os.fspath(base)
    if is_local(base) and scheme_of(base) == "":
        return os.path.join(base, *parts)
    out = base
    for part in parts:
        out = out.rstrip("/") + "/" + part.lstrip("/")
    return out


def parent(uri: str) -> str:
    """The folder (prefix) that holds ``uri``."""
    uri = os.fspath(uri)
    if scheme_of(uri) == "":
        return os.path.dirname(uri) or "."
    head, _, _ = uri.rstrip("/").rpartition("/")
    return head


def resolve_relative(reference: str, base: str) -> str:
    """``reference`` as is when absolute or a URI, else relative to the folder ``base``."""
    if scheme_of(reference) != "" or os.path.isabs(reference):
        return reference
    return join(base, reference)


# ----------------------------------------------------------------------------------------------
# Google Cloud Storage client (one per process and endpoint)


def gcs_client():
    """A google-cloud-storage client: anonymous against an emulator, else Application Default Credentials."""
    return _client_for(os.environ.get(EMULATOR_ENV, ""), os.getpid())


@functools.lru_cache(maxsize=8)
def _client_for(emulator_host: str, pid: int):
    from google.cloud import storage as gcs

    if emulator_host:
        from google.auth.credentials import AnonymousCredentials

        return gcs.Client(project="emulator", credentials=AnonymousCredentials())
    try:
        return gcs.Client()
    except Exception as err:  # google.auth.exceptions.DefaultCredentialsError and friends
        raise InputError(
            "no Google Cloud credentials in the environment for gs:// URIs (Application Default "
            "Credentials / Workload Identity); run `gcloud auth application-default login` or give "
            f"the pod a service account ({type(err).__name__})"
        ) from None


def pyarrow_filesystem(uri: str):
    """A ``pyarrow.fs.GcsFileSystem`` and the ``bucket/object`` path for ``uri``.

    Against an emulator it is anonymous with the emulator's endpoint; pyarrow does not read
    ``STORAGE_EMULATOR_HOST`` by itself.
    """
    from pyarrow import fs as pafs

    bucket, name = split_gcs(uri)
    host = os.environ.get(EMULATOR_ENV, "")
    limit = datetime.timedelta(seconds=retry_policy().timeout or 180.0)
    if host:
        parsed = urlparse(host if "://" in host else f"http://{host}")
        gfs = pafs.GcsFileSystem(anonymous=True, scheme=parsed.scheme or "http", endpoint_override=parsed.netloc,
                                 retry_time_limit=limit)
    else:
        gfs = pafs.GcsFileSystem(retry_time_limit=limit)
    return gfs, f"{bucket}/{name}"


def _blob(uri: str):
    bucket, name = split_gcs(uri)
    if not name:
        raise InputError(f"{uri!r} names a bucket, not an object; add an object name")
    return gcs_client().bucket(bucket).blob(name)


def _gcs_error(uri: str, err: Exception, action: str) -> InputError:
    from google.api_core import exceptions as gexc

    if isinstance(err, gexc.NotFound):
        return InputError(f"{uri!r} does not exist (GCS: not found); check the bucket and object name")
    if isinstance(err, gexc.Forbidden):
        return InputError(f"no permission to {action} {uri!r}; give the service account access to the bucket")
    return InputError(f"could not {action} {uri!r} after retries: {type(err).__name__}: {err}")


# ----------------------------------------------------------------------------------------------
# reading


def exists(uri: str) -> bool:
    if check_scheme(uri) == GCS_SCHEME:
        bucket, name = split_gcs(uri)
        if not name:
            return gcs_client().bucket(bucket).exists(retry=retry_policy())
        return _blob(uri).exists(retry=retry_policy())
    return local_path(uri).exists()


def existing_file(uri: str) -> Path:
    """The local path of ``uri``; an :class:`InputError` when it is not an existing file."""
    path = local_path(uri)
    if not path.is_file():
        raise InputError(f"{os.fspath(uri)!r} does not exist or is not a file; check the path")
    return path


def read_bytes(uri: str) -> bytes:
    """The whole content of a file or object; a missing one is an :class:`InputError`."""
    if check_scheme(uri) == GCS_SCHEME:
        from google.api_core import exceptions as gexc

        try:  # download_as_bytes verifies the checksum, so a truncated read is an error, then retried
            return _blob(uri).download_as_bytes(retry=retry_policy())
        except (gexc.GoogleAPIError, OSError, ValueError) as err:
            raise _gcs_error(uri, err, "read") from None
    path = existing_file(uri)
    return path.read_bytes()


def open_input(uri: str):
    """A binary, seekable file object for reading ``uri``; a missing file is an :class:`InputError`."""
    if check_scheme(uri) == GCS_SCHEME:
        return io.BytesIO(read_bytes(uri))
    path = existing_file(uri)
    return open(path, "rb")


def open_arrow_input(uri: str):
    """A pyarrow file for reading ``uri`` that holds no Python object (a missing file is an
    :class:`InputError`).

    Arrow's reader threads release what they read from; releasing a Python object (a Python file,
    ``bytes``) needs the interpreter lock, and when that happens during interpreter shutdown the
    process aborts (``terminate called without an active exception``). An OS file, or GCS bytes
    copied into Arrow's own memory, never touches Python from those threads.
    """
    import pyarrow as pa

    if check_scheme(uri) == GCS_SCHEME:
        return pa.BufferReader(arrow_buffer(read_bytes(uri)))
    path = existing_file(uri)
    return pa.OSFile(os.fspath(path))


def arrow_buffer(data: bytes):
    """A copy of ``data`` in Arrow-owned memory (no reference to the Python object)."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    sink.write(data)
    return sink.getvalue()


@contextlib.contextmanager
def local_copy(uri: str) -> Iterator[Path]:
    """A local path with the content of ``uri``: the file itself, or a temporary download."""
    if check_scheme(uri) != GCS_SCHEME:
        path = existing_file(uri)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="af-download-") as folder:
        path = Path(folder) / (split_gcs(uri)[1].rsplit("/", 1)[-1] or "object")
        path.write_bytes(read_bytes(uri))
        yield path


def list_prefix(uri: str) -> list[str]:
    """Every file under a folder or ``gs://`` prefix (recursive), as sorted URIs of the same form."""
    if check_scheme(uri) == GCS_SCHEME:
        from google.api_core import exceptions as gexc

        bucket, prefix = split_gcs(uri)
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        try:
            names = [b.name for b in gcs_client().list_blobs(bucket, prefix=prefix or None, retry=retry_policy())]
        except gexc.GoogleAPIError as err:
            raise _gcs_error(uri, err, "list") from None
        return sorted(f"gs://{bucket}/{n}" for n in names if not n.endswith("/"))
    root = local_path(uri)
    if not root.is_dir():
        raise InputError(f"{os.fspath(uri)!r} is not a folder; check the path")
    found = [os.path.join(d, f) for d, _, files in os.walk(root) for f in files]
    if scheme_of(uri) == "file":
        return sorted(Path(p).as_uri() for p in found)
    return sorted(found)


# ----------------------------------------------------------------------------------------------
# writing


@contextlib.contextmanager
def atomic_output(uri: str, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary local path; on success its content becomes ``uri``, on error it is removed.

    Locally the temporary file lives in the target's directory so the final rename is atomic; on
    GCS the finished file is uploaded in one request (:func:`upload_file`).
    """
    if check_scheme(uri) == GCS_SCHEME:
        _blob(uri)  # validate the URI before any work is done
        with tempfile.TemporaryDirectory(prefix="af-upload-") as folder:
            tmp = Path(folder) / "artifact"
            yield tmp
            upload_file(tmp, uri, overwrite=overwrite)
        return
    target = local_path(uri)
    if not overwrite and target.exists():
        raise InputError(f"{os.fspath(uri)!r} already exists; choose another name or remove it")
    target.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale_temporaries(target)
    # the writer's pid in the name: a later run can tell a killed writer's leftover from a live one's
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}-", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.exists():  # mkstemp makes 0600 files: give the artifact the usual umask-based mode
            tmp.chmod(0o666 & ~_current_umask())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes(uri: str, data: bytes, overwrite: bool = True) -> None:
    """Write ``data`` to ``uri`` atomically."""
    with atomic_output(uri, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)


def upload_file(path: str | Path, uri: str, overwrite: bool = True) -> None:
    """Copy a local file to ``uri`` atomically (rename locally; one preconditioned upload on GCS)."""
    if check_scheme(uri) != GCS_SCHEME:
        with atomic_output(uri, overwrite=overwrite) as tmp:
            shutil.copyfile(path, tmp)
        return
    from google.api_core import exceptions as gexc

    blob = _blob(uri)
    try:
        current = blob.bucket.get_blob(blob.name, retry=retry_policy())
    except gexc.GoogleAPIError as err:
        raise _gcs_error(uri, err, "write") from None
    if current is not None and not overwrite:
        raise InputError(f"{uri!r} already exists; choose another name or remove it")
    generation = 0 if current is None else current.generation
    size = os.path.getsize(path)
    if size > UPLOAD_CHUNK_BYTES:
        blob.chunk_size = UPLOAD_CHUNK_BYTES  # a resumable upload: the object appears only at the end
    try:
        blob.upload_from_filename(os.fspath(path), if_generation_match=generation, retry=retry_policy(),
                                  checksum="crc32c")
    except gexc.PreconditionFailed:
        if _same_content(uri, path, previous_generation=generation):
            return  # an earlier attempt of this upload succeeded; its answer was lost
        raise InputError(
            f"{uri!r} was changed by another writer while this step wrote it; nothing of this run was "
            "written under that name — re-run the step"
        ) from None
    except (gexc.GoogleAPIError, OSError, ValueError) as err:
        raise _gcs_error(uri, err, "write") from None


def _same_content(uri: str, path: str | Path, previous_generation: int) -> bool:
    import google_crc32c

    blob = _blob(uri).bucket.get_blob(split_gcs(uri)[1], retry=retry_policy())
    if blob is None or blob.generation == previous_generation or not blob.crc32c:
        return False
    checksum = google_crc32c.Checksum()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            checksum.update(chunk)
    return base64.b64encode(checksum.digest()).decode() == blob.crc32c


def delete(uri: str) -> None:
    """Remove a file or object if it exists."""
    if check_scheme(uri) == GCS_SCHEME:
        from google.api_core import exceptions as gexc

        with contextlib.suppress(gexc.NotFound):
            _blob(uri).delete(retry=retry_policy())
        return
    with contextlib.suppress(FileNotFoundError):
        local_path(uri).unlink()


def _current_umask() -> int:
    """The process umask, read without changing it where the kernel reports it (Linux ≥ 4.7):
    setting it to read it would race with files other threads create meanwhile."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ----------------------------------------------------------------------------------------------
# checking an output location before the work


def check_output(uri: str, what: str = "--out", inputs: Iterable[str] = (), folder: bool = False) -> None:
    """Fail now, not after the work, when ``uri`` cannot be written: an unsupported scheme, a file
    where a folder is needed (or the reverse), a parent that is a file or not writable, or the same
    location as one of ``inputs`` (which the write would destroy). On GCS only the URI's form is
    checked here; permissions are the bucket's and are reported by the write itself."""
    scheme = check_scheme(uri, what)
    for source in inputs:
        if source and same_location(uri, source):
            raise InputError(f"{what} {uri!r} is the input {source!r}: writing it would destroy the input; "
                             "choose another output name")
    if scheme == GCS_SCHEME:
        split_gcs(uri)
        return
    target = local_path(uri)
    if target.exists():
        if folder and not target.is_dir():
            raise InputError(f"{what} {os.fspath(uri)!r} is a file; give a folder")
        if not folder and target.is_dir():
            raise InputError(f"{what} {os.fspath(uri)!r} is a folder; give a file name inside it")
    ancestor = target.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"{what} {os.fspath(uri)!r} is under {os.fspath(ancestor)!r}, which is a file; "
                         "choose another location")
    try:  # a real probe: permission bits do not tell for root, read-only mounts or kernel file systems
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as err:
        raise InputError(f"{what} {os.fspath(uri)!r} cannot be written: {os.fspath(ancestor)!r} refuses new files "
                         f"({err.strerror}); choose another location") from None


def same_location(first: str, second: str) -> bool:
    """Whether two URIs name the same file (local paths resolved, ``file://`` and plain alike)."""
    if scheme_of(first) == GCS_SCHEME or scheme_of(second) == GCS_SCHEME:
        return first.rstrip("/") == second.rstrip("/")
    try:
        return local_path(first).resolve() == local_path(second).resolve()
    except InputError:
        return False


def _clean_stale_temporaries(target: Path) -> None:
    """Remove temporaries of ``target`` left by a killed writer (``.<name>.<pid>-<random>.tmp`` whose
    process no longer runs); temporaries of other outputs, or of a live writer, are never touched."""
    for stale in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        owner = stale.name[len(target.name) + 2:].split("-", 1)[0]
        if not owner.isdigit() or int(owner) == os.getpid():
            continue
        try:
            os.kill(int(owner), 0)
        except ProcessLookupError:
            stale.unlink(missing_ok=True)
        except PermissionError:
            continue
