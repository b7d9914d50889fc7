"""Run the budget-study pipeline: compile it, run it on this machine (``kfp.local``), or hand it to
a Kubeflow Pipelines cluster as a run or a recurring run (``kfp.Client``).

The only module of the library that imports KFP (with the components and pipelines it ships).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..errors import InputError

PIPELINE = "active_finetuning_pipeline"


def compile_pipeline(out: str | os.PathLike | None = None, name: str = PIPELINE) -> Path:
    """Compile one pipeline to YAML (default: its committed spec beside the pipeline's module)."""
    from kfp import compiler

    from .pipelines import COMPILED, PIPELINES

    if name not in PIPELINES:
        raise InputError(f"unknown pipeline {name!r}; choose from {sorted(PIPELINES)}")
    path = Path(out) if out else COMPILED[name]
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(PIPELINES[name], str(path))
    return path


def compile_all(out_dir: str | os.PathLike | None = None) -> list[Path]:
    """Compile every pipeline, to ``out_dir/<name>.yaml`` or to the committed specs."""
    from .pipelines import PIPELINES

    return [compile_pipeline(Path(out_dir) / f"{name}.yaml" if out_dir else None, name) for name in PIPELINES]


# ----------------------------------------------------------------------------------------------
# on this machine


@dataclass
class LocalRun:
    markdown: str
    tracking_uri: str
    experiment: str
    parent_run_id: str | None
    pipeline_root: Path


def local_defaults(parameters: Mapping[str, Any], workdir: str | os.PathLike) -> tuple[dict[str, Any], str]:
    """The embedded defaults of a local run: a local folder as the bucket, a local MLflow store."""
    root = Path(workdir).resolve()
    values = dict(parameters)
    values.setdefault("results_uri", str(root / "bucket" / "results"))
    tracking_uri = values.get("mlflow_tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI") \
        or f"sqlite:///{root / 'mlflow.db'}"
    values["mlflow_tracking_uri"] = tracking_uri
    return values, tracking_uri


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Variables the component subprocesses inherit (kfp.local passes the environment on)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_locally(parameters: Mapping[str, Any], workdir: str | os.PathLike = "outputs/pipeline") -> LocalRun:
    """Run the pipeline with ``kfp.local.SubprocessRunner`` in this environment; each step a subprocess."""
    from kfp import local

    from .config import check_parameters
    from .pipelines import active_finetuning_pipeline

    values, tracking_uri = local_defaults(check_parameters(parameters), workdir)
    root = Path(workdir).resolve() / "kfp"
    root.mkdir(parents=True, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    env = {"MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1",
           "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false", "TQDM_DISABLE": "1"}
    with _environment(**env), warnings.catch_warnings():
        # the project image's name has no "python" in it, and resources are ignored locally
        warnings.filterwarnings("ignore", message=".*non-Python base image.*")
        warnings.filterwarnings("ignore", message=".*ignored.*")
        try:
            task = active_finetuning_pipeline(**values)
        except RuntimeError as err:
            reason = re.sub(r"\x1b\[[0-9;]*m", "", str(err))  # kfp.local colours its message
            raise InputError(f"the pipeline failed: {reason} (the failing step's log is above; outputs under "
                             f"{root})") from None
    experiment = values.get("mlflow_experiment") or "active-finetuning"
    return LocalRun(task.output, tracking_uri, experiment, latest_study_run(tracking_uri, experiment), root)


def latest_study_run(tracking_uri: str, experiment: str) -> str | None:
    """The newest parent run of a study in ``experiment``."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = client.search_runs([found.experiment_id], filter_string="tags.study = 'budget'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.run_id if runs else None


# ----------------------------------------------------------------------------------------------
# on a cluster


def kfp_client(host: str, namespace: str | None = None, token: str | None = None):
    """A ``kfp.Client`` for ``host``; an unreachable host fails naming it (the client asks /healthz first)."""
    import kfp

    try:
        return kfp.Client(host=host, namespace=namespace or "kubeflow", existing_token=token)
    except Exception as err:  # the client raises whatever its HTTP stack raised
        raise InputError(f"Kubeflow Pipelines at {host!r} did not answer: {err}") from err


def upload(client, package: Path, name: str, version: str | None = None) -> tuple[str, str]:
    """Upload ``package`` as a new version of pipeline ``name`` (created on first upload)."""
    version = version or f"{name}-{datetime.datetime.now(datetime.timezone.utc):%Y%m%d-%H%M%S}"
    pipeline_id = client.get_pipeline_id(name)
    if pipeline_id is None:  # the first upload creates the pipeline with this package as its one version
        pipeline = client.upload_pipeline(str(package), pipeline_name=name,
                                          description="active-finetuning budget study")
        versions = client.list_pipeline_versions(pipeline.pipeline_id).pipeline_versions or []
        if len(versions) != 1:
            raise InputError(f"pipeline {name!r} was created with {len(versions)} versions; expected 1")
        return pipeline.pipeline_id, versions[0].pipeline_version_id
    uploaded = client.upload_pipeline_version(str(package), pipeline_version_name=version, pipeline_id=pipeline_id)
    return pipeline_id, uploaded.pipeline_version_id


@dataclass
class ClusterSettings:
    host: str
    experiment: str = "active-finetuning"
    pipeline_name: str = "active-finetuning"
    version: str | None = None
    namespace: str | None = None
    token: str | None = None
    pipeline_root: str | None = None
    service_account: str | None = None
    enable_caching: bool | None = None


def _prepare(settings: ClusterSettings, parameters: Mapping[str, Any]):
    from .config import check_parameters

    values = check_parameters(parameters)
    client = kfp_client(settings.host, settings.namespace, settings.token)
    with tempfile.TemporaryDirectory() as tmp:
        package = compile_pipeline(Path(tmp) / "active_finetuning_pipeline.yaml")
        pipeline_id, version_id = upload(client, package, settings.pipeline_name, settings.version)
    experiment = client.create_experiment(settings.experiment, namespace=settings.namespace)
    return client, values, pipeline_id, version_id, experiment.experiment_id


def submit(settings: ClusterSettings, parameters: Mapping[str, Any], run_name: str | None = None) -> dict[str, str]:
    """Upload the pipeline as a new version and start one run of it; return ids and the run's URL."""
    client, values, pipeline_id, version_id, experiment_id = _prepare(settings, parameters)
    run_name = run_name or f"budget-study-{datetime.datetime.now(datetime.timezone.utc):%Y%m%d-%H%M%S}"
    run = client.run_pipeline(experiment_id, run_name, params=values, pipeline_id=pipeline_id,
                              version_id=version_id, pipeline_root=settings.pipeline_root,
                              enable_caching=settings.enable_caching, service_account=settings.service_account)
    return {"run_id": run.run_id, "pipeline_id": pipeline_id, "version_id": version_id,
            "experiment_id": experiment_id, "url": f"{settings.host.rstrip('/')}/#/runs/details/{run.run_id}"}


def schedule(settings: ClusterSettings, parameters: Mapping[str, Any], cron: str, name: str,
             max_concurrency: int = 1, description: str | None = None) -> dict[str, str]:
    """Upload the pipeline as a new version and create a recurring run of it on ``cron`` (6 fields)."""
    from .config import check_cron

    cron = check_cron(cron)
    client, values, pipeline_id, version_id, experiment_id = _prepare(settings, parameters)
    job = client.create_recurring_run(experiment_id, name, description=description, cron_expression=cron,
                                      max_concurrency=max_concurrency, no_catchup=True, params=values,
                                      pipeline_id=pipeline_id, version_id=version_id,
                                      pipeline_root=settings.pipeline_root, enable_caching=settings.enable_caching,
                                      service_account=settings.service_account)
    return {"recurring_run_id": job.recurring_run_id, "pipeline_id": pipeline_id, "version_id": version_id,
            "experiment_id": experiment_id, "cron": cron,
            "url": f"{settings.host.rstrip('/')}/#/recurringrun/details/{job.recurring_run_id}"}
