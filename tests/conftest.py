"""Shared fixtures: synthetic pools with known structure, and the CIFAR-10 fixture when present."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.gcs_fixtures import gcs_bucket, gcs_emulator  # noqa: F401  (a real GCS emulator)
from tests.labelstudio_fixtures import label_studio  # noqa: F401  (a real Label Studio server)
from tests.mlflow_fixtures import mlflow_server  # noqa: F401  (a real MLflow server fixture)
from tests.image_support import container_api  # noqa: F401  (Docker's or podman's API, for the image tests)

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_DATA = ROOT.parent / "shared" / "data" / "cifar10"


def gaussian_mixture(n: int, dim: int, clusters: int, spread: float = 0.5, seed: int = 0):
    """n samples from ``clusters`` Gaussian blobs: (features float32, cluster labels)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, dim))
    labels = rng.integers(0, clusters, n)
    features = centers[labels] + spread * rng.standard_normal((n, dim))
    return features.astype(np.float32), labels.astype(np.int64)


def unit_mixture(n=300, dim=8, clusters=5, spread=0.4, seed=0):
    """A Gaussian mixture's rows normalised as selectors see them: (unit float32 tensor, labels)."""
    from active_finetuning.selection.api import unit_rows

    features, labels = gaussian_mixture(n, dim, clusters, spread=spread, seed=seed)
    return unit_rows(features), labels


@pytest.fixture
def mixture():
    return gaussian_mixture(600, 16, 6)


@pytest.fixture(scope="session")
def cifar_dir() -> Path:
    if not (FIXTURE_DATA / "features-train.parquet").exists():
        pytest.skip("the CIFAR-10 fixture data is not beside the project (shared/data/cifar10)")
    return FIXTURE_DATA


def run_cli(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run the installed CLI in a subprocess (what a user or a component does)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "active_finetuning.cli", *args], capture_output=True,
                          text=True, env=full_env, timeout=timeout)


# Runs the CLI's ``main`` once per argument list read from standard input (JSON), in this one interpreter, and
# prints each run's exit status and standard error (JSON); an exception that escapes ``main`` is printed there
# as its traceback, as the command would print it.
_MANY_RUNS = """
import contextlib, io, json, sys, traceback
from active_finetuning.cli.main import main
results = []
for argv in json.load(sys.stdin):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit:  # as the interpreter ends a process: None is 0, a message is printed and 1
            code = 0 if exit.code is None else exit.code
            if not isinstance(code, int):
                print(code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 1
    results.append([code, err.getvalue()])
print(json.dumps(results))
"""


def run_cli_many(argvs: list[list[str]], timeout: int = 300) -> list[tuple[int, str]]:
    """Each argument list through the CLI's ``main``, one after the other in one subprocess (torch and the
    package load once for all of them): each run's exit status and standard error."""
    result = subprocess.run([sys.executable, "-c", _MANY_RUNS], input=json.dumps(argvs), capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr
    return [(code, err) for code, err in json.loads(result.stdout.splitlines()[-1])]


def with_threads(threads: int, function):
    """``function()`` with torch's thread count set to ``threads``, restored afterwards."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return function()
    finally:
        torch.set_num_threads(previous)
