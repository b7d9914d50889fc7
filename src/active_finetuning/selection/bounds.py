"""Exact nearest centers for centers that move a little at a time (docs/selection.md, "Exact assignment", bounds).

An optimiser moves each center by a small step per iteration, so most rows cannot change their
nearest center from one iteration to the next. ``BoundedAssignment`` carries bounds across
iterations, as Elkan's and Hamerly's k-means do, and scores again only the rows whose bounds
overlap. Per row it keeps its ``depth`` best centers at its last scoring, each with an upper bound
on its true similarity, and one upper bound on every other center. Every iteration computes each
row's similarity to its own center anyway (the loss needs it), which gives an exact lower bound.

When center ``j`` moves by ``δ_j = ‖c_j(t) − c_j(t−1)‖``, no similarity to it changes by more than
``‖f_i‖·δ_j`` (Cauchy–Schwarz), so upper bounds grow by the centers' accumulated displacements.
The bound on the centers not listed also grows by a drift of its own per row, often tighter: a row
``f = α·ĉ_a + r`` splits along its own center (``α`` its similarity to it, known exactly at every
iteration) and a remainder ``r ⊥ ĉ_a`` of norm ``√(‖f‖² − α²)``, so its similarity to any center
``j`` changes by at most ``α·max_j ⟨ĉ_a, Δ_j⟩ + √(‖f‖² − α²)·max_j ‖Δ_j‖``, where ``Δ_j`` is the step
of center ``j``: one B×B product per iteration (``steps_along_centers``; docs/selection.md, "Exact
assignment").
A row keeps its center while

    own similarity − its rounding error > every other center's upper bound:

then no other center can be the true maximum, nor tie with it.

The one bound on the centers not listed ages by the largest displacement of any of them, and a few
centers move several times more than the median one. So each row also keeps a byte per center not
listed (``codes``, while rows × centers stays under ``CODED_BYTES``): its similarity's gap below the
bound on the rest at the row's scoring, in 254 steps, rounded so that it stays an upper bound, and
aged by *that* center's own displacement (or the row's drift, if smaller). Where the one bound fails,
the bytes are checked; where they pass, the one bound is made again from them, as of now.

A row that fails is *tightened* first: the centers within reach (the few bytes, then the listed
centers) computed exactly, sampled dot products, while there are at most ``TIGHTEN_LIMIT`` of them. A
center's new byte is stored as if made at the row's scoring, minus its ageing until now: ageing it
from then adds at least its ageing from now (``min(a + a', d + d') − min(a, d) ≥ min(a', d')``).
A row that still fails, or has more centers within reach, is *scored again* by the scorer (the GEMM,
or the bfloat16 screen), which yields its exact nearest center (``exact``) and fresh bounds. The
assignment is therefore the exact nearest center of every row at every iteration: the same
trajectory as scoring every row, at a fraction of the work.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .exact import FP32_UNIT, MARGIN, dot_error, exact_matmul, rounded_products
from .kernels import LISTED, RowPass, reaching_rows, round_up

# Centers listed per row with their own upper bounds (beyond them one bound covers the rest; 6·DEPTH bytes
# per row): on the CIFAR-10 features 96 score 5.4% of the rows against 7.5% with 32, 2–5 s less over 300
# iterations on an AVX2 CPU, the compiled check and top costing little more per row (benchmarks/RESULTS.md).
DEPTH = 96
# Above this many bytes (rows × centers) the centers not listed share the one bound on the rest, without
# a byte per center (``BoundedAssignment``).
CODED_BYTES = 1 << 28
# Above this share of the pairs of a row and a center reaching their level, the snap reads the whole pool instead
# (``reaching``): each pair costs a dot product, ~3 times a GEMM's per pair (CIFAR-10 features: 1.7% of the pairs
# reach after 300 iterations, 0.19 s against 0.75 s; 10.6% after 20, even; 13% after 5 and 60, slower).
REACHING_SHARE = 1 / 12
# Similarities a row computes exactly to keep its center, at most, before it is scored again instead: a
# GEMM row of 500 centers costs about as much as 150 such dot products, but a row with many centers within
# reach has them again at the next iterations (CIFAR-10, AVX2: 4 and 16 were slower than 32, 64 no faster).
TIGHTEN_LIMIT = 32


def own_similarity(points, centers, rows, index, passes: RowPass | None = None) -> torch.Tensor:
    """``⟨points[i], centers[index_i]⟩`` for ``rows`` (sorted; all rows when ``None``): one compiled
    dot product per row (``kernels``), the same bits whatever other rows are asked (tests check it)."""
    rows = torch.arange(points.shape[0]) if rows is None else rows
    if len(rows) == 0:
        return torch.empty(0, dtype=points.dtype)
    return (passes or RowPass(points)).own(centers.to(points.dtype), rows, index)


class FullAssignment:
    """Every row scored at every iteration (no bounds): the reference path, and ``pool_batch``'s."""

    mode = "full"

    def __init__(self, scorer):
        self.scorer = scorer
        self.counts = {"visited": 0, "tightened": 0, "scored": 0}

    def __call__(self, centers: torch.Tensor, rows: torch.Tensor | None = None, pull=None):
        """Each row's exact nearest center and its similarity to it; ``pull`` (``pull.Pull``, started) finished."""
        points = self.scorer.points
        rows = torch.arange(points.shape[0]) if rows is None else rows
        centers = centers.to(points.dtype)
        self.counts["visited"] += len(rows)
        self.counts["scored"] += len(rows)
        index = self.scorer(centers, rows).index
        own = own_similarity(points, centers, rows, index)
        if pull is not None:
            pull.finish(rows, index, own, None)
        return index, own


class BoundedAssignment:
    """Each row's exact nearest center, re-scoring only rows whose bounds overlap."""

    mode = "bounded"

    def __init__(self, scorer, depth: int = DEPTH, coded: bool = True, tighten_limit: int = TIGHTEN_LIMIT):
        self.scorer = scorer
        self.coded = coded
        self.tighten_limit = tighten_limit
        points = scorer.points
        n, self.dim = points.shape
        self.depth = depth
        self.dtype = points.dtype
        # Drifts are multiplied by max‖f_i‖ once, in the displacement itself.
        self.norm_max = float(scorer.norm.max()) if n else 0.0
        self.index = torch.zeros(n, dtype=torch.int64)
        # Upper bounds are stored minus the accumulated displacement of their center at the time
        # they were made, so that adding the current one ages them to now without touching them.
        self.candidates: torch.Tensor | None = None
        self.upper: torch.Tensor | None = None
        self.rest = torch.full((n,), math.inf, dtype=torch.float64)
        # Per row and center not listed, a byte: ``rest - code·scale`` bounds its similarity at the row's
        # scoring, aged by that center's own displacement (empty: only the one bound on the rest).
        self.codes = np.zeros((0, 1), np.uint8)
        self.scale = np.zeros(n)
        # The one bound on the centers not listed, as of the iteration ``rest_at`` (the row's scoring, or
        # later where the bytes above made it again), and the row's drift then.
        self.rest_bound = np.full(n, math.inf)
        self.rest_at = np.zeros(n, np.int64)
        self.rest_drift_at = np.zeros(n)
        self.scored_at = torch.full((n,), -1, dtype=torch.int64)
        # Each row's own drift summed over iterations, its value when the row was last scored, and
        # its similarity to its own center at the previous iteration (NaN: not visited then).
        self.drift = torch.zeros(n, dtype=torch.float64)
        self.drift_at = torch.zeros(n, dtype=torch.float64)
        self.own_before = torch.full((n,), math.nan, dtype=torch.float64)
        self.previous: torch.Tensor | None = None
        self.previous_norm: torch.Tensor | None = None  # the norms of ``previous``'s rows
        self.moved: torch.Tensor | None = None  # accumulated displacement per center (float64)
        self.history: torch.Tensor | None = None  # ``moved`` at every iteration so far
        self.iteration = -1
        self.counts = {"visited": 0, "tightened": 0, "scored": 0}
        self.passes: RowPass | None = None
        self.error_now = 0.0  # ``_error`` at the current iteration

    @torch.no_grad()
    def __call__(self, centers: torch.Tensor, rows: torch.Tensor | None = None, pull=None):
        """Each row's exact nearest center and its similarity to it; ``pull`` (``pull.Pull``, started) finished:
        the check pass adds the rows it keeps, the rows scored again are added after."""
        points = self.scorer.points
        rows = torch.arange(points.shape[0]) if rows is None else rows
        centers = centers.to(points.dtype)
        self._advance(centers)
        self.counts["visited"] += len(rows)
        self.error_now = self._error()
        self.passes = self.passes or RowPass(points)
        before = self.index[rows]
        known = torch.from_numpy(self.scored_at.numpy()[rows.numpy()] >= 0)
        # One compiled pass: own similarities, the bounds' check and the tightening (``kernels``).
        own, keep, tightened = self.passes.check(centers, rows, self, pull)
        self.counts["tightened"] += tightened
        positions = torch.from_numpy(np.flatnonzero(~keep))
        if len(positions):
            rescore = rows[positions]
            self.counts["scored"] += len(rescore)
            self._score(centers, rescore)
            stale = positions[(self.index[rescore] != before[positions]) | ~known[positions]]
            own[stale] = own_similarity(points, centers, rows[stale], self.index[rows[stale]], self.passes)
        own_before = self.own_before.numpy()
        own_before.fill(math.nan)
        own_before[rows.numpy()] = own.numpy()
        index = self.index[rows]
        if pull is not None:  # the check pass added the rows scored before, to their centers then
            pull.finish(rows, index, own, known.numpy() if pull.fused else None, before)
        return index, own

    # ------------------------------------------------------------------------------------------

    def _advance(self, centers: torch.Tensor) -> None:
        """Accumulate each center's displacement since the previous call (a first call, or one with
        another number of centers, starts over: every row is scored)."""
        current = centers.detach().double()
        if self.previous is None or self.previous.shape != current.shape:
            self.moved = torch.zeros(current.shape[0], dtype=torch.float64)
            self.history = torch.empty((0, current.shape[0]), dtype=torch.float64)
            self.scored_at.fill_(-1)
            self.iteration = -1
            depth = min(self.depth, current.shape[0])
            # Listed centers as int16 (int32 beyond 32,767 centers) and their bounds in float32, rounded up: a
            # third of the bytes the check pass reads per row (``kernels.round_up``; a float32 unit is ~1e-7 of the
            # bound, far below the similarities' own rounding bound).
            index_type = torch.int16 if current.shape[0] <= torch.iinfo(torch.int16).max else torch.int32
            self.candidates = torch.zeros((self.index.shape[0], depth), dtype=index_type)
            self.drift.zero_()
            self.drift_at.zero_()
            self.upper = torch.full((self.index.shape[0], depth), math.inf, dtype=torch.float32)
            n, b = self.index.shape[0], current.shape[0]
            self.codes = np.zeros((n if self.coded and n * b <= CODED_BYTES else 0, b), np.uint8)
        else:
            delta = current - self.previous
            step = torch.linalg.vector_norm(delta, dim=1)
            # ‖f_i‖·δ_j, with a relative margin for the float64 norm and sums.
            self.moved += step * self.norm_max * (1 + MARGIN)
            self.drift += self._row_drift(delta, float(step.max()) * (1 + MARGIN))
        self.previous = current
        self.previous_norm = torch.linalg.vector_norm(current, dim=1)
        self.iteration += 1
        if self.history.shape[0] <= self.iteration:  # grow by doubling
            grown = torch.empty((max(8, 2 * self.history.shape[0]), current.shape[0]), dtype=torch.float64)
            grown[: self.history.shape[0]] = self.history
            self.history = grown
        self.history[self.iteration] = self.moved

    def _row_drift(self, delta: torch.Tensor, largest: float) -> torch.Tensor:
        """Per row, a bound on how much its similarity to any center rose in this step: along its own
        center and across it (module docstring), never more than Cauchy–Schwarz's ``‖f‖·max_j ‖Δ_j‖``."""
        before = self.previous  # the centers the own similarities were computed with (float64)
        center_norm = self.previous_norm
        towards, away = steps_along_centers(before, delta, center_norm, largest)
        # Per-row arithmetic in NumPy: the same IEEE operations as torch's, one thread, so that these
        # ~40 small passes over N rows do not each wake torch's idle threads (measured: RESULTS, "Fixed costs").
        own, norm = self.own_before.numpy(), self.scorer.norm.numpy()
        known = ~np.isnan(own)
        everything = bool(known.all())
        center = self.index.numpy() if everything else self.index.numpy()[known]
        towards, away, center_norm = towards.numpy(), away.numpy(), center_norm.numpy()
        scale = center_norm[center]
        norm = norm if everything else norm[known]
        alpha = own if everything else own[known]
        # |α| within the own similarity's rounding, in units of ĉ_a = c_a/‖c_a‖.
        error = dot_error(self.dim, self.dtype) * norm * scale * (1 + MARGIN)
        magnitude = np.abs(alpha)
        high, low = (magnitude + error) / scale, np.maximum(magnitude - error, 0) / scale
        gain = np.where(alpha >= error, towards[center], np.where(alpha <= -error, away[center],
                                                                   np.maximum(towards, away)[center]))
        gain = np.where(gain >= 0, high, low) * gain / scale  # α·⟨ĉ_a, Δ_j⟩ at its largest
        across = np.sqrt(np.maximum(np.square(norm) - np.square(low), 0)) * largest
        bound = np.minimum(gain + across + MARGIN * (np.abs(gain) + across), self.norm_max * largest)
        if everything:
            return torch.from_numpy(bound)
        drift = np.full_like(own, self.norm_max * largest)
        drift[known] = bound
        return torch.from_numpy(drift)

    def _error(self) -> float:
        """Bound on the rounding of one computed similarity (a sampled dot product) with the centers of the last
        ``_advance``, plus an absolute margin for the float64 bookkeeping of the aged bounds."""
        center_max = float(self.previous_norm.max())
        value = dot_error(self.dim, self.dtype) * self.norm_max * center_max * (1 + MARGIN)
        return value + 1e-12 * (1 + float(self.moved.max()))

    def aged_since(self) -> torch.Tensor:
        """For each iteration ``t`` so far, the largest displacement of any center since ``t``: what
        the bound on the centers not listed of a row scored at ``t`` has grown by, at most."""
        return (self.moved[None, :] - self.history[: self.iteration + 1]).amax(dim=1)

    def drift_since_scored(self) -> np.ndarray:
        """Per row, its own drift since it was last scored (``_row_drift``), the other bound on that growth."""
        return (self.drift - self.drift_at).numpy()

    def drift_since_rest(self) -> np.ndarray:
        """Per row, its own drift since its bound on the centers not listed was made."""
        return self.drift.numpy() - self.rest_drift_at

    def rest_made(self, since_rest: np.ndarray) -> None:
        """After a check pass: the row's drift now where the pass made the bound on the rest again (``since_rest``
        set to 0 there)."""
        made = since_rest == 0
        self.rest_drift_at[made] = self.drift.numpy()[made]

    @torch.no_grad()
    def reaching(self, centers: torch.Tensor, count: int, k: int):
        """The rows that may be among the ``k`` most similar to each of the first ``count`` of ``centers``, from the
        bounds (docs/selection.md, "Snapping to samples"): the assignment is brought to ``centers`` (a call), then
        center ``j``'s level is the ``k``-th largest lower bound on the similarity of the rows whose center it is
        (``+inf`` where it has none), and its rows are every row whose upper bound reaches the level. Returns
        ``(level, starts, rows, values)`` (``kernels.reaching_rows``: the rows with their computed similarities), or
        ``None`` where the bounds cannot tell: before a first call, without a byte per center, or where more than
        ``REACHING_SHARE`` of all the pairs of a row and a center reach."""
        if self.iteration < 0 or not len(self.codes):
            return None
        self(centers)
        index, own = self.index.numpy(), self.own_before.numpy()
        mine = np.flatnonzero(index < count)
        order = mine[np.lexsort((-own[mine], index[mine]))]  # by center, most similar first
        sizes = np.bincount(index[mine], minlength=count)
        first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        level = np.full(count, math.inf)
        held = sizes > 0
        level[held] = own[order[first[held] + np.minimum(sizes[held], k) - 1]] - self.error_now
        found = reaching_rows(centers[:count], level, self, int(REACHING_SHARE * len(index) * count))
        return None if found is None else (level, *found)

    def _score(self, centers: torch.Tensor, rows: torch.Tensor) -> None:
        scores = self.scorer(centers, rows, self.candidates.shape[1])
        self.index[rows] = scores.index
        self.candidates[rows] = scores.candidates.to(self.candidates.dtype)
        # The own center's entry is kept at ``-inf``: its similarity is computed exactly at every
        # iteration, and the center of a row changes only here.
        self.upper[rows] = round_up((scores.upper - self.moved[scores.candidates]).masked_fill_(
            scores.candidates == scores.index[:, None], -math.inf))
        self.rest[rows] = scores.rest
        picked = rows.numpy()
        self.rest_bound[picked] = scores.rest.numpy()
        self.rest_at[picked] = self.iteration
        self.rest_drift_at[picked] = self.drift.numpy()[picked]
        if len(self.codes):
            self._code(picked, scores)
        self.scored_at[rows] = self.iteration
        self.drift_at[rows] = self.drift[rows]

    def _code(self, picked: np.ndarray, scores) -> None:
        """Each center's byte for the rows ``picked`` (scored); a scorer without them (the bfloat16 screen)
        leaves every center not listed at the bound on the rest, which still ages center by center."""
        if scores.codes is not None:
            self.codes[picked] = scores.codes.numpy()
            self.scale[picked] = scores.scale.numpy()
            return
        codes = np.zeros((len(picked), self.codes.shape[1]), np.uint8)
        np.put_along_axis(codes, scores.candidates.numpy(), LISTED, axis=1)
        self.codes[picked] = codes
        self.scale[picked] = 0.0


def steps_along_centers(centers, steps, center_norm, largest: float):
    """Upper bounds on ``max_j ⟨c_a, Δ_j⟩`` and ``max_j −⟨c_a, Δ_j⟩`` for every center ``a`` (float64
    ``centers`` and ``steps``; ``center_norm`` their norms, ``largest`` ≥ every step's norm), the same
    values with any thread count, so that the same rows are scored.

    A float32 GEMM estimates them (its last bits may change with the thread count); its error bound
    and the float32 copies' rounding widen each estimate into an interval that holds the true value,
    and every value is rounded up to a grid of ``largest``/128 to 1/256. Where an interval holds a
    grid point (a few centers per step), the GEMM's last bits could change the rounding, so those
    centers' products are computed again correctly rounded (``exact.rounded_products``), which the grid
    rounding then gives the same value as any run that did not need them."""
    b = centers.shape[0]
    if b == 0 or largest == 0:
        return torch.zeros(b, dtype=torch.float64), torch.zeros(b, dtype=torch.float64)
    if not 2.0**-100 < largest < 2.0**60 or float(center_norm.max()) > 2.0**60:
        # Far from float32's range (float64 centers only): Cauchy–Schwarz, |⟨c_a, Δ_j⟩| ≤ ‖c_a‖·‖Δ_j‖.
        cauchy = center_norm * largest * (1 + MARGIN)
        return cauchy, cauchy.clone()
    left, right = centers.float(), steps.float()
    with exact_matmul():
        along = left @ right.T
    return _on_grid(along, left, right, center_norm, largest)


def _on_grid(along, left, right, center_norm, largest: float):
    """``steps_along_centers`` from ``along``, any estimate of ``left @ right.T`` within a float32
    GEMM's error bound: the same values for every such estimate."""
    b = left.shape[0]
    reach = center_norm * largest * (1 + 4 * FP32_UNIT)  # ≥ ‖c̃_a‖·‖Δ̃_j‖ for the float32 copies
    underflow = left.shape[1] * 2.0**-148  # absolute errors of float32 values and products below its normal range
    gemm = dot_error(left.shape[1], torch.float32) * reach * (1 + MARGIN) + underflow
    copies = 4 * FP32_UNIT * reach + underflow * (center_norm + largest)  # true products against the copies'
    rounded = FP32_UNIT * reach  # a correctly rounded product's error
    slack = 2 * rounded + 1e-12 * reach  # and the float64 arithmetic of these sums
    grid = 2.0 ** (math.floor(math.log2(largest)) - 7)
    bounds, settle = [], torch.zeros(b, dtype=torch.bool)
    for estimate in (along.amax(dim=1).double(), -along.amin(dim=1).double()):
        low = torch.ceil((estimate + copies - slack) / grid)
        high = torch.ceil((estimate + 2 * gemm + copies + slack) / grid)
        bounds.append(high * grid)
        settle |= low != high
    if bool(settle.any()):
        rows = settle.nonzero().squeeze(1)
        # Only the columns that may hold one of these rows' true extremes (each estimate is within ``gemm``
        # of its product): the correctly rounded extreme of any set that holds the true one is the same.
        near = along[rows].double()
        width = 2 * gemm[rows, None] * (1 + 1e-6)
        cols = ((near >= near.amax(dim=1, keepdim=True) - width)
                | (near <= near.amin(dim=1, keepdim=True) + width)).any(dim=0).nonzero().squeeze(1)
        exact = rounded_products(left[rows], right[cols])
        for bound, value in zip(bounds, (exact.amax(dim=1), -exact.amin(dim=1))):
            bound[rows] = torch.ceil((value.double() + rounded[rows] + gemm[rows] + copies[rows]) / grid) * grid
    return bounds[0], bounds[1]


def make_assignment(scorer, mode: str):
    return BoundedAssignment(scorer) if mode == "bounded" else FullAssignment(scorer)
