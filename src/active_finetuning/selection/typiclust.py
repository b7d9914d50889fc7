"""TypiClust — Hacohen, Dekel, Weinshall, "Active Learning on a Budget" (ICML 2022), as the authors'
code (avihu111/TypiClust) does it.

Unit-norm features with Euclidean distances (‖x − y‖² = 2 − 2⟨x, y⟩), never an N×N matrix
(chunked products); incremental: samples already labeled count as picks made before, and are never
returned. docs/selection.md, "TypiClust".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from ..params import Interval, Params, parameter
from ..progress import progress_bar
from .clustering import cluster_pool
from .neighbours import (
    nearest_neighbours,
)
from .registry import Picks, register_selector


@dataclass(frozen=True)
class TypiClustParams(Params):
    """TypiClust parameters; defaults follow the authors' code (docs/selection.md, "TypiClust"):
    |L| + B clusters, at most ``max_clusters``, Lloyd's k-means up to ``minibatch_above`` clusters
    and mini-batch k-means above (batches of ``minibatch_batch``, up to ``minibatch_epochs`` passes),
    clusters of ``min_cluster_size`` samples or fewer left out, typicality over
    ``min(neighbours, n // 2)`` neighbours with squared Euclidean distances (``distance="euclidean"``:
    the paper's formula)."""

    neighbours: int = parameter(20, Interval(int, 1), "neighbours of the typicality (at most n // 2)")
    min_cluster_size: int = parameter(5, Interval(int, 0), "clusters of this many samples or fewer are left out")
    max_clusters: int = parameter(500, Interval(int, 1), "clusters at most")
    kmeans_max_iter: int = parameter(300, Interval(int, 0), "Lloyd iterations at most")
    minibatch_above: int = parameter(50, Interval(int, 1), "cluster count above which mini-batch k-means is used")
    minibatch_batch: int = parameter(5000, Interval(int, 1), "mini-batch size")
    minibatch_epochs: int = parameter(100, Interval(int, 1), "mini-batch passes at most")
    distance: Literal["squared", "euclidean"] = parameter("squared", help="distance of the typicality")


@register_selector("typiclust", TypiClustParams)
def select_typiclust(pool, budget: int, params: TypiClustParams, *, seed: int, progress: bool = False) -> Picks:
    """TypiClust: the most typical sample of each of the largest uncovered k-means clusters (ICML 2022)."""
    features = pool.features
    n = pool.size
    clusters = min(n, budget + len(pool.labeled), params.max_clusters)
    result = cluster_pool(features, clusters, seed=seed, max_iter=params.kmeans_max_iter,
                          minibatch_above=params.minibatch_above, batch_size=params.minibatch_batch,
                          epochs=params.minibatch_epochs, progress=progress)
    labels = result.labels.numpy()
    sizes = np.bincount(labels, minlength=clusters)
    held = np.bincount(labels[pool.labeled], minlength=clusters) if len(pool.labeled) else np.zeros(clusters, int)
    available = np.ones(n, dtype=bool)
    available[pool.labeled] = False
    members = _members_by_cluster(labels, clusters)
    # The authors' visit order: clusters with the fewest labeled samples first, then the largest
    # (ties → lower id), round robin; clusters of min_cluster_size or fewer are left out. Where
    # their code would fail (a cluster used up, no cluster large enough) the round robin skips
    # the empty clusters and then continues over the small ones.
    order = sorted(range(clusters), key=lambda c: (int(held[c]), -int(sizes[c]), c))
    large = [c for c in order if sizes[c] > params.min_cluster_size]
    rounds = [large, [c for c in order if sizes[c] <= params.min_cluster_size]]
    picks, scores, pseudo = [], [], []
    bar = progress_bar(total=budget, iterable=None, desc="typiclust", enabled=progress)
    for visit in rounds:
        position = 0
        while len(picks) < budget and visit:
            c = visit[position % len(visit)]
            rows = members[c][available[members[c]]]
            if not len(rows):
                visit.remove(c)
                continue
            values = typicality(features[torch.from_numpy(rows)], min(params.neighbours, len(rows) // 2),
                                params.distance)
            best = int(np.argmax(values))  # the first maximum, as numpy's argmax
            available[rows[best]] = False
            picks.append(int(rows[best]))
            scores.append(float(values[best]))
            pseudo.append(c)
            position += 1
            bar.update(1)
    bar.close()
    return Picks(indices=np.asarray(picks, dtype=np.int64), score=np.asarray(scores, dtype=np.float64),
                 pseudo_class=np.asarray(pseudo, dtype=np.int64),
                 info={"clusters": clusters, "clusters_used": len(large), "inertia": result.inertia})


def _members_by_cluster(labels: np.ndarray, clusters: int) -> list[np.ndarray]:
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(clusters + 1))
    return [order[bounds[c] : bounds[c + 1]] for c in range(clusters)]


def typicality(features: torch.Tensor, neighbours: int, distance: str = "squared") -> np.ndarray:
    """1 / (mean distance to the ``neighbours`` nearest others + 1e-5): squared Euclidean distances
    as the authors' code computes them (faiss ``IndexFlatL2``), or Euclidean as the paper writes.
    With no neighbour (a cluster of one), every sample's typicality is NaN and the first is taken."""
    if neighbours < 1:
        return np.full(features.shape[0], np.nan)
    _, similarity = nearest_neighbours(features, neighbours)
    squared = (2 - 2 * similarity.double()).clamp_min(0)
    values = squared if distance == "squared" else squared.sqrt()
    return (1.0 / (values.mean(dim=1) + 1e-5)).numpy()


