"""MLflow tracking: one small API for runs, parameters, per-step metrics, figures and artifacts.

The tracking URI comes from the argument, else ``MLFLOW_TRACKING_URI``, else a local sqlite store
``sqlite:///<dir>/mlflow.db`` (MLflow 3 refuses the plain file store). ``mlflow`` is imported only
when a run starts. A remote server is checked first (``/health``, with retries and backoff), so an
unreachable server fails in seconds with a message naming the URI rather than after MLflow's own
minutes of retries.

    with start_run(experiment="cifar10", run_name="activeft-500") as run:
        run.log_params({"method": "activeft", "budget": 500})
        run.log_metrics({"train_loss": 0.7}, step=1)
        run.log_confusion_matrix(classes, matrix)

A parent/child layout (a pipeline run with one child per task, possibly in other processes):
``start_run(..., parent_run_id=parent.run_id)``.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from .errors import InputError

DEFAULT_EXPERIMENT = "active-finetuning"
KFP_RUN_ENV = "MLFLOW_RUN_ID"  # set by Kubeflow Pipelines when it creates each task's MLflow run
PARENT_TAG = "mlflow.parentRunId"


def resolve_tracking_uri(uri: str | None = None, local_dir: str | os.PathLike = ".") -> str:
    """The tracking URI to use: ``uri``, else ``MLFLOW_TRACKING_URI``, else sqlite in ``local_dir``."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return f"sqlite:///{Path(local_dir).resolve() / 'mlflow.db'}"
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    if scheme in ("", "file"):
        raise InputError(
            f"tracking URI {uri!r} names the MLflow file store, which MLflow 3 refuses; use "
            "sqlite:///path/mlflow.db or an http(s):// tracking server"
        )
    return uri


class _Unhealthy(RuntimeError):
    pass


def ping(uri: str, attempts: int = 4, backoff: float = 0.5, timeout: float = 5.0) -> None:
    """Wait for an http(s) tracking server's ``/health``, retried with exponential backoff by the
    same google-api-core ``Retry`` as every storage call; an :class:`InputError` naming ``uri`` if it
    never answers."""
    from google.api_core.retry import Retry, if_exception_type

    if not uri.lower().startswith(("http://", "https://")):
        return
    url = uri.rstrip("/") + "/health"
    tries: list[Exception] = []

    def health() -> None:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                if response.status == 200:
                    return
                error: Exception = _Unhealthy(f"HTTP {response.status}")
        except (urllib.error.URLError, OSError) as err:
            error = err
        tries.append(error)
        if len(tries) >= attempts:
            raise InputError(
                f"the MLflow tracking server at {uri!r} could not be reached after {attempts} attempts ({error}); "
                "start it, fix MLFLOW_TRACKING_URI / --tracking-uri, or run without tracking"
            )
        raise error

    retry = Retry(predicate=if_exception_type(urllib.error.URLError, OSError, _Unhealthy), initial=backoff,
                  multiplier=2.0, maximum=backoff * 2 ** attempts, timeout=None)
    retry(health)()


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name + "."))
        else:
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            flat[name] = text[:6000]  # MLflow's parameter value limit
    return flat


class Run:
    """An active MLflow run; every call is retried with backoff, then fails naming the URI."""

    def __init__(self, client, run_id: str, tracking_uri: str, attempts: int = 3, backoff: float = 1.0):
        self.client = client
        self.run_id = run_id
        self.tracking_uri = tracking_uri
        self.attempts = attempts
        self.backoff = backoff

    def _call(self, what: str, fn: Callable, *args, **kwargs):
        from mlflow.exceptions import MlflowException

        for attempt in range(self.attempts):
            try:
                return fn(*args, **kwargs)
            except (MlflowException, OSError) as err:
                code = getattr(err, "error_code", "")
                # a dataset two cells registered at the same moment: the server's get-or-create raced
                # (its unique constraint fired); the retry finds the row the other cell made
                raced = "UNIQUE constraint failed" in str(err)
                if code in ("INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "BAD_REQUEST") and not raced:
                    raise InputError(f"MLflow at {self.tracking_uri!r} refused {what}: {err}") from err
                if attempt + 1 == self.attempts:
                    raise InputError(
                        f"MLflow at {self.tracking_uri!r} failed to {what} after {self.attempts} attempts: {err}"
                    ) from err
                time.sleep(self.backoff * 2 ** attempt)

    def log_dataset(self, name: str, digest: str, source: Mapping[str, Any], context: str) -> None:
        """Record an artifact this run used as an MLflow dataset input (MLflow groups and filters runs
        by a dataset's name and digest: runs on the same features share one)."""
        import json as _json

        from mlflow.entities import Dataset, DatasetInput, InputTag

        dataset = Dataset(name=name, digest=digest[:36], source_type="active-finetuning-artifact",
                          source=_json.dumps(dict(source), sort_keys=True))
        self._call("log a dataset", self.client.log_inputs, self.run_id,
                   [DatasetInput(dataset, [InputTag("mlflow.data.context", context)])])

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log parameters (nested dicts become dotted names)."""
        from mlflow.entities import Param

        flat = sorted(_flatten(params).items())
        for start in range(0, len(flat), 100):  # MLflow's per-batch parameter limit
            batch = [Param(k, v) for k, v in flat[start:start + 100]]
            self._call("log parameters", self.client.log_batch, self.run_id, params=batch)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log numeric metrics at ``step`` (non-numeric values are skipped)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, int(step or 0)) for k, v in _flatten_numbers(metrics).items()]
        for start in range(0, len(batch), 1000):
            self._call("log metrics", self.client.log_batch, self.run_id, metrics=batch[start:start + 1000])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            self._call("set a tag", self.client.set_tag, self.run_id, key, str(value))

    def log_dict(self, values: Mapping[str, Any], artifact_file: str) -> None:
        self._call("log a JSON artifact", self.client.log_dict, self.run_id, dict(values), artifact_file)

    def log_figure(self, figure, artifact_file: str) -> None:
        self._call("log a figure", self.client.log_figure, self.run_id, figure, artifact_file)

    def log_confusion_matrix(self, categories, matrix, artifact_file: str = "confusion_matrix.png") -> None:
        """The confusion matrix as a figure (and as JSON beside it, for tools that read numbers)."""
        figure = confusion_matrix_figure(categories, matrix)
        try:
            self.log_figure(figure, artifact_file)
        finally:
            import matplotlib.pyplot as plt

            plt.close(figure)
        self.log_dict({"categories": list(categories), "matrix": [list(map(int, r)) for r in matrix]},
                      str(Path(artifact_file).with_suffix(".json")))

    def log_artifact(self, uri: str, artifact_path: str | None = None) -> None:
        """Log a file or a directory; a non-local URI is copied through :mod:`.storage` first."""
        from .data import storage

        if storage.scheme_of(uri) in storage.LOCAL_SCHEMES:
            path = storage.local_path(uri)
            if path.is_dir():
                self._call("log artifacts", self.client.log_artifacts, self.run_id, str(path), artifact_path)
            else:
                self._call("log an artifact", self.client.log_artifact, self.run_id, str(path), artifact_path)
            return
        with tempfile.TemporaryDirectory() as tmp:
            name = uri.rstrip("/").rsplit("/", 1)[-1]
            target = Path(tmp) / name
            with storage.open_input(uri) as src:
                target.write_bytes(src.read())
            self._call("log an artifact", self.client.log_artifact, self.run_id, str(target), artifact_path)


def _flatten_numbers(values: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    flat: dict[str, float] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten_numbers(value, name + "."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
        elif hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
            flat[name] = float(value.item())
    return flat


def confusion_matrix_figure(categories, matrix):
    """A matplotlib figure of a confusion matrix (rows: true class, columns: predicted)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    counts = np.asarray(matrix)
    size = max(4.0, 0.45 * len(categories) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(counts, cmap="Blues")
    axis.set_xticks(range(len(categories)), labels=list(categories), rotation=90)
    axis.set_yticks(range(len(categories)), labels=list(categories))
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    if len(categories) <= 20:
        threshold = counts.max() / 2 if counts.size else 0
        for (i, j), value in np.ndenumerate(counts):
            axis.text(j, i, str(value), ha="center", va="center", fontsize=7,
                      color="white" if value > threshold else "black")
    figure.tight_layout()
    return figure


def _experiment_id(client, name: str, tracking_uri: str, local_dir: Path | None) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    if local_dir is None and tracking_uri.startswith("sqlite:///"):
        # a local store keeps its artifacts beside its database, not in the current folder's ./mlruns
        local_dir = Path(tracking_uri[len("sqlite:///"):]).parent
    location = (local_dir / "mlartifacts").resolve().as_uri() if local_dir is not None else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:  # another process created it meanwhile
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


@contextlib.contextmanager
def start_run(experiment: str = DEFAULT_EXPERIMENT, run_name: str | None = None, tracking_uri: str | None = None,
              parent_run_id: str | None = None, run_id: str | None = None, tags: Mapping[str, Any] | None = None,
              local_dir: str | os.PathLike = ".") -> Iterator[Run]:
    """Start (or, with ``run_id``, continue) a run; it ends FINISHED, or FAILED if the block raises.

    Where Kubeflow Pipelines creates the MLflow runs itself (KEP-12862: each task's container gets
    ``MLFLOW_RUN_ID``, its own nested run), a run that would be started is that run instead: ``tags``
    are set on it, the parent is KFP's, and KFP, which owns it, ends it. (We use ``MlflowClient``, not
    the fluent ``mlflow.start_run``, whose nested runs the variable would hijack: mlflow#15713.)"""
    uri = resolve_tracking_uri(tracking_uri, local_dir)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    ping(uri)
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=uri)
    is_local_default = not tracking_uri and not os.environ.get("MLFLOW_TRACKING_URI")
    owned = run_id is not None or not os.environ.get(KFP_RUN_ENV)
    try:
        if run_id is None and not owned:
            run_id = os.environ[KFP_RUN_ENV]
            for key, value in (tags or {}).items():
                client.set_tag(run_id, key, str(value))
        elif run_id is None:
            experiment_id = _experiment_id(client, experiment, uri, Path(local_dir) if is_local_default else None)
            run_tags = {k: str(v) for k, v in (tags or {}).items()}
            if parent_run_id:
                run_tags[PARENT_TAG] = parent_run_id
            mlflow_run = client.create_run(experiment_id, run_name=run_name, tags=run_tags)
            run_id = mlflow_run.info.run_id
    except MlflowException as err:
        raise InputError(f"MLflow at {uri!r} could not start a run in experiment {experiment!r}: {err}") from err
    run = Run(client, run_id, uri)
    try:
        yield run
    except BaseException:
        if owned:
            with contextlib.suppress(Exception):
                client.set_terminated(run_id, status="FAILED")
        raise
    if owned:
        run._call("end the run", client.set_terminated, run_id, status="FINISHED")
