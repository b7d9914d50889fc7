"""Run the pipeline's steps in the project's image on this machine: ``kfp.local.DockerRunner``.

Any Docker-compatible API works: a Docker daemon, or podman's (``podman system service``), found through
``DOCKER_HOST`` as the docker SDK finds it. The steps run with the host's network (so a tracking server or
storage emulator on 127.0.0.1 answers) and see the run's work folder at the same path as here; every other
input must be remote (``gs://…``, ``http://…``): a local path outside the work folder is refused up front.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..errors import InputError

# the caller's variables a step needs: tracking, storage, annotation (a subprocess inherits them all;
# a container gets only these)
FORWARDED_PREFIXES = ("MLFLOW_", "STORAGE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT", "LABEL_STUDIO_", "TQDM_",
                      "HF_HUB_OFFLINE", "OMP_", "ACTIVE_FINETUNING_", "NO_PROXY", "no_proxy", "HTTP_PROXY",
                      "http_proxy", "HTTPS_PROXY", "https_proxy")


def forwarded_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """The caller's variables under :data:`FORWARDED_PREFIXES`, then ``extra``."""
    found = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_PREFIXES)}
    return {**found, **extra}


def check_visible(values: Mapping[str, Any], workdir: Path) -> None:
    """Refuse a parameter naming a local path that the steps' containers cannot see."""
    for name, value in values.items():
        if not name.endswith("_uri") or not isinstance(value, str) or not value:
            continue
        path = value.removeprefix("sqlite:///")
        if "://" in path:
            continue
        resolved = Path(path).resolve()
        if resolved != workdir and workdir not in resolved.parents:
            raise InputError(f"{name}={value!r} is a local path outside the work folder {str(workdir)!r}, which is "
                             "all the steps' containers see: use a gs:// (or http://) URI, or put it under the "
                             "work folder, or run without --in-containers")


def check_engine() -> None:
    """Refuse to start when no Docker-compatible API answers where the docker SDK looks (DOCKER_HOST)."""
    import docker

    try:
        docker.from_env().ping()
    except Exception as err:  # the SDK raises its own errors and those of requests
        where = os.environ.get("DOCKER_HOST", "the default Docker socket")
        raise InputError(f"no container engine answered at {where} ({type(err).__name__}): start Docker, or "
                         "podman's API (`podman system service --time=0 unix:///tmp/podman.sock` and "
                         "DOCKER_HOST=unix:///tmp/podman.sock)") from None


def _run_and_read_status(environment: Mapping[str, str]):
    """A replacement for kfp's ``run_docker_container`` that reads each step's real exit status.

    kfp 2.17.0 starts every step with ``auto_remove=True`` and, when the container is already gone at
    ``wait()``, assumes exit 0: a step that failed was logged SUCCESS and the failure surfaced later as
    "task '…' not found". Here the container is kept until its status is read, then removed."""
    from kfp.local import docker_task_handler

    def run_docker_container(client, image: str, command: list[str], volumes: dict[str, Any],
                             **run_args: Any) -> int:
        image = docker_task_handler.add_latest_tag_if_not_present(image=image)
        known = any(image in (found.tags + found.attrs.get("RepoDigests", [])) for found in client.images.list())
        if not known:
            print(f"Pulling image {image!r}")
            client.images.pull(image)
        # a task's own variables (kfp passes them as `environment`) go over the forwarded ones
        run_args["environment"] = {**environment, **(run_args.get("environment") or {})}
        run_args.pop("auto_remove", None)
        container = client.containers.run(image=image, command=command, volumes=volumes, detach=True,
                                          stdout=True, stderr=True, **run_args)
        try:
            for line in container.logs(stream=True, follow=True):
                print(line.decode(errors="replace"), end="")
            return int(container.wait()["StatusCode"])
        finally:
            container.remove(force=True)

    return run_docker_container


@contextlib.contextmanager
def container_runner(workdir: Path, environment: Mapping[str, str]) -> Iterator[Any]:
    """A ``kfp.local.DockerRunner`` for steps that read and write under ``workdir``, with kfp's exit-status
    handling replaced (see :func:`_run_and_read_status`) for as long as the context lasts."""
    import docker
    from kfp import local
    from kfp.local import docker_task_handler

    options: dict[str, Any] = {
        "network_mode": "host",
        "mounts": [docker.types.Mount(target=str(workdir), source=str(workdir), type="bind")],
    }
    env = dict(environment)
    if os.getuid() == 0:
        # root here: the steps keep the image's own non-root user, as on a cluster, and the folders they
        # write get opened to it
        for folder in (workdir, *(p for p in workdir.rglob("*") if p.is_dir())):
            folder.chmod(0o777)
    else:
        # the caller's own uid, so that what the steps write here stays the caller's
        options["user"] = f"{os.getuid()}:{os.getgid()}"
        env.setdefault("HOME", "/tmp")
    original = docker_task_handler.run_docker_container
    docker_task_handler.run_docker_container = _run_and_read_status(env)
    try:
        yield local.DockerRunner(**options)
    finally:
        docker_task_handler.run_docker_container = original
