"""Baselines from the papers' tables (docs/methods.md §4): Random, K-Means, K-Center (FDS/CoreSet)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from ..params import Interval, Params, parameter
from ..progress import progress_bar
from ..seeding import numpy_generator
from .clustering import kmeans
from .registry import Picks, register_selector
from .similarity import snap_to_unique_samples


def _unlabeled(pool) -> np.ndarray:
    rows = np.arange(pool.size)
    return np.setdiff1d(rows, pool.labeled, assume_unique=True) if len(pool.labeled) else rows


@dataclass(frozen=True)
class RandomParams(Params):
    """Uniform random sampling has no parameters besides the seed."""


@register_selector("random", RandomParams)
def select_random(pool, budget: int, params: RandomParams, *, seed: int, progress: bool = False) -> Picks:
    """Random: a uniform sample without replacement."""
    candidates = _unlabeled(pool)
    return Picks(indices=candidates[numpy_generator(seed).choice(len(candidates), budget, replace=False)])


@dataclass(frozen=True)
class KMeansParams(Params):
    max_iter: int = parameter(50, Interval(int, 0), "Lloyd iterations at most")
    tol: float = parameter(1e-4, Interval(float, 0), "stop when the centers move less (relative)")
    init: Literal["k-means++", "random"] = parameter("k-means++", help="initial centers")


@register_selector("kmeans", KMeansParams)
def select_kmeans(pool, budget: int, params: KMeansParams, *, seed: int, progress: bool = False) -> Picks:
    """K-Means: B clusters, the nearest real sample to each center (duplicate-free)."""
    result = kmeans(pool.features, budget, seed=seed, max_iter=params.max_iter, tol=params.tol,
                    init=params.init, progress=progress)
    # For unit samples, the Euclidean-nearest sample to a center is the one with the largest
    # inner product, so the duplicate-free snapping of §2.6 applies unchanged.
    picks = snap_to_unique_samples(result.centers, pool.features, excluded=pool.labeled)
    return Picks(indices=picks, pseudo_class=np.arange(budget), info={"inertia": result.inertia,
                                                                      "iterations": result.iterations})


@dataclass(frozen=True)
class KCenterParams(Params):
    """Greedy farthest-point sampling; the first point is drawn with the seed."""


@register_selector("kcenter", KCenterParams)
def select_kcenter(pool, budget: int, params: KCenterParams, *, seed: int, progress: bool = False) -> Picks:
    """K-Center greedy (FDS / CoreSet): repeatedly take the sample farthest from the picks."""
    features = pool.features
    # On unit vectors ‖x − y‖² = 2 − 2⟨x, y⟩: track the best similarity to the picks, O(N) memory.
    best = torch.full((features.shape[0],), -float("inf"))
    for row in pool.labeled:
        torch.maximum(best, features @ features[int(row)], out=best)
    if len(pool.labeled):
        best[torch.from_numpy(pool.labeled)] = float("inf")
    picks = []
    if len(pool.labeled) == 0:
        first = int(numpy_generator(seed).integers(features.shape[0]))
    else:
        first = int(torch.argmin(best))
    picks.append(first)
    torch.maximum(best, features @ features[first], out=best)
    best[first] = float("inf")
    for _ in progress_bar(range(1, budget), desc="kcenter", enabled=progress):
        chosen = int(torch.argmin(best))
        picks.append(chosen)
        torch.maximum(best, features @ features[chosen], out=best)
        best[chosen] = float("inf")
    return Picks(indices=np.asarray(picks, dtype=np.int64), score=None)
