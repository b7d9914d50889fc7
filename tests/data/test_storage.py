"""Local storage: paths and file:// URIs, atomic writes, listing, joining, scheme errors."""

from __future__ import annotations

import os

import pytest

from active_finetuning.data import storage
from active_finetuning.errors import InputError


def test_schemes_and_join():
    assert storage.scheme_of("a/b.parquet") == "" and storage.scheme_of("C:/x") == ""
    assert storage.scheme_of("GS://b/x") == "gs" and storage.scheme_of("file:///x") == "file"
    assert storage.join("gs://b/runs/", "x", "/y.parquet") == "gs://b/runs/x/y.parquet"
    assert storage.join("file:///data", "m.parquet") == "file:///data/m.parquet"
    assert storage.join("out", "f.parquet") == "out/f.parquet"
    assert storage.parent("gs://b/runs/m.parquet") == "gs://b/runs"
    assert storage.resolve_relative("img/1.png", "gs://b/runs") == "gs://b/runs/img/1.png"
    assert storage.resolve_relative("gs://c/1.png", "gs://b/runs") == "gs://c/1.png"
    assert storage.split_gcs("gs://bucket/a/b") == ("bucket", "a/b")
    for uri in ("s3://b/x", "https://host/x", "hf://org/m"):
        with pytest.raises(InputError, match="unsupported URI scheme"):
            storage.read_bytes(uri)


def test_local_round_trip_list_and_file_uris(tmp_path):
    target = tmp_path / "deep" / "dir" / "a.bin"
    storage.write_bytes(str(target), b"abc")
    storage.write_bytes(target.as_uri().replace("a.bin", "b.bin"), b"def")
    assert storage.read_bytes(target.as_uri()) == b"abc"
    assert storage.exists(str(target)) and not storage.exists(str(tmp_path / "none"))
    assert storage.list_prefix(str(tmp_path / "deep")) == [str(target), str(target.with_name("b.bin"))]
    assert storage.list_prefix((tmp_path / "deep").as_uri()) == [target.as_uri(), target.with_name("b.bin").as_uri()]
    with storage.local_copy(str(target)) as path:
        assert path.read_bytes() == b"abc"
    storage.delete(str(target))
    assert not target.exists()


def test_atomic_output_leaves_nothing_on_failure_and_respects_overwrite(tmp_path):
    target = tmp_path / "out.parquet"
    with pytest.raises(RuntimeError):
        with storage.atomic_output(str(target)) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    storage.write_bytes(str(target), b"one")
    storage.write_bytes(str(target), b"two")
    with pytest.raises(InputError, match="already exists"):
        storage.write_bytes(str(target), b"three", overwrite=False)
    assert target.read_bytes() == b"two" and [p.name for p in tmp_path.iterdir()] == ["out.parquet"]


def test_missing_inputs_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        storage.read_bytes(str(tmp_path / "missing.bin"))
    with pytest.raises(InputError, match="does not exist"):
        storage.open_input(str(tmp_path / "missing.bin"))
    with pytest.raises(InputError, match="is not a folder"):
        storage.list_prefix(str(tmp_path / "nowhere"))
    with pytest.raises(InputError, match="names host"):
        storage.local_path("file://otherhost/x")


def test_arrow_inputs_hold_no_python_object(tmp_path):
    """Arrow's reader threads must never release a Python object: at interpreter shutdown that
    aborts the process (status 134), so arrow reads an OS file or its own copy of the bytes."""
    import sys

    import pyarrow as pa

    data = b"parquet bytes " * 1000
    before = sys.getrefcount(data)
    buffer = storage.arrow_buffer(data)
    assert sys.getrefcount(data) == before and buffer.to_pybytes() == data
    assert sys.getrefcount(data) == before
    target = tmp_path / "a.bin"
    target.write_bytes(data)
    for uri in (str(target), target.as_uri()):
        with storage.open_arrow_input(uri) as handle:
            assert isinstance(handle, pa.OSFile) and handle.read() == data
    with pytest.raises(InputError, match="does not exist"):
        storage.open_arrow_input(str(tmp_path / "missing.bin"))


def test_atomic_output_gives_the_artifact_a_umask_based_mode(tmp_path):
    import os

    from active_finetuning.data import storage

    target = tmp_path / "artifact.bin"
    old = os.umask(0o022)
    try:
        with storage.atomic_output(str(target)) as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(old)
    assert target.stat().st_mode & 0o777 == 0o644


def test_a_killed_writers_temporary_is_cleaned_by_the_next_write_and_no_other(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # that process has ended
    stale = tmp_path / f".f.parquet.{dead_pid}-abc123.tmp"
    live = tmp_path / f".f.parquet.{os.getppid()}-def456.tmp"  # a writer that is still running
    other = tmp_path / f".g.parquet.{dead_pid}-abc123.tmp"  # another output's
    legacy = tmp_path / ".f.parquet.k3j4h5.tmp"  # no pid in the name: cannot tell, left alone
    for path in (stale, live, other, legacy):
        path.write_bytes(b"")
    storage.write_bytes(str(tmp_path / "f.parquet"), b"data")
    assert (tmp_path / "f.parquet").read_bytes() == b"data"
    assert not stale.exists() and live.exists() and other.exists() and legacy.exists()


def test_outputs_are_checked_before_the_work(tmp_path):
    (tmp_path / "file").write_text("x")
    storage.check_output(str(tmp_path / "new" / "deeper" / "out.parquet"))  # folders are made when writing
    with pytest.raises(InputError, match="is a folder; give a file name"):
        storage.check_output(str(tmp_path))
    with pytest.raises(InputError, match="which is a file"):
        storage.check_output(str(tmp_path / "file" / "out.parquet"))
    with pytest.raises(InputError, match="is a file; give a folder"):
        storage.check_output(str(tmp_path / "file"), "--graph-cache", folder=True)
    with pytest.raises(InputError, match="is the input"):
        storage.check_output(f"file://{tmp_path}/file", "--out", [str(tmp_path / "." / "file")])
    storage.check_output("gs://bucket/out.parquet")
    with pytest.raises(InputError, match="refuses new files"):
        storage.check_output("/proc/out.parquet")
