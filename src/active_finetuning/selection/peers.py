"""The strongest low-budget peers of ActiveFT and BiLAF: TypiClust and ProbCover.

* ``typiclust`` — Hacohen, Dekel, Weinshall, "Active Learning on a Budget" (ICML 2022).
* ``probcover`` — Yehuda, Dekel, Hacohen, Weinshall, "Active Learning Through a Covering Lens"
  (NeurIPS 2022).

Both follow the authors' code (avihu111/TypiClust) on unit-norm features with Euclidean distances
(‖x − y‖² = 2 − 2⟨x, y⟩), never hold an N×N matrix (chunked products), and are incremental:
samples already labeled count as picks that were made before, and are never returned.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from .. import storage
from ..errors import InputError
from ..progress import progress_bar
from .clustering import cluster_pool, kmeans
from .exact import dot_error, exact_matmul
from .neighbours import (
    euclidean_from_similarity,
    nearest_neighbours,
    nearest_other_group,
)
from .registry import Picks, register_selector, require
from .similarity import rows_per_block

# ----------------------------------------------------------------------------------------------
# TypiClust


@dataclass(frozen=True)
class TypiClustParams:
    """TypiClust parameters; defaults follow the authors' code (docs/selection.md, "TypiClust"):
    |L| + B clusters, at most ``max_clusters``, Lloyd's k-means up to ``minibatch_above`` clusters
    and mini-batch k-means above (batches of ``minibatch_batch``, up to ``minibatch_epochs`` passes),
    clusters of ``min_cluster_size`` samples or fewer left out, typicality over
    ``min(neighbours, n // 2)`` neighbours with squared Euclidean distances (``distance="euclidean"``:
    the paper's formula)."""

    neighbours: int = 20
    min_cluster_size: int = 5
    max_clusters: int = 500
    kmeans_max_iter: int = 300
    minibatch_above: int = 50
    minibatch_batch: int = 5000
    minibatch_epochs: int = 100
    distance: Literal["squared", "euclidean"] = "squared"

    def __post_init__(self) -> None:
        require(self.neighbours >= 1, "neighbours", self.neighbours, "a positive integer")
        require(self.min_cluster_size >= 0, "min_cluster_size", self.min_cluster_size, "a non-negative integer")
        require(self.max_clusters >= 1, "max_clusters", self.max_clusters, "a positive integer")
        require(self.kmeans_max_iter >= 0, "kmeans_max_iter", self.kmeans_max_iter, "a non-negative integer")
        require(self.minibatch_above >= 1, "minibatch_above", self.minibatch_above,
                "a positive integer (cluster count above which mini-batch k-means is used)")
        require(self.minibatch_batch >= 1, "minibatch_batch", self.minibatch_batch, "a positive integer")
        require(self.minibatch_epochs >= 1, "minibatch_epochs", self.minibatch_epochs, "a positive integer")


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


# ----------------------------------------------------------------------------------------------
# ProbCover


@dataclass(frozen=True)
class ProbCoverParams:
    """ProbCover parameters (docs/selection.md, "ProbCover"). ``delta`` None: the largest ball
    radius whose balls are ``purity`` pure with respect to a k-means clustering into
    ``purity_clusters`` clusters (the paper uses the number of classes), estimated exactly on
    ``purity_sample`` random balls. Coverage uses the whole δ-ball graph, every pair closer than δ;
    ``max_edges`` bounds its memory (4 bytes an edge). ``graph_cache`` is an optional directory
    that keeps the graph between runs on the same features and δ."""

    delta: float | None = None
    purity: float = 0.95
    purity_clusters: int = 10
    purity_sample: int = 5000
    max_edges: int = 250_000_000
    kmeans_max_iter: int = 300
    graph_cache: str | None = None

    def __post_init__(self) -> None:
        require(self.delta is None or self.delta > 0, "delta", self.delta,
                "a positive ball radius (Euclidean, unit-norm features: at most 2) or None to estimate it")
        require(0 < self.purity <= 1, "purity", self.purity, "a fraction in (0, 1]")
        require(self.purity_clusters >= 2, "purity_clusters", self.purity_clusters, "an integer of at least 2")
        require(self.purity_sample >= 1, "purity_sample", self.purity_sample, "a positive integer")
        require(self.max_edges >= 1, "max_edges", self.max_edges, "a positive integer")
        require(self.kmeans_max_iter >= 0, "kmeans_max_iter", self.kmeans_max_iter, "a non-negative integer")


@register_selector("probcover", ProbCoverParams)
def select_probcover(pool, budget: int, params: ProbCoverParams, *, seed: int, progress: bool = False) -> Picks:
    """ProbCover: greedy maximum coverage of δ-balls (NeurIPS 2022)."""
    features = pool.features
    n = pool.size
    rng = np.random.default_rng(seed)
    delta = params.delta
    if delta is None:
        pseudo = kmeans(features, min(params.purity_clusters, n), seed=seed, max_iter=params.kmeans_max_iter).labels
        sample = np.sort(rng.choice(n, min(n, params.purity_sample), replace=False))
        delta = purity_radius(features, pseudo, sample, params.purity)
    graph = BallGraph(*ball_graph(features, delta, params.max_edges, params.graph_cache, progress))
    picks, gains = graph.greedy_cover(budget, pool.labeled, rng, progress)
    info = {"delta": float(delta), "covered_fraction": float(graph.covered.mean()),
            "mean_ball_size": float(len(graph.targets) / n), "edges": int(len(graph.targets))}
    return Picks(indices=picks, score=gains.astype(np.float64), info=info)


def ball_graph(features: torch.Tensor, delta: float, max_edges: int, cache: str | None = None,
               progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The δ-ball graph as CSR ``(start, targets)``: row x's ball is ``targets[start[x]:start[x+1]]``,
    every y with ‖x − y‖ < δ, x itself included, ascending. Symmetric, so it is also the list of
    balls that hold each point. Rows are compared in chunks (never N×N); pairs whose float32
    distance is within its rounding of δ are decided by the float64 distance. Optionally cached."""
    path = None
    if cache:
        digest = hashlib.blake2b(features.numpy().tobytes() + np.float64(delta).tobytes(), digest_size=12).hexdigest()
        path = Path(storage.local_path(cache)) / f"balls-{digest}.npz"
        if path.exists():
            with np.load(path) as stored:
                return stored["start"], stored["targets"]
    n, dim = features.shape
    threshold = 1 - delta * delta / 2  # ‖x − y‖ < δ ⇔ ⟨x, y⟩ > 1 − δ²/2 on unit rows
    rounding = 4 * dot_error(dim, torch.float32)  # the product's error and the rows' norms (≈ 1)
    counts = np.zeros(n, dtype=np.int64)
    parts, total = [], 0
    step = rows_per_block(n)
    for start in progress_bar(range(0, n, step), desc="probcover graph", enabled=progress):
        with exact_matmul():
            block = features[start : start + step] @ features.T
        sure = block > threshold + rounding
        near = (block > threshold - rounding) & ~sure
        rows, cols = near.nonzero(as_tuple=True)
        if len(rows):
            exact = _float64_distance(features, rows + start, cols) < delta
            sure[rows[exact], cols[exact]] = True
        local, targets = sure.nonzero(as_tuple=True)
        total += len(targets)
        if total > max_edges:
            raise InputError(f"probcover: the δ-ball graph for delta = {delta:.4g} has more than {max_edges} edges "
                             f"(mean ball above {total / (start + len(block)):.0f} samples); lower delta (or purity), "
                             "or raise max_edges (4 bytes an edge)")
        counts[start : start + len(block)] = torch.bincount(local, minlength=len(block)).numpy()
        parts.append(targets.to(torch.int32).numpy())
    start_of = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=start_of[1:])
    targets = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
    if path is not None:
        with storage.atomic_output(str(path)) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, start=start_of, targets=targets)
    return start_of, targets


def _float64_distance(features, rows, cols) -> np.ndarray:
    """‖f_r − f_c‖ in float64 for the given pairs, a few thousand at a time."""
    out = np.empty(len(rows))
    for first in range(0, len(rows), 4096):
        part = slice(first, first + 4096)
        difference = features[rows[part]].double() - features[cols[part]].double()
        out[part] = torch.linalg.vector_norm(difference, dim=1).numpy()
    return out


def purity_radius(features: torch.Tensor, pseudo: torch.Tensor, sample: np.ndarray, purity: float) -> float:
    """The largest δ for which at least ``purity`` of the δ-balls are pure (ProbCover §4).

    The ball B(x, δ) = {y : ‖x − y‖ < δ} is pure when every member shares x's pseudo-class, i.e.
    when δ ≤ r_x, the exact distance from x to the nearest sample of another pseudo-class. The
    share of pure balls is measured on the balls around ``sample`` rows (a chunked exact search of
    len(sample) × N, not N × N).
    """
    similarity = nearest_other_group(features, pseudo, torch.from_numpy(sample))
    radius = np.sort(euclidean_from_similarity(similarity).double().numpy())
    radius[~np.isfinite(radius)] = 2.0  # one pseudo-class: every ball of the unit sphere is pure
    need = int(np.ceil(purity * len(radius)))
    return float(radius[len(radius) - need])


@dataclass
class BallGraph:
    """The δ-ball graph (``ball_graph``) and the coverage state of a greedy cover."""

    start: np.ndarray  # (N + 1,) ball of x is targets[start[x]:start[x + 1]]
    targets: np.ndarray  # (E,) int32
    covered: np.ndarray | None = None  # (N,) bool

    def __post_init__(self) -> None:
        if self.covered is None:
            self.covered = np.zeros(len(self.start) - 1, dtype=bool)

    def _ball(self, row: int) -> np.ndarray:
        return self.targets[self.start[row] : self.start[row + 1]]

    def _cover(self, row: int, gain: np.ndarray) -> None:
        """Mark the ball of ``row`` covered and withdraw those points from every ball's gain (the
        balls that hold a point are the point's own ball: the graph is symmetric)."""
        reached = self._ball(row)
        fresh = reached[~self.covered[reached]]
        if len(fresh) == 0:
            return
        self.covered[fresh] = True
        lengths = self.start[fresh + 1] - self.start[fresh]
        offsets = np.repeat(self.start[fresh] - np.cumsum(lengths) + lengths, lengths)
        holders = self.targets[offsets + np.arange(lengths.sum())]
        gain -= np.bincount(holders, minlength=len(gain))

    def greedy_cover(self, budget: int, labeled: np.ndarray, rng: np.random.Generator, progress: bool = False):
        """Pick ``budget`` balls, each covering the most uncovered points (ties → lowest row);
        labeled balls are covered first.

        Once every point is covered the remaining picks are uniform among the unpicked (as the
        authors' code does). Returns (rows, gains).
        """
        n = len(self.covered)
        gain = np.diff(self.start).astype(np.int64)
        available = np.ones(n, dtype=bool)
        for row in labeled:
            self._cover(int(row), gain)
            available[row] = False
        picks, gains = [], []
        for _ in progress_bar(range(budget), desc="probcover", enabled=progress):
            masked = np.where(available, gain, -1)
            row = int(masked.argmax())
            if masked[row] <= 0:
                break
            picks.append(row)
            gains.append(int(masked[row]))
            available[row] = False
            self._cover(row, gain)
        if len(picks) < budget:
            rest = np.flatnonzero(available)
            extra = rest[rng.choice(len(rest), budget - len(picks), replace=False)]
            picks.extend(int(r) for r in extra)
            gains.extend([0] * len(extra))
        return np.asarray(picks, dtype=np.int64), np.asarray(gains)
