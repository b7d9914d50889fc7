"""A real MLflow tracking server on 127.0.0.1, started once per test session (sqlite backend).

``conftest.py`` imports this module so any test can ask for ``mlflow_server`` (its tracking URI).
Start-up takes about 20 s on two cores (one worker, job execution off; docs/design.md, "Services").
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import pytest

from tests.servers import free_port, running_server


@contextlib.contextmanager
def running_mlflow_server(root, port: int | None = None):
    """``mlflow server`` on 127.0.0.1 with its store under ``root`` (kept, so that a server started
    again on the same root and port finds its runs): yields (URI, port); stopped on exit."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
               "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1"]
    uri = f"http://127.0.0.1:{port}"
    with running_server(command, root, uri + "/health", "mlflow server", 150, env):
        yield uri, port


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> str:
    """The URI of a running ``mlflow server`` (proxied artifacts in a temporary directory)."""
    with running_mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as (uri, _):
        yield uri
