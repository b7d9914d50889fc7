"""Scorers: the exact nearest center of some rows, with proven upper bounds on their similarities.

Two scorers find each row's exact nearest center (``exact``: the true argmax, ties to the lowest
index):

* ``GemmScorer`` runs the GEMM of the working precision (float32, or float64 for ActiveFT's
  ``precision="float64"``) and settles near-ties exactly;
* ``ScreenScorer`` screens with a bfloat16 GEMM and a proven bound on its error, then re-scores
  only the few candidates that survive. On CPUs with bfloat16 matrix instructions (AVX512_BF16,
  AMX) this is several times faster than the float32 GEMM; where bfloat16 is emulated (AVX2-only
  CPUs) it is several times slower, so ``fastest_scorer`` measures both once per process.

Both can also return, for every row, its ``depth`` best centers with an upper bound on each true
similarity, and one upper bound on every other center: what ``bounds`` carries across iterations.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from .exact import (
    BF16_UNIT,
    MARGIN,
    dot_error,
    exact_argmax,
    exact_matmul,
    sampled_products,
)
from .kernels import top_rows
from .similarity import row_norms, rows_per_block

# Screen blocks are smaller (4 MiB of bfloat16): they stay in cache while their candidates are read.
SCREEN_BLOCK_ELEMENTS = 1 << 21
# Screen values listed per row; a row whose candidates may go beyond them is searched whole.
SCREEN_WIDTH = 4


@dataclass
class Scores:
    """A scorer's answer for some rows: the exact nearest center and, with ``depth > 0``, the
    ``depth`` best centers with upper bounds on their true similarities and an upper bound on
    every center not listed (``-inf`` when every center is listed)."""

    index: torch.Tensor  # (r,) int64
    candidates: torch.Tensor | None = None  # (r, depth) int64
    upper: torch.Tensor | None = None  # (r, depth) float64
    rest: torch.Tensor | None = None  # (r,) float64
    # Optional, a bound on each center not listed: ``rest - codes·scale`` (``kernels.LISTED`` for listed ones).
    codes: torch.Tensor | None = None  # (r, centers) uint8
    scale: torch.Tensor | None = None  # (r,) float64


class Scratch:
    """One buffer reused across calls: a fresh allocation per call costs its page faults every time."""

    def __init__(self):
        self.buffer: torch.Tensor | None = None

    def get(self, rows: int, columns: int, dtype: torch.dtype) -> torch.Tensor:
        if self.buffer is None or self.buffer.dtype != dtype or self.buffer.numel() < rows * columns:
            self.buffer = torch.empty(rows * columns, dtype=dtype)
        return self.buffer[: rows * columns].view(rows, columns)


def _blocks(points: torch.Tensor, rows: torch.Tensor | None, step: int, scratch: Scratch, padded: bool = False):
    """``(output slice, block)`` pairs over ``points`` or over its ``rows`` (gathered per block
    into ``scratch``). ``padded``: a short block is padded with zero rows to ``_padded_rows`` rows,
    so that the blocks take only a few shapes (each shape of the bfloat16 GEMM is probed once)."""
    n = points.shape[0] if rows is None else len(rows)
    for start in range(0, n, step):
        out = slice(start, min(n, start + step))
        size = out.stop - out.start
        shape = _padded_rows(size, step) if padded else size
        if rows is None and shape == size:
            yield out, points[out]
            continue
        block = scratch.get(shape, points.shape[1], points.dtype)
        if rows is None:
            block[:size] = points[out]
        else:
            torch.index_select(points, 0, rows[out], out=block[:size])
        block[size:] = 0
        yield out, block


def _padded_rows(rows: int, step: int) -> int:
    """The row count of a padded block: ``step``, or the power of two (at least 64) above ``rows``."""
    return min(step, 1 << max(6, (rows - 1).bit_length())) if rows < step else step


def _block_shapes(n: int, step: int) -> set[int]:
    return {_padded_rows(min(step, n - start), step) for start in range(0, n, step)}


def _top(values: torch.Tensor, depth: int):
    """The ``max(depth + 1, 2)`` largest values per row (indices, values), or all of them."""
    top = torch.topk(values, min(max(depth + 1, 2), values.shape[1]), dim=1)
    return top.indices, top.values


def _listed(index, best, depth: int, upper_of):
    """Listed candidates (the ``depth`` best), their upper bounds, and the bound on the rest."""
    upper = upper_of(best[:, : depth + 1].double())
    if index.shape[1] > depth:
        return index[:, :depth], upper[:, :depth], upper[:, depth]
    return index, upper, torch.full((index.shape[0],), -math.inf, dtype=torch.float64)


class _Answer:
    """Per-row results of a scorer, filled block by block."""

    def __init__(self, n: int, depth: int, centers: int):
        listed = min(depth, centers)
        self.index = torch.empty(n, dtype=torch.int64)
        self.depth = depth
        if depth:
            self.candidates = torch.empty((n, listed), dtype=torch.int64)
            self.upper = torch.empty((n, listed), dtype=torch.float64)
            self.rest = torch.empty(n, dtype=torch.float64)
        self.codes = self.scale = None

    def coded(self, n: int, centers: int) -> None:
        self.codes = torch.empty((n, centers), dtype=torch.uint8)
        self.scale = torch.empty(n, dtype=torch.float64)

    def scores(self) -> Scores:
        if not self.depth:
            return Scores(self.index)
        return Scores(self.index, self.candidates, self.upper, self.rest, self.codes, self.scale)


def _center_max(centers: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(centers.double(), dim=1).max())


class GemmScorer:
    """The GEMM of the working precision, near-ties settled exactly."""

    name = "gemm"

    def __init__(self, points: torch.Tensor, chunk: int | None = None, norms: torch.Tensor | None = None):
        self.points = points
        self.chunk = chunk
        self.norm = row_norms(points) if norms is None else norms
        self.scratch = Scratch()

    @torch.no_grad()
    def __call__(self, centers: torch.Tensor, rows: torch.Tensor | None = None, depth: int = 0) -> Scores:
        n = self.points.shape[0] if rows is None else len(rows)
        b = centers.shape[0]
        centers = centers.to(self.points.dtype)
        norm = self.norm if rows is None else self.norm[rows]
        center_max = _center_max(centers)
        # Every computed similarity is within ``error`` of the true one.
        error = dot_error(self.points.shape[1], centers.dtype) * norm * center_max * (1 + MARGIN)
        # Every computed similarity is below this in magnitude (the top's bisection starts from it).
        limit = float(norm.max()) * center_max * 1.001 + 1e-30 if n else 0.0
        answer = _Answer(n, depth, b)
        if depth:
            answer.coded(n, b)
        with exact_matmul():
            for out, block in _blocks(self.points, rows, self.chunk or rows_per_block(b), self.scratch):
                values = block @ centers.T
                first, best, *listed = top_rows(values, depth, limit, error[out])
                answer.index[out] = _settle(block, centers, values, first, best, error[out])
                if depth:
                    (answer.candidates[out], answer.upper[out], answer.rest[out], answer.codes[out],
                     answer.scale[out]) = listed
        return answer.scores()


def _settle(block, centers, values, first, best, error) -> torch.Tensor:
    """The exact argmax of each row of ``values`` (similarities each within ``error`` of the
    truth; ``first`` the column of its largest value, ``best`` its two largest values): rows whose two
    best values are within ``2·error`` go to ``exact_argmax``, the others have a unique true maximum."""
    index = first.clone()
    if values.shape[1] > 1:
        close = (best[:, 0].double() - best[:, 1].double() <= 2 * error).nonzero().squeeze(1)
        if len(close):
            near = values[close]
            rows, cols = (near.double() >= (best[close, 0].double() - 2 * error[close])[:, None]).nonzero(
                as_tuple=True)
            index[close] = exact_argmax(block[close], centers, rows, cols, near[rows, cols], error[close])
    return index


class ScreenScorer:
    """Exact nearest centers with a bfloat16 screen (docs/selection.md, "Exact assignment", the screen).

    1. *Screen*: one bfloat16 product ``o = bf16(f) · bf16(c_j − ν)^T`` in row chunks, with ``ν``
       the mean center. Subtracting ``ν`` shifts every row by the constant ``⟨f, ν⟩`` (argmax
       unchanged) and shrinks both the rounded factor and the products, hence the error bound.
    2. *Bound*: for every pair ``|o_ij − (⟨f_i, c_j⟩ − ⟨f_i, ν⟩)| ≤ A_i + β|o_ij|`` with
       ``A_i = ‖f̂_i‖(max_j ‖r_j‖ + γ max_j ‖ĉ_j‖) + ‖f_i − f̂_i‖ max_j ‖c_j − ν‖`` (input rounding,
       Cauchy–Schwarz on the exact residuals ``r_j = (c_j − ν) − ĉ_j``; float32 accumulation of
       exact bfloat16 products, ``γ = γ_d`` of float32) and ``β = u₁₆/(1 − u₁₆)`` for the rounding
       of the output to bfloat16.
    3. *Candidates*: every center whose upper bound reaches the lower bound of the row's screen
       maximum. A center left out is strictly below that maximum's true similarity: it is
       neither the true argmax nor tied with it.
    4. *Re-score* only the candidate pairs in the working precision (a sampled product, about 1.4
       pairs per row on real features) and take the exact argmax of them (``exact_argmax``).

    The bound assumes the bfloat16 GEMM accumulates exact products in float32 and rounds once (as
    oneDNN does); a probe checks this once per shape, on structured and on random data, and the
    scorer falls back to the GEMM if it fails.
    """

    name = "bfloat16-screen"

    def __init__(self, points: torch.Tensor, chunk: int | None = None):
        self.points = points
        self.chunk = chunk
        self.rounded = points.to(torch.bfloat16)
        n = points.shape[0]
        self.rounded_norm, self.rounding_norm = (torch.empty(n, dtype=torch.float64) for _ in "ab")
        step = rows_per_block(points.shape[1], SCREEN_BLOCK_ELEMENTS)
        for start in range(0, n, step):  # float64 norms, block by block
            exact, rounded = points[start : start + step].double(), self.rounded[start : start + step].double()
            self.rounded_norm[start : start + step] = torch.linalg.vector_norm(rounded, dim=1)
            self.rounding_norm[start : start + step] = torch.linalg.vector_norm(exact - rounded, dim=1)
        self.norm = row_norms(points)
        self.gemm = GemmScorer(points, chunk, self.norm)
        self.scratch, self.shift_scratch = Scratch(), Scratch()

    @torch.no_grad()
    def __call__(self, centers: torch.Tensor, rows: torch.Tensor | None = None, depth: int = 0) -> Scores:
        n = self.points.shape[0] if rows is None else len(rows)
        b, dim = centers.shape[0], self.points.shape[1]
        step = self.chunk or rows_per_block(b, SCREEN_BLOCK_ELEMENTS)
        if n == 0 or b == 0 or not all(bf16_accumulates_in_fp32(r, dim, b) for r in _block_shapes(n, step)):
            return self.gemm(centers, rows, depth)
        centers = centers.to(self.points.dtype)
        terms = screen_terms(centers, dim)
        select = (lambda x: x) if rows is None else (lambda x: x[rows])
        screen_error = screen_error_of(select(self.rounded_norm), select(self.rounding_norm), terms)
        beta = terms["beta"]
        shift = _shift(self.points, rows, terms["mean"], select(self.norm), self.shift_scratch) if depth else None
        answer = _Answer(n, depth, b)
        pair_rows, pair_cols = [], []
        for out, block in _blocks(self.rounded, rows, step, self.scratch, padded=True):
            screen = (block @ terms["rounded"].T)[: out.stop - out.start].float()
            # The best few screen values of each row: the argmax candidates are among them unless
            # the last one listed still passes the threshold (then the whole row is searched).
            where, best = _top(screen, max(depth, SCREEN_WIDTH))
            top = best[:, 0].double()
            # Invert h(o) = o + β|o| (increasing) at h(top) − β|top| − 2·A: the lowest o that may win.
            level = top - beta * top.abs() - 2 * screen_error[out]
            threshold = torch.where(level >= 0, level / (1 + beta), level / (1 - beta)).float()
            threshold = torch.nextafter(threshold, torch.tensor(-math.inf))
            passing = best >= threshold[:, None]
            whole = passing[:, -1].nonzero().squeeze(1) if best.shape[1] < b else torch.empty(0, dtype=torch.int64)
            passing[whole] = False
            local, column = passing.nonzero(as_tuple=True)
            rows_found, cols_found = [local], [where[local, column]]
            if len(whole):
                wide, wide_cols = (screen[whole] >= threshold[whole, None]).nonzero(as_tuple=True)
                rows_found.append(whole[wide])
                cols_found.append(wide_cols)
            found_rows, order = torch.sort(torch.cat(rows_found), stable=True)
            pair_rows.append(found_rows + out.start)
            pair_cols.append(torch.cat(cols_found)[order])
            if depth:  # o + β|o| is increasing in o: the best screen values have the largest bounds
                offset = (screen_error[out] + shift[out])[:, None]
                answer.candidates[out], answer.upper[out], answer.rest[out] = _listed(
                    where, best, depth, lambda top: top + beta * top.abs() + offset)
        points = self.points if rows is None else self.points[rows]
        pair_rows, pair_cols = torch.cat(pair_rows), torch.cat(pair_cols)
        scores = sampled_products(points, centers, pair_rows, pair_cols)
        error = dot_error(dim, centers.dtype) * select(self.norm) * terms["center_max"] * (1 + MARGIN)
        answer.index[:] = exact_argmax(points, centers, pair_rows, pair_cols, scores, error)
        return answer.scores()


def screen_terms(centers: torch.Tensor, dim: int) -> dict:
    """The center-side terms of the screen's bound: the shifted centers rounded to bfloat16 and
    the norms that bound their rounding, the accumulation and the output rounding."""
    mean = centers.double().mean(dim=0)
    shifted = centers.double() - mean
    rounded = shifted.to(torch.bfloat16)
    return {
        "rounded": rounded,
        "mean": mean,
        "residual": float(torch.linalg.vector_norm(shifted - rounded.double(), dim=1).max()),
        "gamma": dot_error(dim, torch.float32),  # float32 accumulation of exact bfloat16 products
        "beta": BF16_UNIT / (1 - BF16_UNIT),  # the output rounded to bfloat16
        "rounded_max": float(torch.linalg.vector_norm(rounded.double(), dim=1).max()),
        "shifted_max": float(torch.linalg.vector_norm(shifted, dim=1).max()),
        "center_max": _center_max(centers),
    }


def screen_error_of(rounded_norm, rounding_norm, terms: dict) -> torch.Tensor:
    """``A_i`` per row: the screen's error bound before the output rounding (``β|o|``)."""
    return (rounded_norm * (terms["residual"] + terms["gamma"] * terms["rounded_max"])
            + rounding_norm * terms["shifted_max"]) * (1 + MARGIN)


def _shift(points, rows, mean, norm, scratch: Scratch):
    """Upper bounds on ``⟨f_i, ν⟩``: a product in the points' precision with its rounding bound,
    plus the rounding of ``ν`` itself to that precision."""
    n = points.shape[0] if rows is None else len(rows)
    rounded = mean.to(points.dtype)
    shift = torch.empty(n, dtype=torch.float64)
    with exact_matmul():
        for out, block in _blocks(points, rows, rows_per_block(points.shape[1], SCREEN_BLOCK_ELEMENTS), scratch):
            shift[out] = (block @ rounded).double()
    slack = dot_error(points.shape[1], points.dtype) * float(torch.linalg.vector_norm(rounded.double())) \
        + float(torch.linalg.vector_norm(mean - rounded.double()))
    return shift + norm * slack * (1 + MARGIN)


_PROBED: dict[tuple[int, int, int], bool] = {}


def bf16_accumulates_in_fp32(rows: int, dim: int, columns: int) -> bool:
    """Probe the bfloat16 GEMM at this shape, once: structured sums that lose ``1 + (K−1)·2⁻⁹``
    unless accumulated in float32, and random data whose error must stay within the bound that
    ``ScreenScorer`` assumes (float32 accumulation of exact products, one rounding to bfloat16)."""
    key = (rows, dim, columns)
    if key not in _PROBED:
        left = torch.full((rows, dim), 2.0**-9, dtype=torch.bfloat16)
        left[::2, 0] = 1.0
        left[1::2, -1] = 1.0  # the large term first in some rows, last in others
        right = torch.ones((columns, dim), dtype=torch.bfloat16)
        expected = torch.tensor(1 + (dim - 1) * 2.0**-9).to(torch.bfloat16)
        structured = bool(((left @ right.T) == expected).all())
        _PROBED[key] = structured and random_product_within_bound(rows, dim, columns)
    return _PROBED[key]


def random_product_within_bound(rows: int, dim: int, columns: int, product=None) -> bool:
    """A bfloat16 GEMM of random data of this shape against the exact value of 64 of its rows:
    every element within ``γ_d Σ|a||b| + β|o|``. ``product`` replaces the GEMM (tests use it to
    plant faults)."""
    generator = torch.Generator().manual_seed(rows * 7919 + dim * 31 + columns)
    left = torch.randn((rows, dim), generator=generator).to(torch.bfloat16)
    right = torch.randn((columns, dim), generator=generator).to(torch.bfloat16)
    sample = torch.randperm(rows, generator=generator)[:64]
    result = (left @ right.T if product is None else product(left, right))[sample].double()
    exact = left[sample].double() @ right.double().T  # 16-bit significands: exact products
    magnitude = left[sample].double().abs() @ right.double().abs().T
    slack = dot_error(dim, torch.float64) * magnitude  # the float64 reference's own rounding
    beta = BF16_UNIT / (1 - BF16_UNIT)
    bound = dot_error(dim, torch.float32) * magnitude + beta * result.abs() + slack
    return bool(((result - exact).abs() <= bound * (1 + MARGIN)).all())


_FASTEST: dict[tuple, str] = {}


def fastest_scorer(dtype: torch.dtype, dim: int, columns: int) -> str:
    """``"bfloat16-screen"`` where a bfloat16 GEMM is at least twice as fast as one in ``dtype``
    on this machine (CPUs with AVX512_BF16 or AMX: about five times), else ``"gemm"`` (CPUs that
    emulate bfloat16, such as AVX2-only ones, where it is about six times slower). Measured once
    per process, shape and thread count, on a 1,024-row product (milliseconds)."""
    columns = max(1, min(columns, 512))
    key = (dtype, dim, columns, torch.get_num_threads())
    if key not in _FASTEST:
        generator = torch.Generator().manual_seed(0)
        left = torch.randn((1024, dim), generator=generator)
        right = torch.randn((columns, dim), generator=generator)
        seconds = {}
        with exact_matmul():
            for name, kind in (("gemm", dtype), ("bfloat16-screen", torch.bfloat16)):
                a, b = left.to(kind), right.to(kind)
                a @ b.T  # warm-up
                seconds[name] = min(_timed(lambda: a @ b.T) for _ in range(3))
        _FASTEST[key] = "bfloat16-screen" if 2 * seconds["bfloat16-screen"] < seconds["gemm"] else "gemm"
    return _FASTEST[key]


def _timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def make_scorer(name: str, points: torch.Tensor, chunk: int | None = None):
    return ScreenScorer(points, chunk) if name == "bfloat16-screen" else GemmScorer(points, chunk)
