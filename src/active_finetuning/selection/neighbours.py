"""Exact k-nearest neighbours of unit rows by chunked matrix products: O(N·k) memory, never N×N."""

from __future__ import annotations

import torch

from .similarity import rows_per_block


@torch.no_grad()
def nearest_neighbours(
    points: torch.Tensor,
    k: int,
    *,
    queries: torch.Tensor | None = None,
    exclude_self: bool = True,
    chunk: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` most similar rows of ``points`` (inner product) for every query row.

    Without ``queries`` the rows of ``points`` query themselves and, with ``exclude_self``, a row
    is not its own neighbour. Returns ``(indices, similarities)``, each (Q, k), most similar first.
    For unit rows the most similar are the Euclidean nearest (‖x − y‖² = 2 − 2⟨x, y⟩).
    """
    self_query = queries is None
    queries = points if self_query else queries
    n = points.shape[0]
    k = min(k, n - (1 if self_query and exclude_self else 0))
    indices = torch.empty((queries.shape[0], max(k, 0)), dtype=torch.int64)
    similarities = torch.empty((queries.shape[0], max(k, 0)), dtype=torch.float32)
    if k <= 0:
        return indices, similarities
    step = chunk or rows_per_block(n)
    for start in range(0, queries.shape[0], step):
        block = queries[start : start + step] @ points.T
        if self_query and exclude_self:
            rows = torch.arange(block.shape[0])
            block[rows, rows + start] = -float("inf")
        value, where = torch.topk(block, k, dim=1, sorted=True)
        indices[start : start + step] = where
        similarities[start : start + step] = value
    return indices, similarities


def euclidean_from_similarity(similarity: torch.Tensor) -> torch.Tensor:
    """Euclidean distance between unit rows from their inner product."""
    return (2 - 2 * similarity).clamp_min(0).sqrt()


@torch.no_grad()
def nearest_other_group(points: torch.Tensor, groups: torch.Tensor, rows: torch.Tensor,
                        chunk: int | None = None) -> torch.Tensor:
    """For each of ``rows``, the largest inner product with a row of ``points`` in another group.

    ``groups`` (N,) labels every row of ``points``; a row whose group holds the whole pool gets −inf.
    """
    best = torch.empty(len(rows), dtype=torch.float32)
    step = chunk or rows_per_block(points.shape[0])
    for start in range(0, len(rows), step):
        batch = rows[start : start + step]
        block = points[batch] @ points.T
        block[groups[batch][:, None] == groups[None, :]] = -float("inf")
        best[start : start + step] = block.max(dim=1).values
    return best
