"""Label-free diagnostics of a selection: how well it covers the pool, before anyone labels it.

* **coverage**: the Euclidean distance (unit-norm features) from every pool sample to its nearest
  selected sample — mean and 50/90/99th percentiles; chunked, never N×B whole.
* **pseudo-classes**: the pool clustered by k-means into as many clusters as the selection has
  samples; the share of clusters that hold a selected sample, and the share of the pool that lies
  in clusters without one.
* **plot**: the pool in its first two principal components with the selection by role.

Samples already labeled (incremental runs) count as covering the pool, like the selection.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch

from ..data import storage
from ..data.artifacts import FeatureTable, Selection, rows_of
from ..selection.api import unit_rows
from ..selection.clustering import cluster_pool
from ..selection.neighbours import euclidean_from_similarity
from ..selection.similarity import nearest_by_similarity

PERCENTILES = (50, 90, 99)


def coverage(features: torch.Tensor, rows: np.ndarray) -> dict[str, float]:
    """Distance from each pool row to its nearest row of ``rows`` (unit ``features``)."""
    _, similarity = nearest_by_similarity(features, features[torch.from_numpy(rows)])
    distance = euclidean_from_similarity(similarity).double().numpy()
    stats = {"mean": float(distance.mean()), "max": float(distance.max())}
    for q, value in zip(PERCENTILES, np.percentile(distance, PERCENTILES)):
        stats[f"p{q}"] = float(value)
    return stats


def pseudo_class_share(features: torch.Tensor, rows: np.ndarray, clusters: int | None = None,
                       seed: int = 0) -> dict[str, float]:
    """Share of k-means pseudo-classes holding a selected row (k = len(rows) unless ``clusters``)."""
    k = min(clusters or len(rows), features.shape[0])
    labels = cluster_pool(features, k, seed=seed).labels.numpy()
    sizes = np.bincount(labels, minlength=k)
    held = np.zeros(k, dtype=bool)
    held[labels[rows]] = True
    occupied = sizes > 0
    return {
        "clusters": int(k),
        "covered_share": float(held[occupied].mean()),
        "uncovered_pool_share": float(sizes[~held].sum() / features.shape[0]),
    }


def diagnose(pool: FeatureTable, selection: Selection, *, labeled=None, seed: int = 0,
             clusters: int | None = None) -> dict[str, Any]:
    """Coverage and pseudo-class share of ``selection`` (with ``labeled`` ids) over ``pool``."""
    features = unit_rows(pool.features)
    rows = rows_of(pool, selection.sample_ids, what="the selection")
    labeled_rows = rows_of(pool, list(labeled), what="the labeled set") if labeled is not None else np.zeros(0, np.int64)
    covering = np.union1d(rows, labeled_rows)
    cover = coverage(features, covering)
    share = pseudo_class_share(features, covering, clusters=clusters, seed=seed)
    roles, counts = np.unique(np.asarray(selection.role, dtype=str), return_counts=True)
    meta = selection.metadata or {}
    return {
        "pool_size": len(pool),
        "selected": len(rows),
        "labeled": int(len(labeled_rows)),
        "method": meta.get("method"),
        "budget": meta.get("budget"),
        "roles": {str(r): int(c) for r, c in zip(roles, counts)},
        "coverage": cover,
        "pseudo_classes": share,
        "metrics": {  # flat, for a tracker
            **{f"coverage_{name}": value for name, value in cover.items()},
            "pseudo_class_covered_share": share["covered_share"],
            "pseudo_class_uncovered_pool_share": share["uncovered_pool_share"],
        },
    }


def plot(pool: FeatureTable, selection: Selection, uri: str, *, labeled=None, seed: int = 0,
         max_points: int = 20_000, title: str | None = None) -> None:
    """Write a PNG: the pool (at most ``max_points`` drawn) and the selection by role, in PCA 2-D
    (:func:`.report.selection_figure`)."""
    import matplotlib.pyplot as plt

    from .report import selection_figure

    placed = Selection(rows_of(pool, selection.sample_ids, what="the selection"), selection.sample_ids,
                       selection.role, selection.score, selection.pseudo_class, selection.metadata)
    labeled_rows = rows_of(pool, list(labeled), what="the labeled set") if labeled is not None else None
    figure = selection_figure(pool, placed, title=title or _title(selection), max_points=max_points, seed=seed,
                              labeled_rows=labeled_rows)
    try:
        with storage.atomic_output(uri) as tmp:
            figure.savefig(tmp, format="png", dpi=110)
    finally:
        plt.close(figure)


def _title(selection: Selection) -> str:
    meta = selection.metadata or {}
    return f"{meta.get('method', 'selection')}: {len(selection)} samples (PCA of the pool)"


def write_report(report: dict[str, Any], uri: str) -> None:
    """The diagnostics as JSON, written atomically."""
    with storage.atomic_output(uri) as tmp:
        tmp.write_text(json.dumps(report, indent=1, sort_keys=True))


def summary(report: dict[str, Any]) -> str:
    cover, share = report["coverage"], report["pseudo_classes"]
    return "\n".join([
        f"{report.get('method') or 'selection'}: {report['selected']} selected of {report['pool_size']}"
        + (f" (+{report['labeled']} labeled)" if report["labeled"] else ""),
        "coverage (Euclidean distance of L2-normalised features, 0 to 2, from each pool sample to the nearest "
        "selected one): "
        + f"mean {cover['mean']:.4f}, p50 {cover['p50']:.4f}, p90 {cover['p90']:.4f}, p99 {cover['p99']:.4f}",
        f"pseudo-classes holding a selected sample: {100 * share['covered_share']:.1f}% of {share['clusters']} "
        f"(pool in empty pseudo-classes: {100 * share['uncovered_pool_share']:.1f}%)",
    ])

