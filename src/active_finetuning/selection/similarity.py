"""Chunked similarity search: nothing here holds an N×B matrix whole."""

from __future__ import annotations

import numpy as np
import torch

from .exact import MARGIN, dot_error, exact_best, exact_matmul

# Elements of a float32 block computed at once (64 MiB): bounds every temporary here.
BLOCK_ELEMENTS = 1 << 24
# A float32 GEMM rounds each element the same way whatever the number of rows once there are
# enough of them (a few rows take other kernels): blocks of fewer rows are padded to this many.
GEMM_MIN_ROWS = 64
# Centers per snapping block: the pool is read once per this many centers.
SNAP_CENTER_ROWS = 8192
# Elements of a row-norm block (16 MiB in float64): its float64 copy stays small.
NORM_BLOCK_ELEMENTS = 1 << 21


def rows_per_block(columns: int, block_elements: int = BLOCK_ELEMENTS) -> int:
    """How many rows of a ``rows × columns`` float32 block fit in ``block_elements``."""
    return max(1, block_elements // max(1, columns))


def row_norms(points: torch.Tensor) -> torch.Tensor:
    """Float64 norms of the rows, block by block (no float64 copy of the whole pool: 512 MB for
    50,000 × 1,280 features)."""
    norms = torch.empty(points.shape[0], dtype=torch.float64)
    step = rows_per_block(points.shape[1], NORM_BLOCK_ELEMENTS)
    for start in range(0, points.shape[0], step):
        norms[start : start + step] = torch.linalg.vector_norm(points[start : start + step].double(), dim=1)
    return norms


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
    reaching: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Map each center, in order, to its most similar pool row not already taken (the authors'
    greedy snapping: a full descending sort per center, ties to the lowest row).

    Similarity is the exact one, as in the assignment (docs/selection.md, "Exact assignment"): the
    free rows whose float32 similarity is within its rounding bound of the best free one are
    compared exactly. Each center looks only at its ``topk`` most similar rows, found in one blocked
    pass over the pool; its full row is computed again only when they cannot decide (all taken, or
    the window of near-ties reaching the last listed: center j can be blocked by at most j earlier
    picks). ``excluded`` rows are never taken.

    ``reaching`` (``bounds.BoundedAssignment.reaching``: per center a level and the rows whose similarity may
    reach it, every other row's being below it) replaces the pass over the pool: each center's rows are
    computed alone, and they decide where the best free one is, within its rounding bound, at or above the level.
    The picks are the same (docs/selection.md, "Snapping to samples").
    """
    n = pool.shape[0]
    taken = np.zeros(n, dtype=bool)
    if excluded is not None and len(excluded):
        taken[excluded] = True
    pool_max = float(row_norms(pool).max()) if n else 0.0
    center_norms = torch.linalg.vector_norm(centers.double(), dim=1).numpy()
    unit = dot_error(pool.shape[1], pool.dtype) * pool_max * (1 + MARGIN)
    if reaching is None:
        values, candidates = _top_candidates(centers, pool, min(topk, n))
        floors = values[:, -1] if n else np.zeros(centers.shape[0])
        floors = np.where([len(row) == n for row in candidates], -np.inf, floors)
    else:
        floors, candidates, values = _reaching_candidates(reaching, unit * center_norms)
    picks = np.empty(centers.shape[0], dtype=np.int64)
    for j, (value, row) in enumerate(zip(values, candidates)):
        window = 2 * unit * center_norms[j]  # two computed similarities may differ by this much
        free = np.flatnonzero(~taken[row])
        if not (len(free) and value[free[0]] - window > floors[j]):
            row = np.arange(n)[~taken]  # the candidates cannot decide: the whole row
            value = _similarity_row(centers, j, pool).numpy()[row]
            free = np.argsort(-value, kind="stable")
        near = row[free[value[free] >= value[free[0]] - window]].tolist()
        choice = int(near[0]) if len(near) == 1 else exact_best(centers[j], pool, near)
        taken[choice] = True
        picks[j] = choice
    return picks


def _reaching_candidates(reaching, errors: np.ndarray):
    """Per center, the rows ``reaching`` lists with their computed similarities, by descending similarity then
    row; and a floor that every row not listed stays below, in the units of ``snap_to_unique_samples``'s check
    (``value − window > floor``, window twice ``errors``): the level, minus one rounding bound, so that the best
    free row listed passes only where its true similarity is at or above the level."""
    level, starts, rows, values = reaching
    listed, computed = [], []
    for j in range(len(level)):
        row, value = rows[starts[j] : starts[j + 1]], values[starts[j] : starts[j + 1]]
        order = np.lexsort((row, -value))
        listed.append(row[order])
        computed.append(value[order])
    return level - errors, listed, computed


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
    """Center ``j``'s float32 (or float64) similarity to every pool row."""
    return pool @ centers[j]


def aligned_blocks(n: int, rows: int):
    """``(start, slice)`` blocks of ``rows`` rows; a short last block is extended backwards to
    ``GEMM_MIN_ROWS`` rows (same GEMM kernel as the others), its rows before ``start`` repeats."""
    for start in range(0, n, rows):
        yield start, slice(max(0, min(start, n - GEMM_MIN_ROWS)), min(n, start + rows))
