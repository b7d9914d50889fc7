"""A real Label Studio server on 127.0.0.1 (sqlite), started once per test session.

Label Studio lives in its own virtual environment, ``.venv-label-studio`` (``make label-studio``;
``make test`` makes it): its Django stack and pins do not belong in the project's. Without it the
tests that need the server skip, except under CI, where they fail. Migrating a fresh sqlite database
takes about 40 s on two cores, so ``make label-studio`` migrates one once (``migrated-data`` in that
environment) and each server starts on a copy of it, in about 5 s; without it, the server migrates its own.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path

import pytest

from tests.servers import free_port, running_server

ROOT = Path(__file__).resolve().parents[1]
# Label Studio's own environment (``make label-studio``).
LABEL_STUDIO_ENV = ROOT / ".venv-label-studio"


def label_studio_program() -> str | None:
    local = LABEL_STUDIO_ENV / "bin" / "label-studio"
    return str(local) if local.exists() else shutil.which("label-studio")


def migrated_data() -> Path | None:
    """The data folder ``make label-studio`` migrated, if there is one."""
    folder = LABEL_STUDIO_ENV / "migrated-data"
    return folder if (folder / "label_studio.sqlite3").is_file() else None


@contextlib.contextmanager
def running_label_studio(root):
    """``label-studio start`` with its data under ``root``: yields (URL, API key); stopped on exit."""
    root = Path(root)
    template = migrated_data()
    if template is not None and not (root / "data").exists():
        shutil.copytree(template, root / "data")  # the user and its key are made at start, as without it
    port, key = free_port(), secrets.token_hex(20)
    env = {**os.environ, "LATEST_VERSION_CHECK": "false", "COLLECT_ANALYTICS": "false"}
    if not env.get("CI"):  # Label Studio reads CI as a boolean and refuses an empty one (`make test` passes CI on)
        env.pop("CI", None)
    command = [label_studio_program(), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port),
               "--host", f"http://127.0.0.1:{port}", "--data-dir", str(root / "data"),
               "--username", "admin@example.com", "--password", secrets.token_hex(12), "--user-token", key,
               "--enable-legacy-api-token"]
    url = f"http://127.0.0.1:{port}"
    with running_server(command, root, url + "/health", "label-studio", 240, env):
        yield url, key


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory):
    """(URL, API key) of a running Label Studio server."""
    if label_studio_program() is None:
        if os.environ.get("CI"):
            pytest.fail("Label Studio is not installed: `make label-studio` (make test does it)")
        pytest.skip("Label Studio is not installed: run `make label-studio`")
    with running_label_studio(tmp_path_factory.mktemp("label-studio")) as server:
        yield server
