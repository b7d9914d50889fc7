"""MaxHerding — Bae et al., "Generalized Coverage for More Robust Low-Budget Active Learning"
(ECCV 2024), the representation half of "Uncertainty Herding" (ICLR 2025; BorealisAI/uherding).

The picks S maximise the generalized coverage ``C(S) = mean_j max_{s ∈ S ∪ L} k(s, x_j)`` of the pool
under a Gaussian kernel ``k(x, y) = exp(-(‖x − y‖ / h)²)`` on unit-norm features (the authors'
``RBFKernel``, bandwidth h = 1), greedily: each step takes the unlabeled sample with the largest gain
``mean_j max(0, k(u, x_j) − m_j)``, ``m_j`` the coverage of x_j so far (labeled samples count as
picked before). docs/selection.md, "MaxHerding".

Where the authors' code draws 35,000 random candidates and holds their dense (L+U)² kernel, we keep
every sample as a candidate and never hold an N × N matrix: C is monotone submodular (facility
location), so a gain can only shrink as S grows, and *lazy greedy* (Minoux 1978) re-evaluates only
the candidates whose stale gain could still be the largest — the same picks as the dense greedy,
ties to the lowest row as its ``argmax``, for one N × d pass per evaluated candidate.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np
import torch

from ..params import Interval, Params, parameter
from ..progress import progress_bar
from .exact import exact_matmul
from .registry import Picks, register_selector
from .similarity import rows_per_block


# Stale gains re-evaluated together (one N × d pass for all of them).
LAZY_BATCH = 64


@dataclass(frozen=True)
class MaxHerdingParams(Params):
    """MaxHerding parameters; the default bandwidth is the authors' (``delta=1.0`` in their scripts)."""

    bandwidth: float = parameter(1.0, Interval(float, 0, closed="neither"),
                                 "h of the Gaussian kernel exp(-(‖x − y‖ / h)²) on unit-norm features")


@register_selector("maxherding", MaxHerdingParams)
def select_maxherding(pool, budget: int, params: MaxHerdingParams, *, seed: int, progress: bool = False) -> Picks:
    """MaxHerding: greedy maximum of the pool's kernel coverage (ECCV 2024 / ICLR 2025)."""
    features = pool.features
    n = pool.size
    coverage = torch.zeros(n, dtype=torch.float64)
    for start in range(0, len(pool.labeled), 256):
        rows = torch.from_numpy(pool.labeled[start : start + 256])
        coverage = torch.maximum(coverage, kernel_rows(features, rows, params.bandwidth).max(dim=0).values)
    candidates = np.setdiff1d(np.arange(n), pool.labeled)
    gains = initial_gains(features, candidates, coverage, params.bandwidth, progress)
    # a max-heap of stale gains, ties to the lowest row: entries (-gain, row)
    heap = [(-float(g), int(row)) for g, row in zip(gains, candidates)]
    heapq.heapify(heap)
    picks, scores = [], []
    for _ in progress_bar(range(budget), desc="maxherding", enabled=progress):
        while True:  # re-evaluate the top stale gains together: one pass over the pool per batch
            batch = [heapq.heappop(heap) for _ in range(min(LAZY_BATCH, len(heap)))]
            rows = torch.tensor([row for _, row in batch])
            block = kernel_rows(features, rows, params.bandwidth)
            fresh = (block - coverage).clamp_(min=0).sum(dim=1).tolist()
            best = max(range(len(batch)), key=lambda i: (fresh[i], -batch[i][1]))
            for i, (_, row) in enumerate(batch):
                if i != best:
                    heapq.heappush(heap, (-fresh[i], row))
            gain, row = fresh[best], batch[best][1]
            if not heap or (gain, -row) >= (-heap[0][0], -heap[0][1]):
                break  # the best: every other gain is at most its stale value
            heapq.heappush(heap, (-gain, row))
        picks.append(row)
        scores.append(gain / n)
        coverage = torch.maximum(coverage, block[best])
    return Picks(indices=np.asarray(picks, dtype=np.int64), score=np.asarray(scores),
                 info={"coverage": float(coverage.mean())})


def kernel_rows(features: torch.Tensor, rows: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """k(x_r, x_j) for the given rows against the whole pool, float64 (``len(rows)`` × N).

    On unit rows ‖x − y‖² = 2 − 2⟨x, y⟩; the products are float32 with full precision."""
    with exact_matmul():
        similarity = (features[rows] @ features.T).double()
    return torch.exp(-(2.0 - 2.0 * similarity).clamp_(min=0.0) / (bandwidth * bandwidth))


def initial_gains(features: torch.Tensor, candidates: np.ndarray, coverage: torch.Tensor, bandwidth: float,
                  progress: bool = False) -> np.ndarray:
    """Every candidate's gain before the first pick, in row blocks (never N × N at once)."""
    out = np.empty(len(candidates))
    step = max(1, rows_per_block(features.shape[0]) // 2)  # the float64 kernel block is twice as wide
    for start in progress_bar(range(0, len(candidates), step), desc="maxherding gains", enabled=progress):
        rows = torch.from_numpy(candidates[start : start + step])
        block = kernel_rows(features, rows, bandwidth)
        out[start : start + len(rows)] = (block - coverage).clamp_(min=0).sum(dim=1).numpy()
    return out
