"""Dense, loop-by-loop TypiClust typicality and ProbCover coverage: test oracles with full N×N matrices.

Written from the papers' definitions, not from the library's code, and only for small pools.
"""

from __future__ import annotations

import numpy as np


def pairwise_distance(features: np.ndarray) -> np.ndarray:
    diff = features[:, None, :].astype(np.float64) - features[None, :, :].astype(np.float64)
    return np.sqrt((diff**2).sum(axis=2))


def dense_typicality(features: np.ndarray, k: int) -> np.ndarray:
    """Typicality(x) = 1 / (mean distance to its k nearest other samples + 1e-5) (Hacohen et al. 2022)."""
    distance = pairwise_distance(features)
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
