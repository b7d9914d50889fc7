"""A budget study: methods × budgets × seeds, each cell a selection, labels and an evaluation.

The pipeline (``active_finetuning.pipelines``) runs a study; this module is what its glue
components call, so all of it runs (and is tested) without KFP:

* :func:`plan_grid` / :func:`plan_shards` — the cells and extraction shards, validated up front.
* :func:`start_study` — one MLflow *parent* run per pipeline run; its reference (:class:`StudyRef`)
  travels between steps as a small JSON artifact.
* :func:`result_summary` — what an evaluation step hands on: the headline accuracy, every numeric
  metric and the confusion matrix.
* :func:`log_cell` — one MLflow *child* run per cell: tags, every parameter, metrics, the selection
  Parquet and the selection plot.
* :func:`finish_study` — the accuracy table (mean ± std over seeds) and the accuracy-vs-budget plot,
  on the parent run and as files.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from . import storage
from .errors import InputError

EVALUATIONS = ("probe", "finetune")


# ----------------------------------------------------------------------------------------------
# planning


def plan_grid(methods: Sequence[str], budgets: Sequence[Any], seeds: Sequence[int]) -> list[dict[str, Any]]:
    """The study's cells in a fixed order (method, then budget, then seed), checked before any work."""
    from .selection import list_selectors

    known = list_selectors()
    if not methods:
        raise InputError(f"methods is empty; give at least one of {known}")
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise InputError(f"methods {unknown} are not registered selectors; choose from {known}")
    if not budgets:
        raise InputError("budgets is empty; give sample counts (500) or percentages ('1%')")
    for budget in budgets:
        _check_budget(budget)
    if not seeds:
        raise InputError("seeds is empty; give at least one seed, e.g. [0]")
    for seed in seeds:
        if isinstance(seed, bool) or not float(seed).is_integer() or int(seed) < 0:
            raise InputError(f"seeds must be non-negative integers, got {seed!r}")
    for name, values in (("methods", methods), ("budgets", [str(b) for b in budgets]), ("seeds", seeds)):
        if len(set(values)) != len(values):
            raise InputError(f"{name} has repeated values {list(values)}; list each once")
    return [{"method": m, "budget": str(b), "seed": int(s)} for m in methods for b in budgets for s in seeds]


def _check_budget(budget: Any) -> None:
    text = str(budget).strip()
    number = text[:-1] if text.endswith("%") else text
    try:
        value = float(number)
    except ValueError:
        raise InputError(f"budget {budget!r} is not a sample count (500) or a percentage ('1%')") from None
    if value <= 0 or (not text.endswith("%") and not value.is_integer()):
        raise InputError(f"budget {budget!r} must be a positive whole count or a percentage in (0, 100]")


def plan_shards(num_shards: int) -> list[int]:
    """Shard indices ``0..num_shards-1`` for the extraction fan-out."""
    if isinstance(num_shards, bool) or int(num_shards) != num_shards or num_shards < 1:
        raise InputError(f"num_shards must be an integer >= 1, got {num_shards!r}")
    return list(range(int(num_shards)))


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
    from .tracking import resolve_tracking_uri, start_run

    uri = resolve_tracking_uri(tracking_uri or None)
    tags = {"kfp_run_id": kfp_run_id, "study": "budget"}
    with start_run(experiment=experiment, run_name=run_name or "budget-study", tracking_uri=uri,
                   tags=tags) as run:
        run.log_params(dict(params))
    return StudyRef(run.run_id, uri, experiment, kfp_run_id)


# ----------------------------------------------------------------------------------------------
# one cell


def from_kfp(values: Any) -> Any:
    """Undo KFP's JSON round trip, which turns every number in a dict or list parameter into a float."""
    if isinstance(values, Mapping):
        return {k: from_kfp(v) for k, v in values.items()}
    if isinstance(values, list):
        return [from_kfp(v) for v in values]
    if isinstance(values, float) and values.is_integer():
        return int(values)
    return values


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
             params: Mapping[str, Any], features_uri: str | None = None) -> dict[str, Any]:
    """Log one cell as a child run of the study; return its row for the study's table.

    Tags: method, budget, seed, features identity, KFP run id. Params: every selection parameter
    (from the selection's metadata) and ``params`` (evaluation/training). Metrics: ``summary``'s and,
    given ``features_uri``, the label-free diagnostics (``diagnostics.coverage_mean``, ``_p50``/``_p90``/
    ``_p99``/``_max``, ``diagnostics.pseudo_class_covered_share``, …; see :mod:`.diagnostics`; its
    k-means into B pseudo-classes is the costly part: minutes for 2,500 of 50,000 on a CPU).
    Artifacts: the selection Parquet (``selection.parquet``) and, given ``features_uri``, the 2-D selection plot.
    """
    from .artifacts import read_features, read_selection
    from .diagnostics import diagnose
    from .reporting import selection_figure
    from .tracking import start_run

    selection = read_selection(selection_uri)
    meta = selection.metadata
    method, budget, seed = cell["method"], str(cell["budget"]), int(cell["seed"])
    tags = {"method": method, "budget": budget, "seed": seed, "budget_count": meta.get("budget", len(selection)),
            "features_identity": meta.get("features_identity", ""), "kfp_run_id": ref.kfp_run_id,
            "evaluation": summary.get("kind", "")}
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
        with tempfile.TemporaryDirectory() as tmp:  # KFP artifact files have no extension
            named = Path(tmp) / "selection.parquet"
            with storage.open_input(selection_uri) as source:
                named.write_bytes(source.read())
            run.log_artifact(str(named))
        if features_uri:
            import matplotlib.pyplot as plt

            pool = read_features(features_uri)
            placed = read_selection(selection_uri, pool)
            report = diagnose(pool, placed, seed=seed)
            run.log_metrics({f"diagnostics.{name}": value for name, value in report["metrics"].items()})
            figure = selection_figure(pool, placed, title=f"{method}, budget {budget}, seed {seed}")
            try:
                run.log_figure(figure, "selection_pca.png")
            finally:
                plt.close(figure)
    return {"method": method, "budget": budget, "budget_count": int(meta.get("budget", len(selection))),
            "seed": seed, "accuracy": float(summary["accuracy"]), "child_run_id": run.run_id}


# ----------------------------------------------------------------------------------------------
# the study's table and plot


def accuracy_table(rows: Iterable[Mapping[str, Any]]):
    """A DataFrame, one row per method × budget: mean and std of accuracy over seeds, seed count."""
    import pandas as pd

    frame = pd.DataFrame(list(rows))
    if frame.empty:
        raise InputError("the study has no results; every cell failed or the grid was empty")
    grouped = frame.groupby(["method", "budget_count"], sort=True)["accuracy"]
    table = grouped.agg(mean="mean", std=lambda s: float(s.std(ddof=1)) if len(s) > 1 else 0.0,
                        seeds="count").reset_index()
    budgets = frame.drop_duplicates("budget_count").set_index("budget_count")["budget"]
    table.insert(2, "budget", table["budget_count"].map(budgets))
    return table


def markdown_table(table) -> str:
    """Accuracy (%) as mean ± std, methods as rows and budgets as columns."""
    counts = sorted(table["budget_count"].unique())
    label = {c: table.loc[table["budget_count"] == c, "budget"].iloc[0] for c in counts}
    header = "| method | " + " | ".join(
        f"{label[c]} ({c})" if str(label[c]) != str(c) else str(c) for c in counts) + " |"
    lines = [header, "| --- |" + " ---: |" * len(counts)]
    for method, group in table.groupby("method", sort=True):
        cells = []
        for count in counts:
            hit = group[group["budget_count"] == count]
            if hit.empty:
                cells.append("–")
            else:
                row = hit.iloc[0]
                cells.append(f"{100 * row['mean']:.2f} ± {100 * row['std']:.2f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    seeds = int(table["seeds"].max())
    return ("Top-1 accuracy (%) by method and labeling budget (samples), mean ± std over "
            f"{seeds} seed{'s' if seeds != 1 else ''}.\n\n" + "\n".join(lines) + "\n")


def finish_study(ref: StudyRef, rows: Sequence[Mapping[str, Any]], markdown_path: str, plot_path: str,
                 results_uri: str | None = None) -> str:
    """Log the study's table and plot on the parent run, write them to the given paths; return the Markdown.

    With ``results_uri`` (a folder URI, local or ``gs://``) the Markdown, the PNG and the rows as
    Parquet are also written there.
    """
    import matplotlib.pyplot as plt
    import pyarrow as pa

    from .artifacts import write_table
    from .reporting import accuracy_figure
    from .tracking import start_run

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
