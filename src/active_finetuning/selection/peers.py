"""The strongest low-budget peers of ActiveFT and BiLAF: TypiClust and ProbCover.

* ``typiclust`` — Hacohen, Dekel, Weinshall, "Active Learning on a Budget" (ICML 2022).
* ``probcover`` — Yehuda, Dekel, Hacohen, Weinshall, "Active Learning Through a Covering Lens"
  (NeurIPS 2022).

Both work on unit-norm features with Euclidean distances (‖x − y‖² = 2 − 2⟨x, y⟩), never hold an
N×N matrix (neighbours come from chunked products, O(N·k) memory), and are incremental: samples
already labeled count as picks that were made before, and are never returned.
"""

from __future__ import annotations

import hashlib
import heapq
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import storage
from ..progress import progress_bar
from .clustering import cluster_pool, kmeans
from .neighbours import euclidean_from_similarity, nearest_neighbours, nearest_other_group
from .registry import Picks, register_selector, require


# ----------------------------------------------------------------------------------------------
# TypiClust


@dataclass(frozen=True)
class TypiClustParams:
    """TypiClust parameters; defaults follow the authors' code (20 neighbours, clusters of ≥ 5)."""

    neighbours: int = 20
    min_cluster_size: int = 5
    kmeans_max_iter: int = 50
    minibatch_above: int = 50

    def __post_init__(self) -> None:
        require(self.neighbours >= 1, "neighbours", self.neighbours, "a positive integer")
        require(self.min_cluster_size >= 1, "min_cluster_size", self.min_cluster_size, "a positive integer")
        require(self.kmeans_max_iter >= 0, "kmeans_max_iter", self.kmeans_max_iter, "a non-negative integer")
        require(self.minibatch_above >= 1, "minibatch_above", self.minibatch_above,
                "a positive integer (cluster count above which mini-batch k-means is used)")


@register_selector("typiclust", TypiClustParams)
def select_typiclust(pool, budget: int, params: TypiClustParams, *, seed: int, progress: bool = False) -> Picks:
    """TypiClust: the most typical sample of each of the largest uncovered k-means clusters (ICML 2022)."""
    features = pool.features
    n = pool.size
    # Incremental: cluster into |L| + B clusters so the labeled samples hold clusters of their own.
    clusters = min(n, budget + len(pool.labeled))
    result = cluster_pool(features, clusters, seed=seed, max_iter=params.kmeans_max_iter,
                          minibatch_above=params.minibatch_above, progress=progress)
    labels = result.labels.numpy()
    sizes = np.bincount(labels, minlength=clusters)
    held = np.bincount(labels[pool.labeled], minlength=clusters) if len(pool.labeled) else np.zeros(clusters, int)
    eligible = np.ones(n, dtype=bool)
    eligible[pool.labeled] = False
    members = _members_by_cluster(labels, clusters)
    # Visit order: clusters holding the fewest picks first, then the largest; clusters smaller than
    # min_cluster_size only once every larger cluster is exhausted (the authors skip them).
    heap = [(int(sizes[c] < params.min_cluster_size), int(held[c]), -int(sizes[c]), c)
            for c in range(clusters) if sizes[c] > held[c]]
    heapq.heapify(heap)
    ranked: dict[int, list[int]] = {}
    picks, scores, pseudo = [], [], []
    bar = progress_bar(range(budget), desc="typiclust", enabled=progress)
    for _ in bar:
        small, count, negative_size, c = heapq.heappop(heap)
        if c not in ranked:
            ranked[c] = _by_typicality(features, members[c], params.neighbours)
        order = ranked[c]
        while order and not eligible[order[0][0]]:
            order.pop(0)
        row, typicality = order.pop(0)
        eligible[row] = False
        picks.append(row)
        scores.append(typicality)
        pseudo.append(c)
        if any(eligible[r] for r, _ in order):
            heapq.heappush(heap, (small, count + 1, negative_size, c))
    return Picks(indices=np.asarray(picks, dtype=np.int64), score=np.asarray(scores, dtype=np.float64),
                 pseudo_class=np.asarray(pseudo, dtype=np.int64),
                 info={"clusters": clusters, "inertia": result.inertia})


def _members_by_cluster(labels: np.ndarray, clusters: int) -> list[np.ndarray]:
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(clusters + 1))
    return [order[bounds[c] : bounds[c + 1]] for c in range(clusters)]


def typicality(features: torch.Tensor, neighbours: int) -> np.ndarray:
    """1 / (mean Euclidean distance to the ``neighbours`` nearest others + 1e-5), as the authors define it."""
    if features.shape[0] == 1:
        return np.ones(1)
    _, similarity = nearest_neighbours(features, neighbours)
    distance = euclidean_from_similarity(similarity).mean(dim=1).double().numpy()
    return 1.0 / (distance + 1e-5)


def _by_typicality(features: torch.Tensor, rows: np.ndarray, neighbours: int) -> list[tuple[int, float]]:
    """Members of one cluster, most typical first (typicality within the cluster only)."""
    values = typicality(features[torch.from_numpy(rows)], neighbours)
    order = np.argsort(-values, kind="stable")
    return [(int(rows[i]), float(values[i])) for i in order]


# ----------------------------------------------------------------------------------------------
# ProbCover


@dataclass(frozen=True)
class ProbCoverParams:
    """ProbCover parameters. ``delta`` None: the largest ball radius whose balls are ``purity`` pure
    with respect to a k-means clustering into ``purity_clusters`` clusters (the paper uses the number
    of classes), estimated exactly on ``purity_sample`` random balls. Coverage uses the
    ``neighbours``-nearest-neighbour graph (a ball holds at most that many points besides its
    centre); ``graph_cache`` is an optional directory that keeps the graph between runs on the same
    features."""

    delta: float | None = None
    purity: float = 0.95
    purity_clusters: int = 10
    purity_sample: int = 5000
    neighbours: int = 100
    kmeans_max_iter: int = 50
    graph_cache: str | None = None

    def __post_init__(self) -> None:
        require(self.delta is None or self.delta > 0, "delta", self.delta,
                "a positive ball radius (Euclidean, unit-norm features: at most 2) or None to estimate it")
        require(0 < self.purity <= 1, "purity", self.purity, "a fraction in (0, 1]")
        require(self.purity_clusters >= 2, "purity_clusters", self.purity_clusters, "an integer of at least 2")
        require(self.purity_sample >= 1, "purity_sample", self.purity_sample, "a positive integer")
        require(self.neighbours >= 1, "neighbours", self.neighbours, "a positive integer")
        require(self.kmeans_max_iter >= 0, "kmeans_max_iter", self.kmeans_max_iter, "a non-negative integer")


@register_selector("probcover", ProbCoverParams)
def select_probcover(pool, budget: int, params: ProbCoverParams, *, seed: int, progress: bool = False) -> Picks:
    """ProbCover: greedy maximum coverage of δ-balls on the nearest-neighbour graph (NeurIPS 2022)."""
    features = pool.features
    n = pool.size
    rng = np.random.default_rng(seed)
    delta = params.delta
    if delta is None:
        pseudo = kmeans(features, min(params.purity_clusters, n), seed=seed, max_iter=params.kmeans_max_iter).labels
        sample = np.sort(rng.choice(n, min(n, params.purity_sample), replace=False))
        delta = purity_radius(features, pseudo, sample, params.purity)
    neighbour_rows, distance = neighbour_graph(features, params.neighbours, params.graph_cache)
    graph = BallGraph.build(neighbour_rows, distance, delta)
    picks, gains = graph.greedy_cover(budget, pool.labeled, rng, progress)
    info = {"delta": float(delta), "covered_fraction": float(graph.covered.mean()),
            "mean_ball_size": float(len(graph.targets) / n),
            # balls larger than the graph holds are truncated to their `neighbours` nearest points
            "balls_at_graph_limit": float((distance[:, -1] < delta).mean()) if distance.shape[1] else 0.0}
    return Picks(indices=picks, score=gains.astype(np.float64), info=info)


def neighbour_graph(features: torch.Tensor, k: int, cache: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(rows, Euclidean distances), each (N, k) sorted nearest first; optionally cached on disk."""
    k = min(k, features.shape[0] - 1)
    path = None
    if cache:
        digest = hashlib.blake2b(features.numpy().tobytes(), digest_size=12).hexdigest()
        path = Path(storage.local_path(cache)) / f"knn-{digest}-k{k}.npz"
        if path.exists():
            with np.load(path) as stored:
                return stored["rows"], stored["distance"]
    rows, similarity = nearest_neighbours(features, k)
    rows, distance = rows.numpy(), euclidean_from_similarity(similarity).numpy()
    if path is not None:
        with storage.atomic_output(str(path)) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, rows=rows, distance=distance)
    return rows, distance


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
    """Directed coverage graph: x covers y when y is x itself or one of x's neighbours with ‖x − y‖ < δ."""

    sources: np.ndarray  # (E,) sorted, x of each edge
    targets: np.ndarray  # (E,) y of each edge
    out_start: np.ndarray  # (N + 1,) edges of x are out_start[x]:out_start[x + 1]
    in_order: np.ndarray  # (E,) edge numbers sorted by target
    in_start: np.ndarray  # (N + 1,)
    covered: np.ndarray  # (N,) bool

    @classmethod
    def build(cls, rows: np.ndarray, distance: np.ndarray, delta: float) -> "BallGraph":
        n, k = rows.shape
        inside = distance < delta
        sources = np.concatenate([np.arange(n), np.repeat(np.arange(n), k)[inside.ravel()]])
        targets = np.concatenate([np.arange(n), rows.ravel()[inside.ravel()]])
        order = np.argsort(sources, kind="stable")
        sources, targets = sources[order], targets[order]
        out_start = np.searchsorted(sources, np.arange(n + 1))
        in_order = np.argsort(targets, kind="stable")
        in_start = np.searchsorted(targets[in_order], np.arange(n + 1))
        return cls(sources, targets, out_start, in_order, in_start, np.zeros(n, dtype=bool))

    def _cover(self, row: int, gain: np.ndarray) -> None:
        """Mark the ball of ``row`` covered and withdraw those points from every ball's gain."""
        reached = self.targets[self.out_start[row] : self.out_start[row + 1]]
        fresh = reached[~self.covered[reached]]
        if len(fresh) == 0:
            return
        self.covered[fresh] = True
        lengths = self.in_start[fresh + 1] - self.in_start[fresh]
        offsets = np.repeat(self.in_start[fresh] - np.cumsum(lengths) + lengths, lengths)
        edges = self.in_order[offsets + np.arange(lengths.sum())]
        gain -= np.bincount(self.sources[edges], minlength=len(gain))

    def greedy_cover(self, budget: int, labeled: np.ndarray, rng: np.random.Generator, progress: bool = False):
        """Pick ``budget`` balls, each covering the most uncovered points; labeled balls come first.

        Once every point is covered the remaining picks are uniform among the unpicked (as the
        authors' code does). Returns (rows, gains).
        """
        n = len(self.covered)
        gain = np.diff(self.out_start).astype(np.int64)
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
