"""Chunked similarity search: nothing here holds an N×B matrix whole (ALGORITHMS.md §2.7)."""

from __future__ import annotations

import contextlib
import math
import warnings

import numpy as np
import torch

# Elements of a float32 block computed at once (64 MiB): bounds every temporary here.
BLOCK_ELEMENTS = 1 << 24
# Screen blocks are smaller (4 MiB of bfloat16): they stay in cache while their candidates are read.
SCREEN_BLOCK_ELEMENTS = 1 << 21
# A float32 GEMM rounds each element the same way whatever the number of rows once there are
# enough of them (a few rows take other kernels): blocks of fewer rows are padded to this many.
GEMM_MIN_ROWS = 64
# Centers per snapping block: the pool is read once per this many centers.
SNAP_CENTER_ROWS = 8192


@contextlib.contextmanager
def one_thread():
    """Run torch on one thread inside the block: small products and elementwise passes gain
    nothing from a second thread and stall on it when the machine is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


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
    for _, rows in _aligned_blocks(n, chunk):
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
    """Map each center, in order, to its most similar pool row not already taken (§2.6).

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


# Unit roundoff of bfloat16 (8 significant bits), float32 (24 bits) and float64 (53 bits).
BF16_UNIT = 2.0**-8
FP32_UNIT = 2.0**-24
FP64_UNIT = 2.0**-53


class ScreenedNearest:
    """Exact nearest-center search for fixed ``points`` and moving centers, with a bfloat16 screen.

    Returns the same assignment as ``nearest_by_similarity`` (the argmax of the float32 GEMM,
    ties to the lowest center index; similarities equal to within float32 rounding) at about a
    fifth of the cost on CPUs with bfloat16 matrix instructions. Each call:

    1. *Screen*: one bfloat16 product ``o = bf16(f) · bf16(c_j − ν)^T`` in row chunks, with ``ν``
       the mean center. Subtracting ``ν`` shifts every row by the constant ``⟨f, ν⟩`` (argmax
       unchanged) and shrinks both the rounded factor and the products, hence the error bound.
    2. *Bound*: for every pair ``|o_ij − (⟨f_i, c_j⟩ − ⟨f_i, ν⟩)| ≤ A_i + β|o_ij|`` with
       ``A_i = ‖f̂_i‖(max_j ‖r_j‖ + γ max_j ‖ĉ_j‖) + ‖f_i − f̂_i‖ max_j ‖c_j − ν‖`` (input rounding,
       Cauchy–Schwarz on the exact residuals ``r_j = (c_j − ν) − ĉ_j``; float32 accumulation of
       exact bfloat16 products, ``γ = K u₃₂ / (1 − K u₃₂)``) and ``β = u₁₆/(1 − u₁₆)`` for the
       rounding of the output to bfloat16. A float32 re-score is within ``g_i = γ‖f_i‖ max‖c_j‖``
       of the true product.
    3. *Candidates*: every center whose upper bound reaches the lower bound of the row's screen
       maximum. Any center left out scores strictly below that maximum's float32 re-score, so the
       float32 argmax, and every center tied with it, is always a candidate.
    4. *Re-score* only the candidate pairs in float32 (a sampled product, about 1.4 pairs per row
       on real features) and take the argmax, lowest index first. Rows whose two best candidates
       are within float32 rounding of each other (about 1% on real features) are re-scored with
       the float32 GEMM itself, so even exact ties and 1-ulp near-ties resolve as it resolves them.

    The bound assumes the bfloat16 GEMM accumulates in float32 (as oneDNN does); a probe checks
    this once per shape and falls back to the dense float32 product if it does not.
    """

    def __init__(self, points: torch.Tensor, chunk: int | None = None):
        self.points = points
        self.chunk = chunk
        self.rounded = points.to(torch.bfloat16)
        n = points.shape[0]
        self.rounded_norm, self.rounding_norm, self.norm = (torch.empty(n, dtype=torch.float64) for _ in "abc")
        step = rows_per_block(points.shape[1], SCREEN_BLOCK_ELEMENTS)
        for start in range(0, n, step):  # float64 norms, block by block
            exact, rounded = points[start : start + step].double(), self.rounded[start : start + step].double()
            self.rounded_norm[start : start + step] = torch.linalg.vector_norm(rounded, dim=1)
            self.rounding_norm[start : start + step] = torch.linalg.vector_norm(exact - rounded, dim=1)
            self.norm[start : start + step] = torch.linalg.vector_norm(exact, dim=1)

    def subset(self, rows: torch.Tensor) -> "ScreenedNearest":
        """The same search restricted to ``points[rows]`` without recomputing the rounding."""
        part = object.__new__(ScreenedNearest)
        part.points, part.chunk, part.rounded = self.points[rows], self.chunk, self.rounded[rows]
        part.rounded_norm, part.rounding_norm = self.rounded_norm[rows], self.rounding_norm[rows]
        part.norm = self.norm[rows]
        return part

    def block_rows(self, columns: int) -> int:
        return self.chunk or rows_per_block(columns, SCREEN_BLOCK_ELEMENTS)

    @torch.no_grad()
    def __call__(self, centers: torch.Tensor):
        n, dim = self.points.shape
        b = centers.shape[0]
        blocks = list(_aligned_blocks(n, self.block_rows(b)))
        if n == 0 or b == 0 or not all(_bf16_accumulates_in_fp32(r.stop - r.start, dim, b) for _, r in blocks):
            return nearest_by_similarity(self.points, centers, self.chunk)
        # Float64 points (ActiveFT's precision="float64") are re-scored in float64.
        centers = centers.to(self.points.dtype)
        score_unit = FP64_UNIT if centers.dtype == torch.float64 else FP32_UNIT
        shifted = centers.double() - centers.double().mean(dim=0)
        rounded = shifted.to(torch.bfloat16)
        residual = torch.linalg.vector_norm(shifted - rounded.double(), dim=1).max()
        gamma = dim * FP32_UNIT / (1 - dim * FP32_UNIT)
        beta = BF16_UNIT / (1 - BF16_UNIT)
        rounded_max = torch.linalg.vector_norm(rounded.double(), dim=1).max()
        shifted_max = torch.linalg.vector_norm(shifted, dim=1).max()
        center_max = torch.linalg.vector_norm(centers.double(), dim=1).max()
        # 2·(screen bound + re-score bound) per row, with a relative margin for the float64 norms.
        rescore = dim * score_unit / (1 - dim * score_unit) * self.norm * center_max
        width = 2 * (self.rounded_norm * (residual + gamma * rounded_max)
                     + self.rounding_norm * shifted_max + rescore) * (1 + 1e-9)
        pair_rows, pair_cols = [], []
        for start, block in blocks:
            product = self.rounded[block] @ rounded.T
            with one_thread():  # elementwise passes: parallel threads only stall on a shared machine
                screen = product.float().numpy()
            top = torch.from_numpy(screen.max(axis=1)).double()
            # Invert h(o) = o + β|o| (increasing) at h(top) − β|top| − width: the lowest o that may win.
            level = top - beta * top.abs() - width[block]
            threshold = torch.where(level >= 0, level / (1 + beta), level / (1 - beta)).float()
            threshold = torch.nextafter(threshold, torch.tensor(-math.inf)).numpy()
            skip = start - block.start  # rows a short last block repeats from the one before
            flat = np.flatnonzero(screen[skip:] >= threshold[skip:, None])
            pair_rows.append(torch.from_numpy(flat // b + start))
            pair_cols.append(torch.from_numpy(flat % b))
        slack = (4 * rescore * (1 + 1e-9)).to(centers.dtype)
        return _argmax_over_pairs(self.points, centers, torch.cat(pair_rows), torch.cat(pair_cols), slack)


def _argmax_over_pairs(points, centers, rows, cols, slack):
    """Re-score of the candidate pairs (rows sorted, columns ascending within a row) in the
    centers' precision and the per-row argmax, lowest column first.

    Two float32 (float64) evaluations of one inner product (this sampled product, a blocked GEMM) may
    differ by up to ``slack/2`` in total; rows whose two best candidates are closer than
    ``slack`` are re-scored with the GEMM itself, so the result is the GEMM's argmax exactly.
    """
    n = points.shape[0]
    counts = torch.bincount(rows, minlength=n)
    crow = torch.zeros(n + 1, dtype=torch.int64)
    torch.cumsum(counts, 0, out=crow[1:])
    pattern = sparse_rows(crow, cols, torch.ones(len(cols), dtype=points.dtype), (n, centers.shape[0]))
    scores = torch.sparse.sampled_addmm(pattern, points, centers.T, beta=0.0).values()
    best, first = _segment_argmax(scores, rows, n)
    index, similarity = cols[first], best
    contested = (counts > 1).nonzero().squeeze(1)
    if len(contested):
        others = scores.clone()
        others[first[contested]] = -math.inf
        runner_up = torch.full((n,), -math.inf, dtype=scores.dtype).scatter_reduce_(0, rows, others, "amax")
        close = contested[(best[contested] - runner_up[contested] <= slack[contested])]
        if len(close):
            index[close], similarity[close] = _gemm_argmax(points, centers, close)
    return index, similarity


def sparse_rows(crow, cols, values, size) -> torch.Tensor:
    """A CSR matrix (torch warns once that CSR support is in beta; the operations used here,
    CSR @ dense and the sampled product, are stable on CPU)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, cols, values, size=size, check_invariants=False)


def _segment_argmax(scores, rows, n):
    """Per-row maximum of ``scores`` and the position of its first occurrence."""
    best = torch.full((n,), -math.inf, dtype=scores.dtype).scatter_reduce_(0, rows, scores, "amax")
    position = torch.arange(len(rows))
    winners = scores == best[rows]
    first = torch.full((n,), len(rows), dtype=torch.int64).scatter_reduce_(
        0, rows[winners], position[winners], "amin")
    return best, first


def _gemm_argmax(points, centers, rows):
    padded = rows
    if len(rows) < GEMM_MIN_ROWS:
        filler = torch.arange(min(points.shape[0], GEMM_MIN_ROWS))
        padded = torch.cat([rows, filler])
    value, where = (points[padded] @ centers.T).max(dim=1)
    return where[: len(rows)], value[: len(rows)]


_PROBED: dict[tuple[int, int, int], bool] = {}


def _bf16_accumulates_in_fp32(rows: int, dim: int, columns: int) -> bool:
    """Probe the bfloat16 GEMM at this shape: 1 + (K−1)·2⁻⁹ is lost unless sums are float32."""
    key = (rows, dim, columns)
    if key not in _PROBED:
        left = torch.full((rows, dim), 2.0**-9, dtype=torch.bfloat16)
        left[::2, 0] = 1.0
        left[1::2, -1] = 1.0  # the large term first in some rows, last in others
        right = torch.ones((columns, dim), dtype=torch.bfloat16)
        expected = torch.tensor(1 + (dim - 1) * 2.0**-9).to(torch.bfloat16)
        _PROBED[key] = bool(((left @ right.T) == expected).all())
    return _PROBED[key]


def _aligned_blocks(n: int, rows: int):
    """``(start, slice)`` blocks of ``rows`` rows; a short last block is extended backwards to
    ``GEMM_MIN_ROWS`` rows (same GEMM kernel as the others), its rows before ``start`` repeats."""
    for start in range(0, n, rows):
        yield start, slice(max(0, min(start, n - GEMM_MIN_ROWS)), min(n, start + rows))
