"""Memory-bounded k-means in torch (k-means++ or random init, Lloyd steps, chunked assignment)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..progress import progress_bar
from .similarity import rows_per_block


@dataclass
class KMeansResult:
    centers: torch.Tensor  # (k, d)
    labels: torch.Tensor  # (N,) int64
    inertia: float
    iterations: int


@torch.no_grad()
def nearest_center(points: torch.Tensor, centers: torch.Tensor):
    """Euclidean nearest center of every point, chunked: (labels, squared distances)."""
    center_sq = (centers * centers).sum(dim=1)
    labels = torch.empty(points.shape[0], dtype=torch.int64)
    distances = torch.empty(points.shape[0])
    chunk = rows_per_block(centers.shape[0])
    for start in range(0, points.shape[0], chunk):
        block = points[start : start + chunk]
        # ‖x − c‖² = ‖x‖² + ‖c‖² − 2⟨x, c⟩; the ‖x‖² term does not change the argmin.
        scores = center_sq[None, :] - 2 * (block @ centers.T)
        value, where = scores.min(dim=1)
        labels[start : start + chunk] = where
        distances[start : start + chunk] = (value + (block * block).sum(dim=1)).clamp_min_(0)
    return labels, distances


@torch.no_grad()
def kmeans_plusplus(points: torch.Tensor, k: int, rng: np.random.Generator, progress: bool = False) -> torch.Tensor:
    """k-means++ seeding (one candidate per step), O(N) memory.

    Each step costs one matrix-vector product: ‖x − c‖² = ‖x‖² + ‖c‖² − 2⟨x, c⟩. (An N × d
    difference per step made seeding three quarters of a K = 250 k-means on 50,000 × 1280.)
    """
    n = points.shape[0]
    norms = (points * points).sum(dim=1)

    def squared_distances_to(row: int) -> torch.Tensor:
        distances = (norms + norms[row] - 2 * (points @ points[row])).clamp_min_(0)
        distances[row] = 0  # exact for the center itself, so it is never drawn again
        return distances

    chosen = [int(rng.integers(n))]
    closest = squared_distances_to(chosen[0])
    for _ in progress_bar(range(1, k), desc="k-means++", enabled=progress):
        chosen.append(d2_draw(closest.double().numpy(), rng, taken=chosen))
        torch.minimum(closest, squared_distances_to(chosen[-1]), out=closest)
    return points[chosen].clone()


def d2_draw(weights: np.ndarray, rng: np.random.Generator, taken) -> int:
    """One k-means++ (D²) draw: a row with probability proportional to ``weights``, its squared
    distance to the nearest point chosen so far; when every weight is zero (each row coincides
    with a chosen point), a uniform draw among the rows not in ``taken``."""
    total = weights.sum()
    if total <= 0:
        free = np.setdiff1d(np.arange(len(weights)), np.asarray(taken, dtype=np.int64))
        return int(free[rng.integers(len(free))])
    return int(min(np.searchsorted(np.cumsum(weights), rng.random() * total, side="right"), len(weights) - 1))


@torch.no_grad()
def kmeans(
    points: torch.Tensor,
    k: int,
    *,
    seed: int = 0,
    max_iter: int = 50,
    tol: float = 1e-4,
    init: str = "k-means++",
    progress: bool = False,
) -> KMeansResult:
    """Lloyd's k-means; empty clusters keep their previous center. Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    n = points.shape[0]
    if init == "k-means++":
        centers = kmeans_plusplus(points, k, rng, progress)
    else:
        centers = points[torch.from_numpy(rng.choice(n, k, replace=False))].clone()
    threshold = tol * float(points.var(dim=0).mean())
    labels, distances = nearest_center(points, centers)
    iteration = 0
    for iteration in progress_bar(range(1, max_iter + 1), desc="k-means", enabled=progress):
        sums = torch.zeros_like(centers).index_add_(0, labels, points)
        counts = torch.bincount(labels, minlength=k).float()
        occupied = counts > 0
        updated = centers.clone()
        updated[occupied] = sums[occupied] / counts[occupied, None]
        shift = float(((updated - centers) ** 2).sum(dim=1).sum())
        centers = updated
        labels, distances = nearest_center(points, centers)
        if shift <= threshold:
            break
    return KMeansResult(centers, labels, float(distances.sum()), iteration)


@torch.no_grad()
def minibatch_kmeans(
    points: torch.Tensor,
    k: int,
    *,
    seed: int = 0,
    batch_size: int = 4096,
    steps: int = 100,
    init_size: int | None = None,
    progress: bool = False,
) -> KMeansResult:
    """Mini-batch k-means (Sculley, WWW 2010) for many clusters: O(batch·k) work per step.

    k-means++ seeding on a random sample of ``init_size`` rows (default ``max(3k, 3·batch_size)``),
    then ``steps`` updates on random batches, each center moving towards the mean of its batch
    members with a per-center rate 1/(samples seen); finally one full chunked assignment.
    Deterministic for a seed. Centers that never win a sample keep their seed position.
    """
    rng = np.random.default_rng(seed)
    n = points.shape[0]
    init_size = min(n, init_size or max(3 * k, 3 * batch_size))
    sample = points[torch.from_numpy(np.sort(rng.choice(n, init_size, replace=False)))]
    centers = kmeans_plusplus(sample, k, rng, progress)
    seen = torch.zeros(k)
    for _ in progress_bar(range(steps), desc="mini-batch k-means", enabled=progress):
        batch = points[torch.from_numpy(rng.choice(n, min(batch_size, n), replace=False))]
        labels, _ = nearest_center(batch, centers)
        counts = torch.bincount(labels, minlength=k).float()
        sums = torch.zeros_like(centers).index_add_(0, labels, batch)
        seen += counts
        hit = counts > 0
        centers[hit] += (sums[hit] - counts[hit, None] * centers[hit]) / seen[hit, None]
    labels, distances = nearest_center(points, centers)
    return KMeansResult(centers, labels, float(distances.sum()), steps)


def cluster_pool(points: torch.Tensor, k: int, *, seed: int = 0, max_iter: int = 50, minibatch_above: int = 50,
                 progress: bool = False) -> KMeansResult:
    """k-means into ``k`` clusters: Lloyd's, or mini-batch k-means when ``k`` exceeds ``minibatch_above``."""
    if k > minibatch_above:
        return minibatch_kmeans(points, k, seed=seed, progress=progress)
    return kmeans(points, k, seed=seed, max_iter=max_iter, progress=progress)
