"""gs:// storage against a real fake-gcs-server on 127.0.0.1, including a proxy that injects faults."""

from __future__ import annotations

import http.client
import http.server
import io
import threading
from urllib.parse import urlparse

import numpy as np
import pyarrow.parquet as pq
import pytest

from active_finetuning.data import artifacts, storage
from active_finetuning.errors import InputError


def test_bytes_round_trip_exists_list_join(gcs_bucket):
    uri = storage.join(gcs_bucket, "runs", "a.bin")
    assert uri == f"{gcs_bucket}/runs/a.bin"
    assert not storage.exists(uri)
    storage.write_bytes(uri, b"hello")
    storage.write_bytes(storage.join(gcs_bucket, "runs/sub/b.bin"), b"x")
    storage.write_bytes(storage.join(gcs_bucket, "other.bin"), b"y")
    assert storage.exists(uri) and storage.read_bytes(uri) == b"hello"
    assert storage.list_prefix(storage.join(gcs_bucket, "runs")) == [uri, f"{gcs_bucket}/runs/sub/b.bin"]
    assert storage.open_input(uri).read() == b"hello"
    with storage.open_arrow_input(uri) as handle:
        assert handle.read() == b"hello"


def test_features_artifact_round_trip_and_pyarrow_filesystem(gcs_bucket):
    features = artifacts.FeatureTable.from_array(np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32),
                                                 metadata={"model": "m"})
    uri = f"{gcs_bucket}/features/f.parquet"
    artifacts.write_features(features, uri)
    back = artifacts.read_features(uri)
    assert back.identity() == features.identity() and back.metadata == {"model": "m"}
    filesystem, path = storage.pyarrow_filesystem(uri)
    assert pq.read_table(path, filesystem=filesystem).num_rows == 50


def test_rerun_overwrites_but_create_only_refuses(gcs_bucket):
    uri = f"{gcs_bucket}/out.bin"
    storage.write_bytes(uri, b"first")
    storage.write_bytes(uri, b"second")  # re-running a step replaces its output
    assert storage.read_bytes(uri) == b"second"
    with pytest.raises(InputError, match="already exists"):
        storage.write_bytes(uri, b"third", overwrite=False)
    assert storage.read_bytes(uri) == b"second"


def test_concurrent_writer_is_detected(gcs_bucket, monkeypatch):
    uri = f"{gcs_bucket}/raced.bin"
    storage.write_bytes(uri, b"v1")
    real_get_blob = type(storage.gcs_client().bucket("x")).get_blob

    def get_blob_then_someone_writes(bucket, name, **kwargs):
        seen = real_get_blob(bucket, name, **kwargs)
        bucket.blob(name).upload_from_string(b"other writer")  # lands between our read and our upload
        return seen

    monkeypatch.setattr(type(storage.gcs_client().bucket("x")), "get_blob", get_blob_then_someone_writes)
    with pytest.raises(InputError, match="another writer"):
        storage.write_bytes(uri, b"ours")
    monkeypatch.undo()
    assert storage.read_bytes(uri) == b"other writer"


def test_failed_step_leaves_nothing_and_errors_are_clear(gcs_bucket):
    uri = f"{gcs_bucket}/never.parquet"
    with pytest.raises(RuntimeError):
        with storage.atomic_output(uri) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed mid-way")
    assert not storage.exists(uri)
    with pytest.raises(InputError, match="does not exist"):
        storage.read_bytes(f"{gcs_bucket}/missing.bin")
    with pytest.raises(InputError, match="names a bucket"):
        storage.write_bytes(gcs_bucket, b"x")
    with pytest.raises(InputError, match="unsupported URI scheme 's3'"):
        storage.read_bytes("s3://bucket/x")


def test_large_upload_is_resumable_and_whole(gcs_bucket, monkeypatch):
    monkeypatch.setattr(storage, "UPLOAD_CHUNK_BYTES", 256 * 1024)
    data = np.random.default_rng(1).bytes(256 * 1024 * 3 + 17)
    uri = f"{gcs_bucket}/big.bin"
    storage.write_bytes(uri, data)
    assert storage.read_bytes(uri) == data


# ----------------------------------------------------------------------------------------------
# fault injection: an HTTP proxy in front of the emulator


class FaultyProxy:
    """Forwards HTTP requests to the emulator; ``plan(n, method, path)`` picks a fault for request n.

    Faults: ``"503"`` (answer 503, do not forward), ``"reset"`` (close the connection, do not
    forward), ``"lost-answer"`` (forward, then close without answering), ``"truncate"`` (forward,
    answer with half the body), ``None`` (forward faithfully).
    """

    def __init__(self, upstream: str, plan):
        self.upstream = urlparse(upstream).netloc
        self.plan = plan
        self.requests = 0
        self.faults: list[str] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _relay(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy._lock:
                    number = proxy.requests
                    proxy.requests += 1
                    fault = proxy.plan(number, self.command, self.path)
                    if fault:
                        proxy.faults.append(fault)
                if fault == "503":
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if fault == "reset":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                upstream = http.client.HTTPConnection(proxy.upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                upstream.request(self.command, self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                payload = answer.read()
                upstream.close()
                if fault == "lost-answer":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if fault == "truncate":
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _relay

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fast_retry(monkeypatch):
    from google.cloud.storage.retry import DEFAULT_RETRY

    monkeypatch.setattr(storage, "RETRY", DEFAULT_RETRY.with_delay(initial=0.01, maximum=0.05).with_timeout(2.0))


def _through(proxy, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)


def _parquet_bytes(rows: int) -> bytes:
    features = artifacts.FeatureTable.from_array(np.random.default_rng(2).standard_normal((rows, 16)).astype(np.float32))
    sink = io.BytesIO()
    pq.write_table(features.to_table(), sink)
    return sink.getvalue()


def test_artifact_arrives_whole_through_transient_faults(gcs_emulator, gcs_bucket, fast_retry, monkeypatch):
    cycle = ["503", None, "reset", None, "lost-answer", None, "truncate", None]
    proxy = FaultyProxy(gcs_emulator, lambda n, method, path: cycle[n % len(cycle)])
    try:
        _through(proxy, monkeypatch)
        features = artifacts.FeatureTable.from_array(np.random.default_rng(3).standard_normal((400, 32)).astype(np.float32))
        uri = f"{gcs_bucket}/faulty/features.parquet"
        for _ in range(2):  # a first write and a re-run that overwrites it
            artifacts.write_features(features, uri)
        assert artifacts.read_features(uri).identity() == features.identity()  # read through faults too
        payload = _parquet_bytes(300)
        for i in range(3):
            storage.write_bytes(f"{gcs_bucket}/faulty/{i}.parquet", payload)
            assert storage.read_bytes(f"{gcs_bucket}/faulty/{i}.parquet") == payload
    finally:
        proxy.close()
    assert {"503", "reset", "lost-answer", "truncate"} <= set(proxy.faults)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)  # check directly at the emulator
    assert artifacts.read_features(uri).identity() == features.identity()
    assert storage.list_prefix(f"{gcs_bucket}/faulty") == sorted(
        [uri] + [f"{gcs_bucket}/faulty/{i}.parquet" for i in range(3)])


def test_step_fails_cleanly_when_uploads_keep_failing(gcs_emulator, gcs_bucket, fast_retry, monkeypatch):
    def plan(n, method, path):
        return "503" if method in ("POST", "PUT") else None  # reads work, every upload fails

    proxy = FaultyProxy(gcs_emulator, plan)
    uri = f"{gcs_bucket}/never/features.parquet"
    try:
        _through(proxy, monkeypatch)
        features = artifacts.FeatureTable.from_array(np.ones((10, 4), np.float32))
        with pytest.raises(InputError, match="could not write"):
            artifacts.write_features(features, uri)
    finally:
        proxy.close()
    assert proxy.faults.count("503") >= 2  # it retried before giving up
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    assert not storage.exists(uri)
    assert storage.list_prefix(f"{gcs_bucket}/never") == []


def test_eight_concurrent_writers_to_one_object_leave_one_whole_write(gcs_bucket):
    """Load: 8 writers at once to the same object (the pipeline's parallelism). The object ends as
    exactly one writer's bytes, never a mix; a writer that lost the race is told so."""
    from concurrent.futures import ThreadPoolExecutor

    from active_finetuning.data import storage
    from active_finetuning.errors import InputError

    uri = f"{gcs_bucket}/contended/report.bin"
    payloads = [bytes([i]) * 300_000 for i in range(8)]

    def write(payload):
        try:
            storage.write_bytes(uri, payload)
            return "written"
        except InputError as err:
            return str(err)

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(write, payloads))
    assert storage.read_bytes(uri) in payloads
    assert "written" in outcomes
    for outcome in outcomes:
        assert outcome == "written" or "changed by another writer while this step wrote it" in outcome, outcome
