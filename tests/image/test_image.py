"""The built image (opt-in, ``make test-image``): who it runs as, what it holds, and that every
component and the CLI work in it. The pipeline end to end in its containers is the e2e test's
``containers`` case (tests/kfp/test_pipeline_e2e.py)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.image_support import ENGINE, IMAGE, engine, forbidden_files, needs_image
from tests.openmp_display import waiting_settings


def _archive(files: dict[str, bytes]) -> io.BytesIO:
    """A docker-archive with one layer holding ``files``."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    outer = io.BytesIO()
    with tarfile.open(fileobj=outer, mode="w") as tar:
        info = tarfile.TarInfo("abc123/layer.tar")
        info.size = layer.tell()
        layer.seek(0)
        tar.addfile(info, layer)
    outer.seek(0)
    return outer


def test_the_layer_scan_finds_index_configuration_credentials_and_secret_bytes():
    ca = b"-----BEGIN CERTIFICATE-----\nplanted\n-----END CERTIFICATE-----\n"
    clean = {"opt/venv/bin/python": b"\x7fELF", "etc/ssl/certs/ca-certificates.crt": b"debian's own bundle"}
    assert forbidden_files(_archive(clean), {"ca-bundle": ca}) == []
    for planted in ("etc/pip.conf", "root/.config/pip/pip.conf", "home/app/.netrc", "run/secrets/pip-conf"):
        assert forbidden_files(_archive({**clean, planted: b"[global]\n"}), {}) == [f"abc123/layer.tar: {planted}"]
    copied = {**clean, "usr/local/share/ca.crt": ca}
    assert forbidden_files(_archive(copied), {"ca-bundle": ca}) == [
        "abc123/layer.tar: usr/local/share/ca.crt holds ca-bundle"]


@pytest.mark.image
@needs_image
def test_runs_as_its_non_root_user_and_prints_the_cli_help():
    config = json.loads(engine("image", "inspect", IMAGE).stdout)[0]
    user = config.get("Config", {}).get("User") or config.get("User")
    assert user == "10001:10001", user
    assert engine("run", "--rm", IMAGE, "id", "-u").stdout.strip() == "10001"
    shown = engine("run", "--rm", IMAGE).stdout  # the image's default command
    assert "usage: active-finetuning" in shown and "select" in shown


@pytest.mark.image
@needs_image
def test_every_component_imports_and_the_installed_set_is_consistent():
    program = ("import importlib, active_finetuning.kfp.components as c\n"
               "for name in c.__all__:\n"
               "    component = getattr(c, name)\n"
               "    assert component.component_spec.implementation.container.image, name\n"
               "import torch, torchvision, timm, mlflow, kfp, kfp.kubernetes, google.cloud.storage, pyarrow\n"
               "print(len(c.__all__), torch.__version__, kfp.__version__)")
    printed = engine("run", "--rm", IMAGE, "python", "-c", program).stdout.split()
    from active_finetuning.kfp import components

    assert printed[0] == str(len(components.__all__)) and printed[2] == "2.17.0"
    assert engine("run", "--rm", IMAGE, "pip", "check").returncode == 0


@pytest.mark.image
@needs_image
def test_a_component_process_waits_for_openmp_work_as_the_command_line_does():
    from active_finetuning.resources import OPENMP_WAITING

    # a component runs in the KFP executor's Python process: only the image's environment reaches it
    program = "import torch; torch.ones(1 << 20).sum()"
    shown = engine("run", "--rm", "-e", "OMP_DISPLAY_ENV=VERBOSE", IMAGE, "python", "-c", program).stderr
    assert waiting_settings(shown) == OPENMP_WAITING, shown


@pytest.mark.image
@needs_image
def test_no_layer_holds_the_build_machines_index_configuration_or_credentials():
    # the build secrets make-test-image passed (the CA bundle, a pip configuration): their bytes in no layer
    secrets = {Path(p).name: Path(p).read_bytes()
               for p in os.environ.get("ACTIVE_FINETUNING_TEST_SECRETS", "").split(os.pathsep) if p}
    save = [ENGINE, "save", IMAGE] + (["--format", "docker-archive"] if ENGINE == "podman" else [])
    with subprocess.Popen(save, stdout=subprocess.PIPE) as process:
        found = forbidden_files(process.stdout, secrets)
    assert process.returncode == 0
    assert found == []
    config = json.loads(engine("image", "inspect", IMAGE).stdout)[0]
    environment = config.get("Config", {}).get("Env") or []
    assert not [v for v in environment if v.split("=")[0] in
                ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_CERT", "PIP_CONFIG_FILE", "PIP_FIND_LINKS")]


@pytest.mark.image
@needs_image
def test_a_failing_step_in_a_container_fails_the_run_and_is_named(gcs_bucket, container_api, tmp_path, capfd):
    # kfp 2.17's DockerRunner would log this step SUCCESS (its container auto-removed before wait()) and fail
    # later with "task '…' not found"; the project's runner reads the real exit status
    from active_finetuning.errors import InputError
    from active_finetuning.kfp.orchestration import run_locally

    parameters = {"manifest_uri": f"{gcs_bucket}/no-such-pool", "test_manifest_uri": f"{gcs_bucket}/none.parquet",
                  "model_name": "test_efficientnet", "methods": ["random"], "budgets": ["4"], "seeds": [0]}
    with pytest.raises(InputError) as failed:
        run_locally(parameters, workdir=tmp_path / "run", quiet=True, in_containers=True)
    message = str(failed.value)
    assert "build-manifest" in message and "FAILURE" in message.upper() and "not found" not in message
    terminal = capfd.readouterr().out
    assert "build-manifest: failure" in terminal and "build-manifest: success" not in terminal
    assert "no-such-pool" in (tmp_path / "run" / "pipeline.log").read_text()  # the step's own error, logged
