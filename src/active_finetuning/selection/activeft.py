"""ActiveFT (Xie et al., CVPR 2023): fit B centroids to the pool, then snap them to samples.

Follows ALGORITHMS.md §2 and, by default, the official code's loss and schedule (§2.4–2.6). The
gradient is computed in closed form rather than by autograd over the N×B similarity matrix:

* assignments ``k_i = argmax_j ⟨f_i, c_j⟩`` in no-grad chunks (§2.4 "gradient facts": the hard
  argmax is piecewise constant, so gathering ``m_i`` afterwards gives the identical gradient);
  by default a bfloat16 screen with a proven error bound finds the few candidate centroids of
  each sample and only those are scored in float32 (``similarity.ScreenedNearest``): the same
  argmax as the float32 product at about a fifth of its cost;
* the pull on centroid ``k`` is a sparse (B×N, one entry per sample) product with the samples, O(N·d);
* the repulsion needs only the B×B Gram matrix, processed in column chunks, O(B·chunk) memory.

So one iteration costs one N×B×d product (bfloat16, or float32 with ``assignment="dense"``) plus
O(N·d + B²·d), never an N×B or B×B matrix held whole.

``precision="float64"`` runs the same steps on a float64 copy of the pool (float64 re-scoring, sums,
loss and Adam state; the bfloat16 screen is unchanged): over hundreds of iterations float32 rounding
alone moves a few percent of the picks, so this is the mode that reproduces a float64 dense
reference pick for pick.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from ..progress import progress_bar
from .clustering import d2_draw
from .registry import Picks, register_selector, require
from .similarity import (
    ScreenedNearest,
    nearest_by_similarity,
    rows_per_block,
    snap_to_unique_samples,
    sparse_rows,
)


@dataclass(frozen=True)
class ActiveFTParams:
    """ActiveFT parameters (ALGORITHMS.md §2.8 and §8); defaults follow the official CIFAR script."""

    iterations: int = 300
    temperature: float = 0.07
    balance: float = 1.0
    lr: float = 1e-3
    loss_form: Literal["official", "paper"] = "official"
    renormalize: Literal["forward", "project"] = "forward"
    scheduler: Literal["none", "cosine"] = "none"
    pool_batch: int | None = None
    chunk_size: int | None = None
    snap_topk: int = 64
    assignment: Literal["screened", "dense"] = "screened"
    precision: Literal["float32", "float64"] = "float32"

    @property
    def dtype(self) -> torch.dtype:
        return torch.float64 if self.precision == "float64" else torch.float32

    def __post_init__(self) -> None:
        require(self.iterations >= 0, "iterations", self.iterations, "a non-negative integer")
        require(self.temperature > 0, "temperature", self.temperature, "a positive number")
        require(self.balance > 0, "balance", self.balance, "a positive number")
        require(self.lr > 0, "lr", self.lr, "a positive number")
        require(self.pool_batch is None or self.pool_batch > 0, "pool_batch", self.pool_batch,
                "a positive integer or None (full pool)")
        require(self.chunk_size is None or self.chunk_size > 0, "chunk_size", self.chunk_size,
                "a positive integer or None (automatic)")
        require(self.snap_topk > 0, "snap_topk", self.snap_topk, "a positive integer")


@register_selector("activeft", ActiveFTParams)
def select_activeft(pool, budget: int, params: ActiveFTParams, *, seed: int, progress: bool = False) -> Picks:
    """ActiveFT: distribution-matching centroids snapped to distinct samples (CVPR 2023)."""
    features = pool.features.to(params.dtype)  # precision="float64" holds a float64 copy: 8·N·d bytes
    n = features.shape[0]
    if len(pool.labeled):
        init = _init_away_from_labeled(features, pool.labeled, budget, seed)
    else:
        # §2.2: random.Random(seed).sample(range(N), B) reproduces C1's initialisation.
        init = random.Random(seed).sample(range(n), budget)
    fixed = torch.from_numpy(pool.labeled).long()
    theta = features[init].clone()
    result = fit_centroids(features, theta, params, seed=seed, progress=progress, fixed=features[fixed])
    centroids = torch.nn.functional.normalize(result.theta, dim=1)
    picks = snap_to_unique_samples(centroids, features, topk=params.snap_topk, excluded=pool.labeled)
    info = {"final_loss": result.final_loss, "initial_rows": init[:16] if n > 0 else []}
    return Picks(indices=picks, role="pick", info=info)


def _init_away_from_labeled(features: torch.Tensor, labeled: np.ndarray, budget: int, seed: int) -> list[int]:
    """Incremental selection: draw the new centroids by D² sampling from the labeled set onwards.

    A uniform draw (§2.2) puts centroids inside regions the labeled samples already cover, and
    the optimiser only moves them locally; k-means++-style sampling, seeded by the labeled samples,
    starts them where the labeled set is missing. Deterministic for a seed, O(N) memory.
    """
    rng = np.random.default_rng(seed)
    _, nearest = nearest_by_similarity(features, features[torch.from_numpy(labeled)])
    distance = (2 - 2 * nearest.double()).clamp_min_(0)  # squared Euclidean on unit rows
    distance[torch.from_numpy(labeled)] = 0
    chosen: list[int] = []
    for _ in range(budget):
        row = d2_draw(distance.numpy(), rng, taken=np.concatenate([labeled, chosen]))
        chosen.append(row)
        torch.minimum(distance, (2 - 2 * (features @ features[row]).double()).clamp_min_(0), out=distance)
        distance[row] = 0
    return chosen


@dataclass
class FitResult:
    theta: torch.Tensor
    final_loss: float


def fit_centroids(
    features: torch.Tensor,
    theta: torch.Tensor,
    params: ActiveFTParams,
    *,
    seed: int = 0,
    progress: bool = False,
    fixed: torch.Tensor | None = None,
) -> FitResult:
    """Optimise centroid parameters ``theta`` (B×d) on unit ``features`` (N×d); §2.4–2.5.

    ``fixed`` (L×d unit rows, may be empty) are centroids that take part in the assignment and the
    repulsion but never move: the already-labeled samples of an incremental selection.
    """
    n = features.shape[0]
    theta = theta.clone().to(params.dtype).requires_grad_(True)
    optimizer = torch.optim.Adam([theta], lr=params.lr)
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, params.iterations), eta_min=1e-6)
        if params.scheduler == "cosine"
        else None
    )
    fixed = fixed.to(params.dtype) if fixed is not None and len(fixed) else None
    batch = min(params.pool_batch, n) if params.pool_batch else None
    sampler = np.random.default_rng(seed)
    screen = ScreenedNearest(features, params.chunk_size) if params.assignment == "screened" else None
    loss_value = float("nan")
    bar = progress_bar(range(params.iterations), desc="activeft", enabled=progress)
    for _ in bar:
        rows, nearest = features, screen
        if batch is not None:
            subset = torch.from_numpy(np.sort(sampler.choice(n, batch, replace=False)))
            rows, nearest = features[subset], screen.subset(subset) if screen is not None else None
        with torch.no_grad():
            norms = theta.detach().norm(dim=1, keepdim=True)
            centroids = theta.detach() / norms
            grad_c, loss_value = _centroid_gradient(rows, centroids, fixed, params, nearest)
            # Chain rule through c = θ/‖θ‖ (normalisation inside the forward pass, §2.5).
            radial = (grad_c * centroids).sum(dim=1, keepdim=True)
            theta.grad = (grad_c - radial * centroids) / norms
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if params.renormalize == "project":
            with torch.no_grad():
                theta /= theta.norm(dim=1, keepdim=True)
        if progress:
            bar.set_postfix(loss=f"{loss_value:.4f}", refresh=False)
    return FitResult(theta.detach(), loss_value)


def _centroid_gradient(rows, centroids, fixed, params: ActiveFTParams, nearest=None):
    """Gradient of the loss with respect to the unit centroids, and the loss value.

    ``nearest`` (a ``ScreenedNearest`` over ``rows``) finds the assignments; by default the
    dense float32 product does.
    """
    tau = params.temperature
    b = centroids.shape[0]
    everything = centroids if fixed is None else torch.cat([centroids, fixed])
    chunk = params.chunk_size
    if nearest is None:
        assigned, similarity = nearest_by_similarity(rows, everything, chunk)
    else:
        assigned, similarity = nearest(everything)
    positive = similarity / tau  # m_i
    n = rows.shape[0]
    if params.loss_form == "official":
        log_r = _log_repulsion(everything, tau, chunk)  # log R_j over moving and fixed centroids
        z = math.log(params.balance) + log_r[assigned] - positive
        weight = _blockwise(torch.sigmoid, z)  # dℓ_i/dz_i; ℓ_i = softplus(z_i) (§2.4)
        loss_value = _mean(_blockwise(torch.nn.functional.softplus, z))
        grad = -_assigned_sum(rows, assigned, weight, everything.shape[0]) / (n * tau)
        per_center = torch.zeros(everything.shape[0], dtype=weight.dtype).index_add_(0, assigned, weight) / n
        grad += _repulsion_gradient(everything, per_center, tau, chunk)
    else:  # §2.3, the paper's two-term loss (self term excluded, no stop-gradient)
        grad = -_assigned_sum(rows, assigned, torch.ones(n, dtype=positive.dtype), everything.shape[0]) / (n * tau)
        repulsion_grad, repulsion_value = _paper_repulsion(everything, tau, chunk)
        grad += params.balance / b * repulsion_grad
        loss_value = -_mean(positive) + params.balance * repulsion_value / b
    return grad[:b], loss_value


# Element-wise work on at most this many elements runs on one thread (torch's grain size is 32,768).
SERIAL_ELEMENTS = 1 << 14


def _blockwise(function, values: torch.Tensor) -> torch.Tensor:
    """``function`` applied to fixed blocks of ``values``, so that the result does not depend on
    the number of threads: torch splits one large call between threads at offsets that depend on
    their number, and elements at a split go through the scalar code of ``exp``-based functions,
    which rounds differently from the vectorised code (1 ulp, enough to move the trajectory)."""
    if values.numel() <= SERIAL_ELEMENTS:
        return function(values)
    return torch.cat([function(part) for part in values.split(SERIAL_ELEMENTS)])


def _mean(values: torch.Tensor) -> float:
    """Mean in a fixed summation order (float64 partial sums of fixed blocks), whatever the threads."""
    return sum(float(part.double().sum()) for part in values.split(SERIAL_ELEMENTS)) / max(1, values.numel())


def _assigned_sum(rows, assigned, weight, centers: int) -> torch.Tensor:
    """Σ_{i: k_i = j} w_i f_i for every centroid j: a sparse (centers × N) product, O(N·d)."""
    order = torch.argsort(assigned, stable=True)
    crow = torch.zeros(centers + 1, dtype=torch.int64)
    torch.cumsum(torch.bincount(assigned, minlength=centers), 0, out=crow[1:])
    return sparse_rows(crow, order, weight[order], (centers, rows.shape[0])) @ rows


def _column_chunks(b: int, chunk: int | None):
    step = chunk or rows_per_block(b)
    for start in range(0, b, step):
        yield slice(start, min(b, start + step))


def _log_repulsion(centroids, tau, chunk):
    """log R_j = log Σ_l exp(⟨c_l, c_j⟩/τ), self term included (§2.4)."""
    b = centroids.shape[0]
    log_r = torch.empty(b, dtype=centroids.dtype)
    for rows in _column_chunks(b, chunk):
        log_r[rows] = torch.logsumexp(centroids[rows] @ centroids.T / tau, dim=1)
    return log_r


def _repulsion_gradient(centroids, per_center, tau, chunk):
    """Σ_i (σ(z_i)/N) ∂log R_{k_i}/∂c_{k_i}, with the other factor stop-gradient (§2.4 point 4).

    The Gram blocks are (chunk × B) and reduced along their contiguous rows: torch's softmax over
    the other dimension sums in an order that depends on the thread count, which would make the
    trajectory (and the picks) differ between 1 and 2 threads.
    """
    b = centroids.shape[0]
    grad = torch.zeros_like(centroids)
    for rows in _column_chunks(b, chunk):
        weights = torch.softmax(centroids[rows] @ centroids.T / tau, dim=1)  # (chunk, B)
        grad[rows] = (weights @ centroids) * (per_center[rows, None] / tau)
    return grad


def _paper_repulsion(centroids, tau, chunk):
    """Σ_j log Σ_{l≠j} exp(⟨c_j, c_l⟩/τ) and its gradient (§2.3), both Gram factors live."""
    b = centroids.shape[0]
    grad = torch.zeros_like(centroids)
    total = 0.0
    for rows in _column_chunks(b, chunk):
        logits = centroids[rows] @ centroids.T / tau
        logits[torch.arange(logits.shape[0]), torch.arange(rows.start, rows.stop)] = float("-inf")
        total += float(torch.logsumexp(logits, dim=1).sum())
        weights = torch.softmax(logits, dim=1)  # Q_jl for j in rows
        grad[rows] += weights @ centroids / tau
        grad += weights.T @ centroids[rows] / tau
    return grad, total
