"""A budget study's runs in MLflow: methods × budgets × seeds, each cell a selection, labels and an
evaluation (the grid itself: :mod:`.plan`; the table and figures: :mod:`.report`).

The pipeline (``active_finetuning.kfp.pipelines``) runs a study; this module is what its glue
components call, so all of it runs (and is tested) without KFP:

* :func:`start_study` — one MLflow *parent* run per pipeline run; its reference (:class:`StudyRef`)
  travels between steps as a small JSON artifact.
* :func:`result_summary` — what an evaluation step hands on: the headline accuracy, every numeric
  metric and the confusion matrix.
* :func:`log_cell` — one MLflow *child* run per cell: tags, every parameter, metrics, the selection
  Parquet and the selection plot.
* :func:`publish_result` — an evaluation step's outputs: the metrics file, KFP's metrics, the summary.
* :func:`finish_study` — the accuracy table (mean ± std over seeds) and the accuracy-vs-budget plot,
  on the parent run and as files.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..data import storage
from ..errors import InputError
from .report import accuracy_table, markdown_table

# ----------------------------------------------------------------------------------------------
# planning


# ----------------------------------------------------------------------------------------------
# the parent run


@dataclass(frozen=True)
class StudyRef:
    """Where a study's parent run lives; written by the first step, read by the others."""

    run_id: str
    tracking_uri: str
    experiment: str
    kfp_run_id: str = ""

    def write(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(asdict(self), sort_keys=True) + "\n")

    @classmethod
    def read(cls, path: str | os.PathLike) -> "StudyRef":
        try:
            return cls(**json.loads(Path(path).read_text()))
        except (OSError, ValueError, TypeError) as err:
            raise InputError(f"study reference {str(path)!r} is not readable: {err}") from err


def start_study(experiment: str, params: Mapping[str, Any], tracking_uri: str | None = None,
                kfp_run_id: str = "", run_name: str | None = None) -> StudyRef:
    """Start the parent MLflow run of a study and log the study's parameters on it."""
    from ..tracking import resolve_tracking_uri, start_run

    uri = resolve_tracking_uri(tracking_uri or None)
    tags = {"kfp_run_id": kfp_run_id, "study": "budget"}
    with start_run(experiment=experiment, run_name=run_name or "budget-study", tracking_uri=uri,
                   tags=tags) as run:
        run.log_params(dict(params))
    return StudyRef(run.run_id, uri, experiment, kfp_run_id)


# ----------------------------------------------------------------------------------------------
# one cell


def accuracy_of(metrics: Mapping[str, Any]) -> float:
    """The headline top-1 of an evaluation result: the linear probe's for a probe, else the model's."""
    if metrics.get("kind") == "probe":
        return float(metrics["linear_probe"]["top1"])
    if "top1" not in metrics:
        raise InputError(f"evaluation result has no 'top1' (keys: {sorted(metrics)})")
    return float(metrics["top1"])


def result_summary(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """A compact, JSON-ready summary of an evaluation result (``evaluation.probe`` / ``evaluate``)."""
    numbers = {k: v for k, v in _numbers({k: v for k, v in metrics.items() if k not in ("selection", "params")})
               if "confusion_matrix" not in k and not math.isnan(v)}
    source = metrics["linear_probe"] if metrics.get("kind") == "probe" else metrics
    return {
        "kind": metrics.get("kind", "evaluate"),
        "accuracy": accuracy_of(metrics),
        "metrics": numbers,
        "confusion_matrix": source.get("confusion_matrix"),
        "params": dict(metrics.get("params") or {}),
    }


def _numbers(values: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, float]]:
    """Numeric leaves of a nested mapping as dotted names (``knn.top1``)."""
    for key, value in values.items():
        if isinstance(value, Mapping):
            yield from _numbers(value, f"{prefix}{key}.")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield f"{prefix}{key}", float(value)


def log_cell(ref: StudyRef, cell: Mapping[str, Any], selection_uri: str, summary: Mapping[str, Any],
             params: Mapping[str, Any], diagnostics_uri: str | None = None, plot_uri: str | None = None
             ) -> dict[str, Any]:
    """Log one cell as a child run of the study; return its row for the study's table. Only logs:
    every number comes from an upstream step, so a retried tracking step recomputes nothing.

    Tags: method, budget, seed, features identity, KFP run id. Params: every selection parameter
    (from the selection's metadata) and ``params`` (evaluation/training). Metrics: ``summary``'s and,
    given ``diagnostics_uri`` (:func:`.diagnostics.write_report`'s JSON), the label-free diagnostics
    (``diagnostics.coverage_mean``, ``_p50``/``_p90``/``_p99``/``_max``,
    ``diagnostics.pseudo_class_covered_share``, …). Artifacts: the selection Parquet
    (``selection.parquet``) and, given ``plot_uri``, the 2-D selection plot (``selection_pca.png``).
    """
    from ..data.artifacts import read_selection
    from ..tracking import start_run

    method, budget, seed = cell["method"], str(cell["budget"]), int(cell["seed"])
    key = f"{method}|{budget}|{seed}"
    done = _earlier_attempt(ref, key)
    if done is not None:  # a retried step whose run was logged, its answer lost: never log twice
        return {"method": method, "budget": budget, "budget_count": int(done.data.tags["budget_count"]),
                "seed": seed, "accuracy": float(done.data.metrics["accuracy"]), "child_run_id": done.info.run_id}
    with tempfile.TemporaryDirectory() as tmp:  # KFP artifact files have no extension: named copies
        named = Path(tmp) / "selection.parquet"
        named.write_bytes(storage.read_bytes(selection_uri))
        selection = read_selection(str(named))
        meta = selection.metadata
        tags = {"method": method, "budget": budget, "seed": seed, "budget_count": meta.get("budget", len(selection)),
                "features_identity": meta.get("features_identity", ""), "kfp_run_id": ref.kfp_run_id,
                "evaluation": summary.get("kind", ""), "cell": key}
        with start_run(experiment=ref.experiment, run_name=f"{method}-{budget}-seed{seed}",
                       tracking_uri=ref.tracking_uri, parent_run_id=ref.run_id, tags=tags) as run:
            run.log_params({"method": method, "budget": budget, "budget_count": meta.get("budget"), "seed": seed,
                            "pool_size": meta.get("pool_size"), "selection": meta.get("params", {}),
                            # the effective evaluation settings win over the overrides they include
                            **params, **({summary["kind"]: summary["params"]} if summary.get("params") else {})})
            run.log_metrics({"accuracy": summary["accuracy"], **summary.get("metrics", {})})
            confusion = summary.get("confusion_matrix")
            if confusion:
                run.log_confusion_matrix(confusion["categories"], confusion["matrix"])
            run.log_artifact(str(named))
            if meta.get("features_identity"):
                run.log_dataset("features", meta["features_identity"],
                                {"pool_size": meta.get("pool_size"), "model": (meta.get("features_metadata") or {})
                                 .get("model")}, context="pool")
            run.log_dataset(f"selection-{method}-{budget}-seed{seed}",
                            hashlib.sha256(named.read_bytes()).hexdigest(), {"method": method, "budget": budget,
                                                                             "seed": seed}, context="selection")
            if diagnostics_uri:
                report = json.loads(storage.read_bytes(diagnostics_uri))
                run.log_metrics({f"diagnostics.{name}": value for name, value in report["metrics"].items()})
            if plot_uri:
                plot = Path(tmp) / "selection_pca.png"
                plot.write_bytes(storage.read_bytes(plot_uri))
                run.log_artifact(str(plot))
    return {"method": method, "budget": budget, "budget_count": int(meta.get("budget", len(selection))),
            "seed": seed, "accuracy": float(summary["accuracy"]), "child_run_id": run.run_id}


# ----------------------------------------------------------------------------------------------
# the study's table and plot


def _earlier_attempt(ref: StudyRef, key: str):
    """The finished child run of an earlier attempt at this cell, if any; the runs of attempts that
    died half-way (still running, or failed) are deleted, so that a retry leaves exactly one run."""
    from mlflow import MlflowClient

    from ..tracking import ping

    ping(ref.tracking_uri)
    client = MlflowClient(tracking_uri=ref.tracking_uri)
    experiment = client.get_experiment_by_name(ref.experiment)
    if experiment is None:
        return None
    runs = client.search_runs([experiment.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{ref.run_id}' and tags.cell = '{key}'")
    finished = [run for run in runs if run.info.status == "FINISHED"]
    for run in runs:
        if run.info.status != "FINISHED":
            client.delete_run(run.info.run_id)
    return finished[0] if finished else None


def finish_study(ref: StudyRef, rows: Sequence[Mapping[str, Any]], markdown_path: str, plot_path: str,
                 results_uri: str | None = None) -> str:
    """Log the study's table and plot on the parent run, write them to the given paths; return the Markdown.

    With ``results_uri`` (a folder URI, local or ``gs://``) the Markdown, the PNG and the rows as
    Parquet are also written there.
    """
    import matplotlib.pyplot as plt
    import pyarrow as pa

    from ..data.artifacts import write_table
    from ..tracking import start_run
    from .report import accuracy_figure

    table = accuracy_table(rows)
    markdown = markdown_table(table)
    Path(markdown_path).write_text(markdown)
    figure = accuracy_figure(table)
    try:
        figure.savefig(plot_path, format="png", dpi=120)
        with start_run(experiment=ref.experiment, tracking_uri=ref.tracking_uri, run_id=ref.run_id) as run:
            run.log_figure(figure, "accuracy_vs_budget.png")
            run.log_dict({"columns": list(table.columns), "data": table.to_dict(orient="records")},
                         "accuracy_by_budget.json")
            run.log_metrics({f"accuracy_mean/{r.method}/{r.budget_count}": r.mean for r in table.itertuples()})
            for row in table.itertuples():  # one line per method in MLflow's chart view, the budget as its step
                run.log_metrics({f"accuracy_by_budget/{row.method}": row.mean}, step=int(row.budget_count))
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "accuracy_by_budget.md"
                path.write_text(markdown)
                run.log_artifact(str(path))
    finally:
        plt.close(figure)
    if results_uri:
        storage.write_bytes(storage.join(results_uri, "accuracy_by_budget.md"), markdown.encode())
        storage.write_bytes(storage.join(results_uri, "accuracy_vs_budget.png"), Path(plot_path).read_bytes())
        write_table(pa.Table.from_pylist([dict(r) for r in rows]), storage.join(results_uri, "cells.parquet"))
    return markdown


def publish_result(result: dict[str, Any], report_uri: str, metrics, confusion) -> str:
    """Hand an evaluation result (:func:`probe` / :func:`evaluate`) on from a pipeline step.

    Writes every metric to ``report_uri``, logs the numbers (per-class accuracies left out) to
    ``metrics`` and the confusion matrix to ``confusion`` (KFP ``Metrics`` and
    ``ClassificationMetrics`` outputs), and returns the study's summary as JSON
    (:func:`~active_finetuning.study.cells.result_summary`).
    """
    from ..training.evaluate import write_metrics

    write_metrics(result, report_uri)
    summary = result_summary(result)
    for name, value in summary["metrics"].items():
        if "per_class_accuracy" not in name:
            metrics.log_metric(name, value)
    matrix = summary["confusion_matrix"]
    confusion.log_confusion_matrix(matrix["categories"], matrix["matrix"])
    return json.dumps(summary)
