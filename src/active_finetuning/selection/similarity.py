"""Chunked similarity search: nothing here holds an N×B matrix whole (ALGORITHMS.md §2.7)."""

from __future__ import annotations

import numpy as np
import torch

# Elements of a float32 block computed at once (64 MiB): bounds every temporary here.
BLOCK_ELEMENTS = 1 << 24


def rows_per_block(columns: int, block_elements: int = BLOCK_ELEMENTS) -> int:
    """How many rows of a ``rows × columns`` float32 block fit in ``block_elements``."""
    return max(1, block_elements // max(1, columns))


@torch.no_grad()
def nearest_by_similarity(points: torch.Tensor, centers: torch.Tensor, chunk: int | None = None):
    """For every row of ``points`` the most similar row of ``centers`` (inner product).

    Returns ``(index, similarity)``; ties go to the lowest center index (``torch.max`` rule).
    """
    chunk = chunk or rows_per_block(centers.shape[0])
    index = torch.empty(points.shape[0], dtype=torch.int64)
    similarity = torch.empty(points.shape[0], dtype=torch.float32)
    for start in range(0, points.shape[0], chunk):
        block = points[start : start + chunk] @ centers.T
        value, where = block.max(dim=1)
        index[start : start + chunk] = where
        similarity[start : start + chunk] = value
    return index, similarity


@torch.no_grad()
def snap_to_unique_samples(
    centers: torch.Tensor,
    pool: torch.Tensor,
    topk: int = 64,
    excluded: np.ndarray | None = None,
) -> np.ndarray:
    """Map each center, in order, to its most similar pool row not already taken (§2.6).

    Equivalent to C1's full descending sort per centroid, but each centroid looks only at its
    ``topk`` most similar rows and falls back to a full sort of its own row only when all of them
    are taken (centroid j can be blocked by at most j earlier picks). ``excluded`` rows are never
    taken.
    """
    n = pool.shape[0]
    taken = np.zeros(n, dtype=bool)
    if excluded is not None and len(excluded):
        taken[excluded] = True
    k = min(topk, n)
    picks = np.empty(centers.shape[0], dtype=np.int64)
    chunk = rows_per_block(n)
    for start in range(0, centers.shape[0], chunk):
        block = centers[start : start + chunk] @ pool.T
        candidates = torch.topk(block, k, dim=1, sorted=True).indices.numpy()
        for offset, row in enumerate(candidates):
            free = row[~taken[row]]
            if len(free):
                choice = int(free[0])
            else:
                order = torch.argsort(block[offset], descending=True, stable=True).numpy()
                choice = int(order[np.flatnonzero(~taken[order])[0]])
            taken[choice] = True
            picks[start + offset] = choice
    return picks
