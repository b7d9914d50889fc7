"""A real MLflow tracking server on 127.0.0.1, started once per test session (sqlite backend).

``conftest.py`` imports this module so any test can ask for ``mlflow_server`` (its tracking URI).
Start-up takes about 20 s on two cores (one worker, job execution off; docs/design.md, "Services").
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_mlflow_server(root, port: int | None = None):
    """``mlflow server`` on 127.0.0.1 with its store under ``root`` (kept, so that a server started
    again on the same root and port finds its runs): yields (URI, port); stopped on exit."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    port = port or _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = open(root / "server.log", "ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 150
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {process.returncode}: "
                                   f"{(root / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(uri + "/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not answer on {uri} within 150 s")
            time.sleep(0.5)
        yield uri, port
    finally:
        # the server's own process group: it holds the uvicorn worker the server spawned
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> str:
    """The URI of a running ``mlflow server`` (proxied artifacts in a temporary directory)."""
    with running_mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as (uri, _):
        yield uri
