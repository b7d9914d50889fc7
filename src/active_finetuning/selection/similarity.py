"""Chunked similarity search: nothing here holds an N×B matrix whole."""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import torch

# Elements of a float32 block computed at once (64 MiB): bounds every temporary here.
BLOCK_ELEMENTS = 1 << 24
# A float32 GEMM rounds each element the same way whatever the number of rows once there are
# enough of them (a few rows take other kernels): blocks of fewer rows are padded to this many.
GEMM_MIN_ROWS = 64
# Centers per snapping block: the pool is read once per this many centers.
SNAP_CENTER_ROWS = 8192


@contextlib.contextmanager
def exact_matmul():
    """Full-precision float32 GEMMs inside the block, whatever the user set with
    ``torch.set_float32_matmul_precision`` ("medium" lets oneDNN compute float32 products in
    bfloat16, which would change the assignment and void every error bound); the setting is
    restored afterwards."""
    previous = torch.get_float32_matmul_precision()
    if previous == "highest":
        yield
        return
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


def rows_per_block(columns: int, block_elements: int = BLOCK_ELEMENTS) -> int:
    """How many rows of a ``rows × columns`` float32 block fit in ``block_elements``."""
    return max(1, block_elements // max(1, columns))


@torch.no_grad()
def nearest_by_similarity(points: torch.Tensor, centers: torch.Tensor, chunk: int | None = None):
    """For every row of ``points`` the most similar row of ``centers`` (inner product).

    Returns ``(index, similarity)``; ties go to the lowest center index (``torch.max`` rule).
    """
    n = points.shape[0]
    chunk = max(chunk or rows_per_block(centers.shape[0]), GEMM_MIN_ROWS)
    index = torch.empty(n, dtype=torch.int64)
    similarity = torch.empty(n, dtype=centers.dtype)
    with exact_matmul():
        for _, rows in aligned_blocks(n, chunk):
            value, where = (points[rows] @ centers.T).max(dim=1)
            index[rows] = where
            similarity[rows] = value
    return index, similarity


@torch.no_grad()
def snap_to_unique_samples(
    centers: torch.Tensor,
    pool: torch.Tensor,
    topk: int = 64,
    excluded: np.ndarray | None = None,
) -> np.ndarray:
    """Map each center, in order, to its most similar pool row not already taken (the authors' greedy snapping).

    Equivalent to C1's full descending sort per centroid (ties → lowest row), but each centroid
    looks only at its ``topk`` most similar rows, found in one blocked pass over the pool. Its
    full row is computed again only when the candidates cannot decide: all taken, or the first
    free one tied with the last listed (centroid j can be blocked by at most j earlier picks).
    ``excluded`` rows are never taken.
    """
    n = pool.shape[0]
    taken = np.zeros(n, dtype=bool)
    if excluded is not None and len(excluded):
        taken[excluded] = True
    values, candidates = _top_candidates(centers, pool, min(topk, n))
    picks = np.empty(centers.shape[0], dtype=np.int64)
    for j, (value, row) in enumerate(zip(values, candidates)):
        free = np.flatnonzero(~taken[row])
        if len(free) and (value[free[0]] > value[-1] or len(row) == n):
            choice = int(row[free[0]])
        else:
            order = torch.argsort(_similarity_row(centers, j, pool), descending=True, stable=True).numpy()
            choice = int(order[np.flatnonzero(~taken[order])[0]])
        taken[choice] = True
        picks[j] = choice
    return picks


def _snap_blocks(centers: int, pool: int):
    """Center rows and pool rows per similarity block: many centers at once, so that the pool is
    read once (or a few times), and at most ``BLOCK_ELEMENTS`` elements per block."""
    center_rows = max(1, min(centers, SNAP_CENTER_ROWS))
    return center_rows, min(pool, rows_per_block(center_rows))


def _top_candidates(centers: torch.Tensor, pool: torch.Tensor, k: int):
    """Each center's ``k`` most similar pool rows, every row more similar than the last listed
    included, ordered by descending similarity then row; and the similarities (numpy arrays)."""
    b, n = centers.shape[0], pool.shape[0]
    center_rows, pool_rows = _snap_blocks(b, n)
    values = np.empty((b, k), dtype=np.float64 if centers.dtype == torch.float64 else np.float32)
    rows = np.empty((b, k), dtype=np.int64)
    for first in range(0, b, center_rows):
        part = slice(first, min(b, first + center_rows))
        best = torch.empty((part.stop - first, 0), dtype=centers.dtype)
        where = torch.empty((part.stop - first, 0), dtype=torch.int64)
        for start in range(0, n, pool_rows):
            similarity = centers[part] @ pool[start : start + pool_rows].T
            listed = torch.arange(start, start + similarity.shape[1]).expand(similarity.shape[0], -1)
            merged, merged_rows = torch.cat([best, similarity], dim=1), torch.cat([where, listed], dim=1)
            best, index = torch.topk(merged, min(k, merged.shape[1]), dim=1, sorted=False)
            where = torch.gather(merged_rows, 1, index)
        order = np.lexsort((where.numpy(), -best.numpy()))  # along each row
        values[part] = np.take_along_axis(best.numpy(), order, 1)
        rows[part] = np.take_along_axis(where.numpy(), order, 1)
    return values, rows


def _similarity_row(centers: torch.Tensor, j: int, pool: torch.Tensor) -> torch.Tensor:
    """Center ``j``'s similarity to every pool row, computed by the same GEMM kernel as the
    candidate blocks (at least ``GEMM_MIN_ROWS`` center rows)."""
    first = max(0, min(j, centers.shape[0] - GEMM_MIN_ROWS))
    _, pool_rows = _snap_blocks(centers.shape[0], pool.shape[0])
    slab = centers[first : first + GEMM_MIN_ROWS]
    return torch.cat([(slab @ pool[start : start + pool_rows].T)[j - first]
                      for start in range(0, pool.shape[0], pool_rows)])


def sparse_rows(crow, cols, values, size) -> torch.Tensor:
    """A CSR matrix (torch warns once that CSR support is in beta; the operations used here,
    CSR @ dense and the sampled product, are stable on CPU)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, cols, values, size=size, check_invariants=False)


def aligned_blocks(n: int, rows: int):
    """``(start, slice)`` blocks of ``rows`` rows; a short last block is extended backwards to
    ``GEMM_MIN_ROWS`` rows (same GEMM kernel as the others), its rows before ``start`` repeats."""
    for start in range(0, n, rows):
        yield start, slice(max(0, min(start, n - GEMM_MIN_ROWS)), min(n, start + rows))
