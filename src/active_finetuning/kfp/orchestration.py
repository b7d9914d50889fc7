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
    log: Path | None = None


def _plain(text: str) -> str:
    """``text`` without the terminal colour codes kfp.local puts in its messages."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


_FINISHED = re.compile(r"Task '([^']+)' finished with status (\w+)")


@contextlib.contextmanager
def _steps_to_log(log: Path, report) -> Iterator[None]:
    """Send everything the steps print (kfp.local's executor records, thousands of lines) to ``log``;
    the terminal gets ``report(task, status)``'s line per finished step instead."""
    import sys
    import threading

    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "ab") as sink, open(log, "a", buffering=1) as text:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        streams = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = text  # for writers holding the Python streams rather than the descriptors
        done = threading.Event()

        def follow() -> None:
            with open(log, "rb") as source:
                source.seek(0, os.SEEK_END)
                while True:
                    line = source.readline()
                    if not line:
                        if done.is_set():
                            return
                        done.wait(0.5)
                        continue
                    found = _FINISHED.search(_plain(line.decode(errors="replace")))
                    if found:
                        os.write(saved[0], (report(found.group(1), found.group(2)) + "\n").encode())

        reader = threading.Thread(target=follow, daemon=True)
        reader.start()
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stdout, sys.stderr = streams
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            done.set()
            reader.join(timeout=5)  # it reads the log to its end before it stops
            for fd in saved:
                os.close(fd)


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


@contextlib.contextmanager
def _original_print() -> Iterator[None]:
    import builtins

    original = builtins.print
    try:
        yield
    finally:
        builtins.print = original


def run_locally(parameters: Mapping[str, Any], workdir: str | os.PathLike = "outputs/pipeline",
                quiet: bool = False, in_containers: bool = False) -> LocalRun:
    """Run the pipeline with ``kfp.local`` on this machine.

    Each step a subprocess of this environment (``kfp.local.SubprocessRunner``), or with
    ``in_containers`` a container of the project's image (``kfp.local.DockerRunner``; see
    :mod:`.containers`). ``quiet``: the steps' own output goes to ``<workdir>/pipeline.log`` and one
    line per finished step is printed instead."""
    from kfp import local

    from .config import check_parameters
    from .pipelines import active_finetuning_pipeline

    values, tracking_uri = local_defaults(check_parameters(parameters), workdir)
    root = Path(workdir).resolve() / "kfp"
    if in_containers:
        from .containers import check_engine, check_visible, container_runner, forwarded_environment

        check_visible(values, root.parent)
        check_engine()
    root.mkdir(parents=True, exist_ok=True)
    env = {"MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1",
           "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false", "TQDM_DISABLE": "1"}
    runners = container_runner(root.parent, forwarded_environment(env)) if in_containers \
        else contextlib.nullcontext(local.SubprocessRunner(use_venv=False))
    with runners as runner:
        local.init(runner=runner, pipeline_root=str(root), raise_on_error=True)
        log = root.parent / "pipeline.log" if quiet else None
        output = _run_steps(active_finetuning_pipeline, values, env, root, log)
    experiment = values.get("mlflow_experiment") or "active-finetuning"
    return LocalRun(output, tracking_uri, experiment, latest_study_run(tracking_uri, experiment), root, log)


def _run_steps(pipeline, values: dict[str, Any], env: dict[str, str], root: Path, log: Path | None) -> str:
    """Call ``pipeline`` under kfp.local; its steps' output to ``log`` when given. Returns its output."""
    finished = []

    def report(task: str, status: str) -> str:
        finished.append(task)
        return f"  [{len(finished):>3}] {task}: {status.lower()}"

    quieted = _steps_to_log(log, report) if log else contextlib.nullcontext()
    # kfp.local (2.17) indents its steps' prints by swapping builtins.print per task; with steps running
    # side by side the swaps unwind out of order and leave print indented: put it back afterwards
    with _environment(**env), warnings.catch_warnings(), quieted, _original_print():
        # the project image's name has no "python" in it, and resources are ignored locally
        warnings.filterwarnings("ignore", message=".*non-Python base image.*")
        warnings.filterwarnings("ignore", message=".*ignored.*")
        try:
            return pipeline(**values).output
        except RuntimeError as err:
            reason = _plain(str(err))
            where = f"in {log}" if log else "above"
            raise InputError(f"the pipeline failed: {reason} (the failing step's log is {where}; outputs under "
                             f"{root})") from None


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
    pipeline: str = "budget-study"  # which compiled pipeline (config.PIPELINE_CHOICES)


def _prepare(settings: ClusterSettings, parameters: Mapping[str, Any]):
    from .config import PIPELINE_CHOICES, check_parameters

    values = check_parameters(parameters, pipeline=settings.pipeline)
    client = kfp_client(settings.host, settings.namespace, settings.token)
    with tempfile.TemporaryDirectory() as tmp:
        name = PIPELINE_CHOICES[settings.pipeline]
        package = compile_pipeline(Path(tmp) / f"{name}.yaml", name=name)
        pipeline_id, version_id = upload(client, package, settings.pipeline_name, settings.version)
    experiment = client.create_experiment(settings.experiment, namespace=settings.namespace)
    return client, values, pipeline_id, version_id, experiment.experiment_id


def submit(settings: ClusterSettings, parameters: Mapping[str, Any], run_name: str | None = None) -> dict[str, str]:
    """Upload the pipeline as a new version and start one run of it; return ids and the run's URL."""
    client, values, pipeline_id, version_id, experiment_id = _prepare(settings, parameters)
    run_name = run_name or f"{settings.pipeline}-{datetime.datetime.now(datetime.timezone.utc):%Y%m%d-%H%M%S}"
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
