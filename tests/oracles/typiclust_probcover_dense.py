"""Dense, loop-by-loop TypiClust typicality and ProbCover coverage: test oracles with full N×N matrices.

Written from the papers' definitions, not from the library's code, and only for small pools.
"""

from __future__ import annotations

import numpy as np


def pairwise_distance(features: np.ndarray) -> np.ndarray:
    diff = features[:, None, :].astype(np.float64) - features[None, :, :].astype(np.float64)
    return np.sqrt((diff**2).sum(axis=2))


def dense_typicality(features: np.ndarray, k: int, power: int = 1) -> np.ndarray:
    """Typicality(x) = 1 / (mean distance to its k nearest other samples + 1e-5) (Hacohen et al. 2022);
    ``power`` 2: squared distances, as the authors' code has them."""
    distance = pairwise_distance(features) ** power
    np.fill_diagonal(distance, np.inf)
    k = min(k, len(features) - 1)
    nearest = np.sort(distance, axis=1)[:, :k]
    return 1.0 / (nearest.mean(axis=1) + 1e-5)


def dense_probcover(features: np.ndarray, budget: int, delta: float, labeled=()) -> list[int]:
    """Greedy max coverage of the δ-balls {y : ‖x − y‖ < δ}, labeled balls covered first (Yehuda et al. 2022).

    Ties go to the lowest row; stops early when no ball covers a new point.
    """
    balls = pairwise_distance(features) < delta
    covered = np.zeros(len(features), dtype=bool)
    for row in labeled:
        covered |= balls[row]
    taken = set(labeled)
    picks = []
    for _ in range(budget):
        gains = [(-1 if x in taken else int((balls[x] & ~covered).sum())) for x in range(len(features))]
        best = int(np.argmax(gains))
        if gains[best] <= 0:
            break
        picks.append(best)
        taken.add(best)
        covered |= balls[best]
    return picks


def dense_pure_fraction(features: np.ndarray, pseudo: np.ndarray, delta: float) -> float:
    """Share of samples whose δ-ball holds only samples of their own pseudo-class."""
    balls = pairwise_distance(features) < delta
    pure = [(pseudo[balls[x]] == pseudo[x]).all() for x in range(len(features))]
    return float(np.mean(pure))


def typiclust_loop(features: np.ndarray, labels: np.ndarray, budget: int, labeled=(), k: int = 20,
                   min_cluster_size: int = 5, squared: bool = True) -> list[int]:
    """TypiClust's selection loop as the authors' code runs it, given the k-means labels.

    Clusters sorted by (labeled members ascending, size descending, id), those of ``min_cluster_size``
    samples or fewer left out, visited round robin; at each visit the typicality is computed anew on
    the cluster's members not yet labeled or picked, over ``min(k, members // 2)`` neighbours with
    squared distances (faiss ``IndexFlatL2``), and the first maximum is taken.
    """
    labels = np.array(labels)
    ids, sizes = np.unique(labels, return_counts=True)
    held = {c: sum(1 for row in labeled if labels[row] == c) for c in ids}
    order = sorted((held[c], -size, c) for c, size in zip(ids, sizes) if size > min_cluster_size)
    for row in labeled:
        labels[row] = -1
    picks = []
    for i in range(budget):
        cluster = order[i % len(order)][2]
        members = np.flatnonzero(labels == cluster)
        neighbours = min(k, len(members) // 2)
        if neighbours == 0:
            best = members[0]
        else:
            distance = pairwise_distance(features[members]) ** (2 if squared else 1)
            np.fill_diagonal(distance, np.inf)
            mean = np.sort(distance, axis=1)[:, :neighbours].mean(axis=1)
            best = members[int(np.argmax(1.0 / (mean + 1e-5)))]
        picks.append(int(best))
        labels[best] = -1
    return picks
