"""Starting a real local server for the tests (MLflow, Label Studio): a process in its own session,
its log under the test's folder, ready when its health URL answers 200, stopped with its children."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Callable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_server(command: list[str], root: Path, health_url: str, what: str, timeout: float, env=None,
                   ready: Callable[[], bool] | None = None):
    """Run ``command`` (cwd ``root``, output to ``root/server.log``) until ``health_url`` answers 200
    (or ``ready()`` is true); yield."""
    log = open(root / "server.log", "ab")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root,
                               start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{what} exited with {process.returncode}: "
                                   f"{(root / 'server.log').read_text()[-2000:]}")
            if ready is not None:
                if ready():
                    break
            else:
                try:
                    with urllib.request.urlopen(health_url, timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not answer on {health_url} within {timeout:.0f} s")
            time.sleep(0.5)
        yield
    finally:
        # the server's own process group: it holds the workers the server spawned
        with contextlib.suppress(ProcessLookupError):  # already gone: its own error is the one to see
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
