"""Memory-bounded k-means in torch (k-means++ or random init, Lloyd steps, chunked assignment)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..progress import progress_bar
from ..seeding import numpy_generator
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
    """Lloyd's k-means. A cluster left empty is relocated, as scikit-learn does, to the point
    farthest from its own center (which leaves its old cluster). Deterministic for a seed."""
    rng = numpy_generator(seed)
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
        _relocate_empty(points, labels, distances, sums, counts)
        occupied = counts > 0
        updated = centers.clone()
        updated[occupied] = sums[occupied] / counts[occupied, None]
        shift = float(((updated - centers) ** 2).sum(dim=1).sum())
        centers = updated
        labels, distances = nearest_center(points, centers)
        if shift <= threshold:
            break
    return KMeansResult(centers, labels, float(distances.sum()), iteration)


def _relocate_empty(points, labels, distances, sums, counts) -> None:
    """Give each empty cluster the point farthest from its center (ties → lowest row), moving that
    point's contribution out of its old cluster (scikit-learn's rule)."""
    empty = (counts == 0).nonzero().squeeze(1)
    if not len(empty):
        return
    order = np.lexsort((np.arange(len(distances)), -distances.double().numpy()))[: len(empty)]
    for cluster, row in zip(empty.tolist(), order.tolist()):
        old = int(labels[row])
        if counts[old] <= 1:  # its only member: moving it would just empty another cluster
            continue
        sums[old] -= points[row]
        counts[old] -= 1
        sums[cluster] = points[row]
        counts[cluster] = 1
        labels[row] = cluster


@torch.no_grad()
def minibatch_kmeans(
    points: torch.Tensor,
    k: int,
    *,
    seed: int = 0,
    batch_size: int = 5000,
    max_epochs: int = 100,
    max_no_improvement: int = 10,
    init_size: int | None = None,
    progress: bool = False,
) -> KMeansResult:
    """Mini-batch k-means (Sculley, WWW 2010) for many clusters: O(batch·k) work per step.

    k-means++ seeding on a random sample of ``init_size`` rows (default ``max(3k, 3·batch_size)``),
    then updates on random batches, each center moving towards the mean of its batch members with
    a per-center rate 1/(samples seen); finally one full chunked assignment. The budget is in
    epochs (passes over the pool), and the run stops early when the smoothed batch inertia has not
    improved for ``max_no_improvement`` batches: scikit-learn's ``MiniBatchKMeans`` rules, which the
    TypiClust authors use (batch 5,000, 100 epochs). Deterministic for a seed. Centers that never
    win a sample keep their seed position.
    """
    rng = numpy_generator(seed)
    n = points.shape[0]
    batch_size = min(batch_size, n)
    init_size = min(n, init_size or max(3 * k, 3 * batch_size))
    sample = points[torch.from_numpy(np.sort(rng.choice(n, init_size, replace=False)))]
    centers = kmeans_plusplus(sample, k, rng, progress)
    seen = torch.zeros(k)
    steps = max(1, -(-max_epochs * n // batch_size))
    alpha = min(1.0, 2 * batch_size / (n + 1))  # weight of a batch in the smoothed inertia
    smoothed, best, stale = None, float("inf"), 0
    step = 0
    for step in progress_bar(range(1, steps + 1), desc="mini-batch k-means", enabled=progress):
        batch = points[torch.from_numpy(rng.choice(n, batch_size, replace=False))]
        labels, distances = nearest_center(batch, centers)
        counts = torch.bincount(labels, minlength=k).float()
        sums = torch.zeros_like(centers).index_add_(0, labels, batch)
        seen += counts
        hit = counts > 0
        centers[hit] += (sums[hit] - counts[hit, None] * centers[hit]) / seen[hit, None]
        inertia = float(distances.double().sum()) / batch_size
        smoothed = inertia if smoothed is None else smoothed * (1 - alpha) + inertia * alpha
        if smoothed < best:
            best, stale = smoothed, 0
        else:
            stale += 1
            if stale >= max_no_improvement:
                break
    labels, distances = nearest_center(points, centers)
    return KMeansResult(centers, labels, float(distances.sum()), step)


def cluster_pool(points: torch.Tensor, k: int, *, seed: int = 0, max_iter: int = 300, minibatch_above: int = 50,
                 batch_size: int = 5000, epochs: int = 100, progress: bool = False) -> KMeansResult:
    """k-means into ``k`` clusters: Lloyd's, or mini-batch k-means when ``k`` exceeds ``minibatch_above``
    (the TypiClust authors' rule; scikit-learn's defaults of 300 iterations and 100 epochs)."""
    if k > minibatch_above:
        return minibatch_kmeans(points, k, seed=seed, batch_size=batch_size, max_epochs=epochs, progress=progress)
    return kmeans(points, k, seed=seed, max_iter=max_iter, progress=progress)
