"""The exact nearest center: rounding bounds, and the decision between near-tied centers.

A row's nearest center is the argmax of its *true* similarities (exact real arithmetic on the
stored float32 or float64 vectors), ties to the lowest center index (docs/selection.md, "Exact assignment").
A float32 GEMM decides it wherever its rounding cannot reorder two centers; where two centers are
within that rounding of each other, the float32 answer depends on the BLAS kernel, the block
shape and the thread count, so those few candidates are compared again in float64 and, if still
within float64's rounding, exactly.

Rounding model: a dot product of length ``d`` computed in a precision with unit roundoff ``u`` is
within ``γ_d·‖x‖‖y‖`` of the exact one, ``γ_d = d·u/(1 − d·u)``, in any summation order, with or
without fused multiply-adds.
"""

from __future__ import annotations

import contextlib
import math
import warnings

import numpy as np
import torch

from .kernels import rounded_within

# Unit roundoff of bfloat16 (8 significant bits), float32 (24 bits) and float64 (53 bits).
BF16_UNIT = 2.0**-8
FP32_UNIT = 2.0**-24
FP64_UNIT = 2.0**-53
# Relative margin on bounds computed in float64 (covers the rounding of the bounds themselves).
MARGIN = 1e-9


@contextlib.contextmanager
def exact_matmul():
    """Full-precision float32 GEMMs inside the block, whatever the user set (``torch.backends.<backend>.matmul.
    fp32_precision = "bf16"`` or ``"tf32"``, ``torch.backends.fp32_precision``, or the older
    ``torch.set_float32_matmul_precision("medium")``: oneDNN may then compute float32 products in bfloat16,
    which would change the assignment and void every error bound); the settings are restored afterwards.

    The per-backend settings are the ones the backends read, so they are the ones forced (torch's older
    getter refuses to answer once a user has set one of them: it cannot be read here)."""
    settings = _matmul_precisions()
    if settings is None:  # a torch without the per-backend settings
        previous = torch.get_float32_matmul_precision()
        if previous == "highest":
            yield
            return
        torch.set_float32_matmul_precision("highest")
        try:
            yield
        finally:
            torch.set_float32_matmul_precision(previous)
        return
    previous = [setting.fp32_precision for setting in settings]
    if all(value == "ieee" for value in previous):
        yield
        return
    try:
        for setting in settings:
            setting.fp32_precision = "ieee"
        yield
    finally:
        for setting, value in zip(settings, previous):
            setting.fp32_precision = _restoring(setting, value)


def _matmul_precisions() -> list | None:
    """torch's per-backend float32 matmul precision settings (oneDNN's and CUDA's), or ``None`` where torch
    has only the process-wide one."""
    settings = [getattr(getattr(torch.backends, name, None), "matmul", None) for name in ("mkldnn", "cuda")]
    settings = [setting for setting in settings if hasattr(setting, "fp32_precision")]
    return settings or None


def _restoring(setting, value: str) -> str:
    """The value that gives ``setting`` back its ``value``: ``"none"`` (follow the backend's setting, as before)
    where that resolves to the same. torch reads a setting as the value it resolves to, its own or inherited:
    a user who set only ``torch.backends.fp32_precision`` expects the backends to keep following it."""
    try:
        inherited = torch._C._get_fp32_precision_getter(setting.backend, "all")
    except (AttributeError, RuntimeError, TypeError):
        return value
    return "none" if inherited == value else value


def sparse_rows(crow, cols, values, size) -> torch.Tensor:
    """A CSR matrix (torch warns once that CSR support is in beta; the operations used here,
    CSR @ dense and the sampled product, are stable on CPU)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, cols, values, size=size, check_invariants=False)


def dot_error(dim: int, dtype: torch.dtype) -> float:
    """``γ_d``: a computed dot product of length ``dim`` is within ``γ_d‖x‖‖y‖`` of the exact one."""
    u = {torch.float64: FP64_UNIT, torch.bfloat16: BF16_UNIT}.get(dtype, FP32_UNIT)
    return dim * u / (1 - dim * u)


def sampled_products(points, centers, rows, cols, counts=None) -> torch.Tensor:
    """``⟨points[rows[p]], centers[cols[p]]⟩`` for every pair ``p`` (``rows`` sorted), in the
    points' precision, without forming any other product. Each value is computed by one thread
    in a fixed order: the same bits with any number of threads."""
    n = points.shape[0]
    counts = torch.bincount(rows, minlength=n) if counts is None else counts
    crow = torch.zeros(n + 1, dtype=torch.int64)
    torch.cumsum(counts, 0, out=crow[1:])
    pattern = sparse_rows(crow, cols, torch.ones(len(cols), dtype=points.dtype), (n, centers.shape[0]))
    with exact_matmul():
        return torch.sparse.sampled_addmm(pattern, points, centers.T, beta=0.0).values()


def exact_argmax(points, centers, rows, cols, scores, error) -> torch.Tensor:
    """Each row's exact nearest center among its candidate pairs.

    ``rows`` (sorted) and ``cols`` (ascending within a row) list candidate pairs that include
    every center that can be the row's true maximum; ``scores`` are their computed similarities,
    each within ``error[row]`` of the truth. Returns, for rows ``0..n-1`` of ``points``, the
    candidate with the largest true similarity, the lowest index among exact ties.
    """
    n = points.shape[0]
    best = torch.full((n,), -math.inf, dtype=scores.dtype).scatter_reduce_(0, rows, scores, "amax")
    alive = scores.double() >= best[rows].double() - 2 * error[rows]  # may still be the maximum
    first, contested = _first_alive(rows, alive, n)
    index = cols[first.clamp_max(max(len(rows) - 1, 0))]
    if bool(contested.any()):
        keep = alive & contested[rows]
        index[contested] = _float64_then_exact(points, centers, rows[keep], cols[keep])
    return index


def _first_alive(groups, alive, count: int):
    """Per group ``0..count-1`` of the pairs (``groups`` sorted): the position of its first pair still
    ``alive`` (``len(groups)`` where none is), and whether more than one is."""
    positions = torch.arange(len(groups))[alive]
    first = torch.full((count,), len(groups), dtype=torch.int64).scatter_reduce_(0, groups[alive], positions, "amin")
    return first, torch.bincount(groups[alive], minlength=count) > 1


def _float64_then_exact(points, centers, rows, cols) -> torch.Tensor:
    """Float64 re-score of the contested pairs (error ``γ_d`` of float64); rows still within that
    error of each other are compared exactly. Returns one center per distinct row, rows ascending."""
    dim = points.shape[1]
    left, right = points[rows].double(), centers[cols].double()
    values = (left * right).sum(dim=1)
    error = dot_error(dim, torch.float64) * torch.linalg.vector_norm(left, dim=1) \
        * torch.linalg.vector_norm(right, dim=1) * (1 + MARGIN)
    distinct, position = torch.unique_consecutive(rows, return_inverse=True)
    lowest = torch.full((len(distinct),), -math.inf, dtype=torch.float64).scatter_reduce_(
        0, position, values - error, "amax")
    alive = values + error >= lowest[position]
    # A row with one pair left has its winner; the few with several are compared exactly.
    first, several = _first_alive(position, alive, len(distinct))
    winners = cols[first]
    for slot in several.nonzero().squeeze(1).tolist():
        options = cols[(position == slot) & alive].tolist()
        winners[slot] = exact_best(points[int(distinct[slot])], centers, options)
    return winners


def exact_best(point: torch.Tensor, centers: torch.Tensor, options: list[int]) -> int:
    """The option with the largest exact ``⟨point, centers[j]⟩``, the lowest index among ties:
    each comparison is the sign of a correctly rounded sum (``math.fsum``) of exact products."""
    terms = {j: _exact_terms(point, centers[j]) for j in sorted(options)}
    best = min(options)
    for j in sorted(options)[1:]:
        if math.fsum(np.concatenate([terms[j], -terms[best]]).tolist()) > 0:
            best = j
    return best


def _exact_terms(x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Float64 numbers whose exact sum is ``⟨x, y⟩``: the products themselves for float32 inputs
    (24-bit significands multiply exactly in float64); for float64 inputs each product split into
    four exact partial products (Veltkamp's splitting into 26-bit halves)."""
    a, b = x.double().numpy(), y.double().numpy()
    if x.dtype != torch.float64 and y.dtype != torch.float64:
        return a * b
    a_high, a_low = _split(a)
    b_high, b_low = _split(b)
    return np.concatenate([a_high * b_high, a_high * b_low, a_low * b_high, a_low * b_low])


def _split(values: np.ndarray):
    scaled = values * (2.0**27 + 1)
    high = scaled - (scaled - values)
    return high, values - high


def rounded_products(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """``left @ right.T`` for float32 inputs, every element the correctly rounded float32 value of the exact
    dot product: the same bits with any BLAS kernel, block shape or thread count (a float32 GEMM's rounding
    depends on them; on AVX2 builds of MKL it changes with the number of threads). Computed as a float64
    GEMM, whose error bound decides the rounding of nearly every element; the few within that bound of a
    float32 rounding boundary are summed exactly."""
    if left.dtype != torch.float32 or right.dtype != torch.float32:
        raise TypeError(f"rounded_products rounds to float32 from float32 operands, not {left.dtype} and {right.dtype}")
    wide_left, wide_right = left.double(), right.double()
    with exact_matmul():
        wide = wide_left @ wide_right.T
    scale = dot_error(left.shape[1], torch.float64) * (1 + MARGIN)
    # Rounded alike at both ends of its error interval: then ``out`` is the exact value's rounding.
    out, rows, cols = rounded_within(wide, torch.linalg.vector_norm(wide_left, dim=1).mul_(scale),
                                     _row_norms(wide_right))
    for first in range(0, len(rows), 1024):
        part = slice(first, first + 1024)
        terms = (wide_left[rows[part]] * wide_right[cols[part]]).numpy()  # exact products
        out[rows[part], cols[part]] = torch.from_numpy(_rounded_sums(terms))
    return out


def _row_norms(values: torch.Tensor) -> torch.Tensor:
    """Euclidean norms of the rows, read in memory order (a transposed operand's rows are its
    columns: ``vector_norm`` over them is several times slower). For error bounds only."""
    return values.square().sum(dim=1).sqrt_()


def _rounded_sums(terms: np.ndarray) -> np.ndarray:
    """The float32 nearest to the exact sum of each row of float64 ``terms``, with an error bound
    far below float32's resolution, and exactly for the rows that bound still leaves undecided.

    Each row is split as in ``_slices``: a high part of multiples of ``2^(e−p)`` (``2^e`` above the
    row's largest term, ``p = 51 − ⌈log₂ k⌉``), whose ``k`` terms sum exactly in float64, and the
    remainders, each below ``2^(e−p)``, whose float64 sum errs by at most ``γ_k`` times their
    absolute sum; adding the two rounds once more."""
    k = terms.shape[1]
    bits = 51 - math.ceil(math.log2(max(k, 2)))  # ≤ 51: every t + σ stays in σ's binade
    _, exponent = np.frexp(np.abs(terms).max(axis=1, keepdims=True) if k else np.zeros((len(terms), 1)))
    sigma = np.ldexp(0.75, exponent + 53 - bits)
    high = (terms + sigma) - sigma  # rounded to a multiple of ulp(σ) = 2^(e−p)
    low = terms - high  # exact
    total = high.sum(axis=1) + low.sum(axis=1)
    gamma = k * FP64_UNIT / (1 - k * FP64_UNIT)
    bound = (gamma * np.abs(low).sum(axis=1) + FP64_UNIT * np.abs(total)) * (1 + MARGIN)
    out = total.astype(np.float32)
    undecided = ((total - bound).astype(np.float32) != out) | ((total + bound).astype(np.float32) != out)
    for row in np.flatnonzero(undecided):
        out[row] = _correctly_rounded_float32(terms[row])
    return out


def _correctly_rounded_float32(terms: np.ndarray) -> float:
    """The float32 nearest to the exact sum of ``terms`` (float64 values), ties to even."""
    listed = terms.tolist()
    nearest = math.fsum(listed)  # the float64 nearest to the exact sum
    single = np.float32(nearest)
    below, above = (np.nextafter(single, np.float32(-np.inf)), np.nextafter(single, np.float32(np.inf)))
    for neighbour in (below, above):  # rounding twice errs only when ``nearest`` is a float32 midpoint
        if float(neighbour) + float(single) == 2 * nearest and np.isfinite(neighbour):
            side = math.fsum(listed + [-nearest])  # the sign of exact − nearest
            if side != 0:
                return float(max(single, neighbour) if side > 0 else min(single, neighbour))
    return float(single)


# Slices per float64 operand in ``sliced_products``: 3 × 21 bits reach below float64's own resolution.
SLICES = 3


class Sliced:
    """A float64 right operand of ``sliced_products`` cut into its slices once, for many products
    with it (the row chunks of a large Gram matrix): the same bits as passing the tensor each time."""

    def __init__(self, values: torch.Tensor):
        self.values = values
        self.parts = _slices(values, values.shape[1])


def reusable_operand(values: torch.Tensor) -> torch.Tensor | Sliced:
    """``values`` prepared as the right operand of many ``rounded_products``: float64 ones sliced once."""
    return Sliced(values) if values.dtype == torch.float64 else values


def sliced_products(left: torch.Tensor, right: torch.Tensor | Sliced) -> torch.Tensor:
    """``left @ right.T`` for float64 inputs, the same bits whatever the BLAS, its kernel or thread
    count (a float64 GEMM's last bits change with the thread count on some MKL builds).

    Each operand is cut into slices of few significant bits per row (``_slices``), so that every
    product of two slices, summed over the inner dimension, is exact in float64 in any order; the
    six leading slice products are then added in a fixed order (Ozaki's error-free splitting;
    docs/selection.md, "The same bits with any number of threads"). The error is the rounding of
    those five additions plus at most ``k·2⁻⁶⁰`` times the two rows' largest entries (``k`` the inner
    size); a float64 GEMM's bound is ``k·2⁻⁵³`` times the two rows' norms."""
    inner = left.shape[1]
    values = right.values if isinstance(right, Sliced) else right
    gram = left.data_ptr() == values.data_ptr() and left.shape == values.shape and left.stride() == values.stride()
    if isinstance(right, Sliced):
        b = right.parts
        a = b if gram else _slices(left, inner)
    else:
        a = _slices(left, inner)
        b = a if gram else _slices(right, inner)
    terms = {}
    with exact_matmul():
        for s in range(SLICES):
            for t in range(SLICES - s):
                # A Gram matrix's products are exact, so a transposed one is the same bits.
                terms[s, t] = terms[t, s].T if gram and t < s else a[s] @ b[t].T
    # Smallest terms first: the slices of order 2, then 1, then the leading product.
    tail = terms[0, 2] + terms[1, 1] + terms[2, 0]
    return tail + (terms[0, 1] + terms[1, 0]) + terms[0, 0]


def _slices(values: torch.Tensor, inner: int) -> list[torch.Tensor]:
    """``values`` (float64 rows) as ``SLICES`` tensors whose sum is within ``2^(e−3p−1)`` of it, where
    ``2^e`` bounds each row's largest entry: slice ``s`` holds integers of at most ``p`` bits times
    ``2^(e−p(s+1))``, ``p = ⌊(53 − ⌈log2 inner⌉)/2⌋``, so that ``inner`` products of two such
    integers sum to at most 2⁵³ and every partial sum is exact. Rounding to the nearest multiple
    leaves a remainder that is itself exact (it has fewer significant bits than the value)."""
    bits = (53 - math.ceil(math.log2(max(inner, 2)))) // 2
    top = values.abs().amax(dim=1, keepdim=True) if values.shape[1] else values.new_zeros((len(values), 1))
    exponent = torch.frexp(top).exponent.clamp(-900, 900)  # top < 2^e (rows beyond 2^±900 lose exactness)
    slices, rest = [], values.clone()
    for s in range(SLICES):
        # (x + σ) − σ rounds x to the nearest multiple of ulp(σ) = 2^(e−p(s+1)), |x| being far below σ.
        sigma = torch.ldexp(torch.full_like(top, 0.75), 53 + exponent - bits * (s + 1))
        piece = (rest + sigma).sub_(sigma)
        slices.append(piece)
        if s + 1 < SLICES:
            rest.sub_(piece)
    return slices
