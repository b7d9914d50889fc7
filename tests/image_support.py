"""The built image under test (opt-in: ``make test-image`` builds it and names it in
ACTIVE_FINETUNING_TEST_IMAGE), the engine that holds it, and a Docker-compatible API for kfp.local."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from typing import IO

import pytest

from tests.servers import running_server

IMAGE = os.environ.get("ACTIVE_FINETUNING_TEST_IMAGE", "")
ENGINE = os.environ.get("ENGINE") or shutil.which("podman") and "podman" or "docker"
needs_image = pytest.mark.skipif(not IMAGE, reason="opt-in: `make test-image` builds the image and runs "
                                                    "these (podman or docker; 10-30 minutes, most of it the build)")


def engine(*args: str, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    """``ENGINE args…`` (podman or docker), output captured as text; raises on a non-zero exit."""
    return subprocess.run([ENGINE, *args], capture_output=True, text=True, timeout=timeout, check=True, **kwargs)


# what no layer may hold: package-index settings and credentials of the machine that built it
FORBIDDEN = ("etc/pip.conf", "etc/xdg/pip/", "root/.config/pip/", "root/.pip/", "home/app/.config/pip/",
             ".netrc", ".pypirc", ".git-credentials", ".docker/config.json", "run/secrets/")


def forbidden_files(archive: IO[bytes], secrets: dict[str, bytes]) -> list[str]:
    """Every file of every layer in a docker-archive stream (``docker save``) that is a package-index or
    credential file (:data:`FORBIDDEN`) or holds the bytes of one of ``secrets`` (name → content)."""
    sizes = {len(content): name for name, content in secrets.items()}
    found = []
    with tarfile.open(fileobj=archive, mode="r|") as outer:
        for entry in outer:
            if not entry.isfile() or not entry.name.endswith(".tar"):
                continue
            with tarfile.open(fileobj=outer.extractfile(entry), mode="r|") as layer:
                for member in layer:
                    path = member.name.removeprefix("./")
                    if member.isfile() and any(f"/{f}" in f"/{path}" for f in FORBIDDEN):
                        found.append(f"{entry.name}: {path}")
                    elif member.isfile() and member.size in sizes:
                        content = layer.extractfile(member).read()
                        found += [f"{entry.name}: {path} holds {name}"
                                  for name, secret in secrets.items() if content == secret]
    return found


@pytest.fixture(scope="session")
def container_api(tmp_path_factory) -> str:
    """DOCKER_HOST for kfp.local's DockerRunner: as set, or podman's API started for the session."""
    if os.environ.get("DOCKER_HOST") or ENGINE == "docker":
        yield os.environ.get("DOCKER_HOST", "")
        return
    root = tmp_path_factory.mktemp("podman-api")
    socket = f"unix://{root / 'podman.sock'}"
    saved = os.environ.get("DOCKER_HOST")
    with running_server([ENGINE, "system", "service", "--time=0", socket], root, "", "podman's API", 30,
                        ready=lambda: (root / "podman.sock").exists()):
        os.environ["DOCKER_HOST"] = socket
        try:
            yield socket
        finally:
            if saved is None:
                os.environ.pop("DOCKER_HOST", None)
            else:
                os.environ["DOCKER_HOST"] = saved
