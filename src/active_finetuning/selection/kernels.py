"""Compiled loops over rows, where torch would make many passes (docs/selection.md, "Exact assignment", compiled passes).

``RowPass.check``: every row's similarity to its own center and the check of its carried bounds
(``bounds.BoundedAssignment``: the listed centers, the one bound on the rest, a byte per other center),
tightening them where a few centers stand in the way, in one pass over the pool while each row is in
cache. Maxima over a row are written as counts of values at or above the row's lower bound where only
the verdict is needed: numba vectorises a count, not a floating-point maximum. As torch calls these
are a sampled product over the pool, a dozen passes over per-row and per-row × 96 arrays, and a
second sampled product over the rows tightened; torch has nothing that fuses them.

``rounded_within``: a float64 product rounded to float32 and the elements its error bound leaves
undecided (``exact.rounded_products``), in one pass.

``top_rows``: the largest values of each row of a scored product (``screen.GemmScorer``), by bisection
on a vectorised count where ``torch.topk`` sorts (about twice as fast on 500 centers), and each other
value's byte below the bound on the rest.

A row's own similarity is a dot product that one thread computes in one fixed order (the loop is
vectorised once, at compile time): the same value with any number of threads, and the same from
``RowPass.own`` as from ``RowPass.check``, which run the same compiled loop.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from numba import njit

# Rows below which a pass runs on one thread (starting threads costs more than it saves).
SERIAL_ROWS = 2048
# The same for the top of each row, about five times the work per row of the check.
TOP_SERIAL_ROWS = 512
# The same for rounding a float64 product (one row: 500 to 1,280 elements, a few operations each).
ROUNDED_SERIAL_ROWS = 64
# Rows whose own similarities are computed before their bounds are checked (640 KB of float32 rows
# of 1,280: they stay in the L2 cache for the tightening).
CHECK_BLOCK = 128
# A center's byte code when the row lists it (its own bound is carried apart); codes 0..254 are steps
# below the bound on the rest (``_top_rows``).
LISTED = 255
# The byte codes' range: gaps below the bound on the rest up to this share of the values' bound, beyond
# it a center is coded at the range's end (still an upper bound).
CODE_SPAN = 0.5


def _compiled(function=None, **options):
    """``njit`` without the GIL, with numba's on-disk cache where a cache directory is writable (later
    processes then load the compiled code instead of compiling it again, ~1 s), without it elsewhere."""
    def build(function):
        try:
            return njit(nogil=True, cache=True, **options)(function)
        except RuntimeError:  # no writable cache location
            return njit(nogil=True, **options)(function)
    return build if function is None else build(function)


@_compiled(fastmath={"reassoc"})
def _dot(a, b):
    """``⟨a, b⟩`` in the rows' precision. Reassociation lets the compiler sum in vector lanes (an
    order fixed in the compiled code); the error bound ``γ_d‖a‖‖b‖`` holds in any order."""
    total = a.dtype.type(0)
    for k in range(a.shape[0]):
        total += a[k] * b[k]
    return total


@_compiled(fastmath={"reassoc"})
def _dots(point, centers, chosen, count, out):
    """``out[q] = ⟨point, centers[chosen[q]]⟩`` for ``q < count``, four centers at a time (the row read once for
    four products: ~30% faster than four ``_dot``). Each value's summation order is fixed in the compiled code
    but not ``_dot``'s: for bounds only (their error ``γ_d‖a‖‖b‖`` holds in any order)."""
    zero = point.dtype.type(0)
    full = count - count % 4
    for q in range(0, full, 4):
        a, b, c, d = centers[chosen[q]], centers[chosen[q + 1]], centers[chosen[q + 2]], centers[chosen[q + 3]]
        ta = tb = tc = td = zero
        for k in range(point.shape[0]):
            x = point[k]
            ta += x * a[k]
            tb += x * b[k]
            tc += x * c[k]
            td += x * d[k]
        out[q], out[q + 1], out[q + 2], out[q + 3] = ta, tb, tc, td
    for q in range(full, count):
        out[q] = _dot(point, centers[chosen[q]])


@_compiled
def _aged(code, rest, scale, ageing):
    """A center's byte aged to now (``rest - code·scale`` bounds its similarity at the row's scoring, ``ageing``
    since then); ``-inf`` for a listed center."""
    aged = rest - code * scale + ageing
    return aged if code != LISTED else -np.inf


@_compiled
def _part_shift(centers):
    """``s`` such that parts of ``2**s`` centers (at least 8) number at most 64: one bit each in an int64."""
    shift = 3
    while (centers - 1) >> shift >= 64:
        shift += 1
    return shift


@_compiled
def _rest_reach(codes, rest, scale, moved, history, drift, lower, step, shift):
    """How many centers not listed have an aged byte (``_aged``: the smaller of its center's own displacement
    since the row's scoring, ``moved - history``, and the row's drift) at or above ``lower − step·{0, 1, 3, 7}``,
    and the parts of ``2**shift`` centers with one at or above ``lower`` (bit ``p``: centers from ``p·2**shift``).
    Counts are vectorised, a floating-point maximum is not; without fast-math, each value has the same bits as
    ``_tighten_rest``'s, which visits the flagged parts one center at a time."""
    reach = near = middle = far = parts = 0
    for j in range(codes.shape[0]):
        aged = _aged(codes[j], rest, scale, min(moved[j] - history[j], drift))
        reach += aged >= lower
        parts |= np.int64(aged >= lower) << (j >> shift)
        near += aged >= lower - step
        middle += aged >= lower - 3 * step
        far += aged >= lower - 7 * step
    return reach, near, middle, far, parts


@_compiled
def _rest_level(near, middle, far, lower, step):
    """The lowest of ``lower − step·{0, 1, 3, 7}`` that no center reaches, given how many reach the last three
    (``_rest_reach``): where none reaches ``lower``, a bound on them all as of now without their maximum."""
    level = 7 if far == 0 else 3 if middle == 0 else 1 if near == 0 else 0
    return lower - level * step


@_compiled
def _tighten_rest(point, centers, codes, rest, scale, moved, history, drift, lower, step, error, counts, parts,
                  shift, chosen, values):
    """The bound on the centers a row does not list, as of now (``_rest_level``), after computing exactly each
    center whose aged byte reaches ``lower`` (``counts`` and ``parts``: ``_rest_reach``'s): its new bound is coded
    as if made at the row's scoring, minus the ageing until now, so that ageing it from then still bounds it
    (``bounds.BoundedAssignment``), and the counts follow. ``inf`` where a center still reaches ``lower``, or its
    bound does not fit the bytes (above ``rest``, or no scale): the row is scored again. ``chosen`` and ``values``:
    room for every center."""
    reach, near, middle, far = counts
    if not scale > 0:
        return np.inf
    count = 0
    for part in range(64):
        if not (parts >> part) & 1:
            continue
        for j in range(part << shift, min(codes.shape[0], (part + 1) << shift)):
            if _aged(codes[j], rest, scale, min(moved[j] - history[j], drift)) >= lower:
                chosen[count] = j
                count += 1
    _dots(point, centers, chosen, count, values)
    for q in range(count):
        j = chosen[q]
        ageing = min(moved[j] - history[j], drift)
        made = np.float64(values[q]) + error - ageing  # the bound, as of the scoring
        if made > rest:
            return np.inf
        codes[j] = np.uint8(min(254.0, np.floor((rest - made) * ((1 - 1e-12) / scale))))
        aged = _aged(codes[j], rest, scale, ageing)  # it reached every level before
        reach += (aged >= lower) - 1
        near += (aged >= lower - step) - 1
        middle += (aged >= lower - 3 * step) - 1
        far += (aged >= lower - 7 * step) - 1
    return np.inf if reach else _rest_level(near, middle, far, lower, step)


@_compiled
def _round_up(value):
    """A float32 value at or above float64 ``value`` (a bound stored in float32 stays a bound): raised by
    2⁻²² of itself and 2⁻¹⁴⁹, more than the float32 rounding can take off (half a unit, at most 2⁻²⁴ of
    the value, or 2⁻¹⁵⁰ below float32's normal range); infinities as they are. Branch-free: vectorised."""
    raised = value + abs(value) * 2.0**-22 + 2.0**-149
    return np.float32(value if np.isinf(value) else raised)


@_compiled
def _round_up_rows(values, out):
    """``_round_up`` of every element of the 2-D ``values`` into ``out``."""
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            out[i, j] = _round_up(values[i, j])


def round_up(values: torch.Tensor) -> torch.Tensor:
    """Float64 ``values`` (2-D) as float32 values at or above them (``_round_up``)."""
    out = np.empty(values.shape, np.float32)
    _round_up_rows(np.ascontiguousarray(values.numpy()), out)
    return torch.from_numpy(out)


@_compiled
def _listed_reach(upper, candidates, moved, lower, shift):
    """How many listed centers have an aged bound at or above ``lower``, and the parts of ``2**shift`` columns
    with one (bit ``p``: columns from ``p·2**shift``); vectorised, the same bits as the check pass's values."""
    reach = parts = 0
    for col in range(upper.shape[0]):
        reached = upper[col] + moved[candidates[col]] >= lower
        reach += reached
        parts |= np.int64(reached) << (col >> shift)
    return reach, parts


@_compiled
def _check_rows(points, centers, rows, index, start, stop, check, scored_at, candidates, upper, moved, rest,
                since_scored, aged_since, codes, scale, history, rest_bound, rest_at, since_rest, now, step, limit,
                error, own, keep, shift, tau, magic, total, weight):
    """For the positions ``start..stop-1``: ``own[i]``, the similarity of row ``rows[i]`` to its center
    ``index[rows[i]]``. With ``check``, also ``keep[i]``: whether the row provably keeps that center
    (``bounds.BoundedAssignment``), after computing exactly the centers within reach while there are at
    most ``limit`` (their bytes and listed bounds updated; the one bound on the rest made again as of
    ``now`` where the bytes pass it, ``since_rest`` then 0; ``step``: the largest displacement of the last
    iteration, the spacing of the levels it is made at where no center needs computing, ``_rest_reach``);
    a row never scored is not kept and its own similarity is left alone. Returns the rows tightened. With a
    ``total`` (``pull.Pull``), each row scored before also adds its weighted self to its center's sum while
    it is in cache (exact sums: a row that does not keep its center is taken back as exactly, ``Pull.finish``).

    Rows go in blocks of ``CHECK_BLOCK``: their own similarities first (one stream over the pool),
    then their bounds, while the block's rows are still in cache for the tightening."""
    tightened = 0
    part_shift, listed_shift = _part_shift(codes.shape[1]), _part_shift(candidates.shape[1])
    room = max(codes.shape[1], candidates.shape[1])  # the centers and columns a row's tightening computes
    chosen, columns, values = np.empty(room, np.int64), np.empty(room, np.int64), np.empty(room, points.dtype)
    for first in range(start, stop, CHECK_BLOCK):
        last = min(stop, first + CHECK_BLOCK)
        for i in range(first, last):
            r = rows[i]
            if not check or scored_at[r] >= 0:
                own[i] = _dot(points[r], centers[index[r]])
                if total.shape[0] and scored_at[r] >= 0:  # added now, while in cache; taken back if not kept
                    weight[i] = _weight(own[i], shift[index[r]], tau)
                    _add_row(points[r], weight[i], total[index[r]], magic)
        if not check:
            continue
        for i in range(first, last):
            r = rows[i]
            if scored_at[r] < 0:
                keep[i] = False
                continue
            lower = np.float64(own[i]) - error
            passed = lower > rest_bound[r] + min(aged_since[rest_at[r]], since_rest[r])
            exact = 0  # similarities within reach of ``lower``, to compute exactly for the row to keep its center
            if not passed and codes.shape[0]:  # the one bound fails: try each center's
                then = history[scored_at[r]]
                exact, near, middle, far, parts = _rest_reach(codes[r], rest[r], scale[r], moved, then,
                                                              since_scored[r], lower, step, part_shift)
                passed = exact == 0
                made = _rest_level(near, middle, far, lower, step)
                if 0 < exact <= limit:
                    tightened += scale[r] > 0
                    made = _tighten_rest(points[r], centers, codes[r], rest[r], scale[r], moved, then,
                                         since_scored[r], lower, step, error, (exact, near, middle, far), parts,
                                         part_shift, chosen, values)
                    passed = made < np.inf
                if passed:  # the one bound, made again as of now
                    rest_bound[r], rest_at[r], since_rest[r] = made, now, 0.0
            if not passed:
                keep[i] = False
                continue
            reach, parts = _listed_reach(upper[r], candidates[r], moved, lower, listed_shift)
            kept = reach == 0
            if not kept and exact + reach <= limit:
                # The listed centers within reach computed exactly: while few, cheaper than scoring the row. The
                # others are below ``lower``: the row keeps its center if these are too.
                tightened += exact == 0  # not counted yet
                kept = True
                count = 0
                for part in range(64):
                    if not (parts >> part) & 1:
                        continue
                    for col in range(part << listed_shift, min(candidates.shape[1], (part + 1) << listed_shift)):
                        j = candidates[r, col]
                        if upper[r, col] + moved[j] >= lower:
                            chosen[count], columns[count] = j, col
                            count += 1
                _dots(points[r], centers, chosen, count, values)
                for q in range(count):
                    j, col = chosen[q], columns[q]
                    value = np.float64(values[q]) + error
                    upper[r, col] = _round_up(value - moved[j])
                    kept = kept and lower > value
            keep[i] = kept
    return tightened


@_compiled
def _reaching_rows(points, targets, level, index, own, error, candidates, upper, moved, codes, rest, scale, history,
                   scored_at, since_scored, starts, rows, values, chosen, found):
    """For every center ``j < len(level)`` (``targets[j]``), the rows whose upper bound on their similarity to it
    reaches ``level[j]``: their own similarity plus ``error`` where ``j`` is their center, else their listed bound
    or their aged byte (``bounds.BoundedAssignment``); every other row's similarity is below the level. Counted
    into ``starts[j + 1]`` where ``rows`` is empty; else each row with its computed similarity (``_dots``, the row
    read once for all its centers) written into ``rows`` and ``values`` from ``starts[j]``, which advances: each
    center's rows in row order. ``chosen`` and ``found``: room for every center."""
    fill = rows.shape[0] > 0
    centers = level.shape[0]
    shift = _part_shift(centers)
    for r in range(index.shape[0]):
        then = history[scored_at[r]]
        count = 0
        own_center = index[r]
        if own_center < centers and np.float64(own[r]) + error >= level[own_center]:
            chosen[count] = own_center
            count += 1
        for col in range(candidates.shape[1]):
            j = candidates[r, col]
            if j < centers and j != own_center and upper[r, col] + moved[j] >= level[j]:
                chosen[count] = j
                count += 1
        if not fill:  # counted in one vectorised pass over the bytes
            for j in range(centers):
                starts[j + 1] += _aged(codes[r, j], rest[r], scale[r], min(moved[j] - then[j], since_scored[r])) >= level[j]
            for q in range(count):
                starts[chosen[q] + 1] += 1
            continue
        parts = 0
        for j in range(centers):
            reached = _aged(codes[r, j], rest[r], scale[r], min(moved[j] - then[j], since_scored[r])) >= level[j]
            parts |= np.int64(reached) << (j >> shift)
        for part in range(64):
            if not (parts >> part) & 1:
                continue
            for j in range(part << shift, min(centers, (part + 1) << shift)):
                if _aged(codes[r, j], rest[r], scale[r], min(moved[j] - then[j], since_scored[r])) >= level[j]:
                    chosen[count] = j
                    count += 1
        _dots(points[r], targets, chosen, count, found)
        for q in range(count):
            j = chosen[q]
            rows[starts[j]], values[starts[j]] = r, found[q]
            starts[j] += 1


def reaching_rows(targets: torch.Tensor, level: np.ndarray, state, most: int):
    """``_reaching_rows`` for a ``bounds.BoundedAssignment`` with a byte per center, as CSR: ``(starts, rows,
    values)``, center ``j``'s rows ``rows[starts[j]:starts[j + 1]]`` in row order, and their similarities to it;
    ``None`` where there are more than ``most`` (counted before any is computed)."""
    points = state.scorer.points.contiguous().numpy()
    arrays = (state.index.numpy(), state.own_before.numpy(), state.error_now, state.candidates.numpy(),
              state.upper.numpy(), state.moved.numpy(), state.codes, state.rest.numpy(), state.scale,
              state.history.numpy(), state.scored_at.numpy(), state.drift_since_scored())
    room = state.codes.shape[1] + state.candidates.shape[1]
    chosen, found = np.empty(room, np.int64), np.empty(room, points.dtype)
    target = targets.to(state.dtype).contiguous().numpy()
    starts = np.zeros(len(level) + 1, np.int64)
    _reaching_rows(points, target, level, *arrays, starts, np.zeros(0, np.int64), np.zeros(0, points.dtype), chosen,
                   found)
    np.cumsum(starts, out=starts)
    if starts[-1] > most:
        return None
    rows, values = np.empty(starts[-1], np.int64), np.empty(starts[-1], points.dtype)
    _reaching_rows(points, target, level, *arrays, starts[:-1].copy(), rows, values, chosen, found)
    return starts, rows, values


@_compiled(error_model="numpy")  # IEEE division: a τ that rounds to 0 in float32 gives ±inf, not an exception
def _weight(own, shift, tau):
    """``σ(shift − own/τ)``, ActiveFT's weight of a row in its center's pull (docs/selection.md, "The pull"):
    ``own/τ`` and the difference in float32 as the loss computes them, the sigmoid in float64, rounded once."""
    z = np.float32(shift) - np.float32(own) / np.float32(tau)
    return np.float32(1.0 / (1.0 + np.exp(-np.float64(z))))


@_compiled
def _add_row(point, weight, total, magic):
    """``total += weight·point`` with each product (exact in float64) rounded to the grid of ``magic``
    (``Pull``), so that every sum is exact and the total the same in any order."""
    w = np.float64(weight)
    for k in range(point.shape[0]):
        total[k] += (np.float64(point[k]) * w + magic) - magic


@_compiled
def _pull_positions(points, rows, index, own, positions, shift, tau, magic, total, weight, start, stop):
    """The pull of the positions ``positions[start..stop-1]`` of ``rows`` (``index``, ``own`` and ``weight``
    by position), into ``total``."""
    for p in range(start, stop):
        i = positions[p]
        k = index[i]
        weight[i] = _weight(own[i], shift[k], tau)
        _add_row(points[rows[i]], weight[i], total[k], magic)


@_compiled
def _take_back(points, rows, index, positions, magic, total, weight, start, stop):
    """Undo ``_pull_positions`` for ``positions[start..stop-1]`` (their ``index`` and ``weight`` as added):
    the same rounded products subtracted, exactly."""
    for p in range(start, stop):
        i = positions[p]
        _add_row(points[rows[i]], -weight[i], total[index[i]], magic)


@_compiled
def _drain_totals(totals, out, start, stop):
    """``out[k]``, the threads' ``totals[:, k]`` summed (exactly: multiples of the pull's grid) and rounded to
    float32, for the centers ``start..stop-1``; the totals are left at zero for the next sum."""
    for k in range(start, stop):
        for d in range(totals.shape[2]):
            value = 0.0
            for t in range(totals.shape[0]):
                value += totals[t, k, d]
                totals[t, k, d] = 0.0
            out[k, d] = value


@_compiled
def _pull_bags(points, rows, own, order, starts, shift, tau, magic, out, weight, start, stop):
    """The pull center by center for the centers ``start..stop-1`` (their positions
    ``order[starts[k]:starts[k+1]]``), each made whole by one thread and rounded to float32 into ``out``: the
    same bits as ``_pull_positions`` and ``_drain_totals``."""
    total = np.zeros(points.shape[1])
    for k in range(start, stop):
        total[:] = 0.0
        for q in range(starts[k], starts[k + 1]):
            i = order[q]
            weight[i] = _weight(own[i], shift[k], tau)
            _add_row(points[rows[i]], weight[i], total, magic)
        for d in range(total.shape[0]):
            out[k, d] = total[d]


@_compiled(fastmath={"reassoc", "nsz"})
def _count_at_least(row, level):
    """How many values of ``row`` are ``>= level`` (vectorised; a count is exact in any order)."""
    count = 0
    for col in range(row.shape[0]):
        count += row[col] >= level
    return count


@_compiled
def _kth_level(row, k, limit):
    """A value ``t`` of ``row``'s type with at least ``k`` values ``>= t`` and at most ``k`` values ``> t``
    (fewer than ``k`` unless exactly ``k`` reach ``t``), by bisection on the count between ``-limit`` and
    ``limit`` (``|row| < limit``): a count is one vectorised pass over the row, where a sort or a heap
    branches on every value. Returns NaN if ``limit`` does not bound the row (or the row has a NaN)."""
    low, high = row.dtype.type(-limit), row.dtype.type(limit)
    if _count_at_least(row, low) < row.shape[0] or _count_at_least(row, high) > 0:
        return row.dtype.type(np.nan)
    while True:
        middle = row.dtype.type((np.float64(low) + np.float64(high)) * 0.5)
        if middle <= low or middle >= high:  # no value between: the k-th largest is ``low``
            return low
        count = _count_at_least(row, middle)
        if count == k:
            return middle
        if count > k:
            low = middle
        else:
            high = middle


@_compiled
def _top_rows(values, depth, width, limit, error, index, best, candidates, upper, rest, codes, scale, start, stop):
    """For the rows ``start..stop-1`` of ``values``: the ``width`` largest values of each row
    (``screen.GemmScorer``; ties at the last place to the lowest columns), not sorted. ``index``: the
    column of the largest (the lowest among equal ones); ``best``: the two largest values. With ``depth``,
    ``candidates`` and ``upper`` (value + ``error``) the ``depth`` largest, ``rest`` an upper bound
    on every other column: the ``depth + 1``-th largest + ``error`` (``-inf`` when every column is listed),
    and ``codes`` and ``scale`` an upper bound on each of them (``_code_row``).
    Returns the first row ``limit`` did not bound (its values are not finite), or ``-1``."""
    columns = values.shape[1]
    chosen = np.empty(columns, np.int64)
    for r in range(start, stop):
        row = values[r]
        level = _kth_level(row, width, limit)
        if np.isnan(level):
            return r
        taken = 0
        for col in range(columns):  # branch-free: every column written, the ones above the level kept
            chosen[taken] = col
            taken += row[col] > level
        for col in range(columns):
            if taken == width:
                break
            if row[col] == level:
                chosen[taken] = col
                taken += 1
        first = 0
        for p in range(1, width):
            if row[chosen[p]] > row[chosen[first]] or (
                    row[chosen[p]] == row[chosen[first]] and chosen[p] < chosen[first]):
                first = p
        second = -np.inf
        for p in range(width):
            if p != first:
                second = max(second, np.float64(row[chosen[p]]))
        index[r - start] = chosen[first]
        best[r - start, 0] = row[chosen[first]]
        best[r - start, 1] = second
        if depth == 0:
            continue
        dropped = -1  # the place of a least value, left out of the list when not every column fits
        if width > depth:
            dropped = 0
            for p in range(1, width):
                if row[chosen[p]] <= row[chosen[dropped]]:
                    dropped = p
            rest[r - start] = np.float64(row[chosen[dropped]]) + error[r - start]
            scale[r - start] = _code_row(row, np.float64(row[chosen[dropped]]), limit * CODE_SPAN, codes[r - start])
        else:
            rest[r - start] = -np.inf
            scale[r - start] = 0.0
        slot = 0
        for p in range(width):
            if p != dropped:
                candidates[r - start, slot] = chosen[p]
                upper[r - start, slot] = np.float64(row[chosen[p]]) + error[r - start]
                codes[r - start, chosen[p]] = LISTED
                slot += 1
    return -1


@_compiled
def _code_row(row, level, span, codes):
    """Each value's gap below ``level`` (the largest value not listed) in steps of the returned scale,
    rounded down and at most 254: ``level + error - code·scale`` is an upper bound on the value's true
    similarity (``_tighten_rest``). The scale spreads the 254 steps over the row's gaps, up to ``span``;
    a gap beyond is coded 254, a value at or above ``level`` 0 (the listed ones are set apart after)."""
    low = level
    for col in range(row.shape[0]):
        low = min(low, np.float64(row[col]))
    step = min(level - low, span) / 254
    if not step > 0:  # every value at the level (or none below it)
        codes[:] = 0
        return 0.0
    inverse = (1 - 1e-12) / step  # rounding the steps down keeps code·step below the gap
    for col in range(row.shape[0]):
        gap = (level - np.float64(row[col])) * inverse  # a difference of two float32 values: exact
        codes[col] = np.uint8(min(254.0, max(0.0, np.floor(gap))))
    return step


def top_rows(values: torch.Tensor, depth: int, limit: float, error: torch.Tensor):
    """The exact top of each row of a computed product (``_top_rows``), in threads over the rows:
    ``(index, best, candidates, upper, rest, codes, scale)``, the last five ``None`` without ``depth``. ``limit``
    bounds every value's magnitude."""
    n, columns = values.shape
    width = min(max(depth + 1, 2), columns)
    listed = min(depth, columns)
    index = np.empty(n, np.int64)
    best = np.empty((n, 2), np.float64)
    candidates = np.empty((n, listed), np.int64)
    upper = np.empty((n, listed), np.float64)
    rest = np.empty(n, np.float64)
    codes = np.empty((n if depth else 0, columns), np.uint8)
    scale = np.empty(n, np.float64)
    array, bounds = values.contiguous().numpy(), np.ascontiguousarray(error.numpy(), dtype=np.float64)
    failed = RowPass._run(lambda start, stop: _top_rows(
        array[start:stop], depth, width, limit, bounds[start:stop], index[start:stop], best[start:stop],
        candidates[start:stop], upper[start:stop], rest[start:stop], codes[start:stop], scale[start:stop],
        0, stop - start), n, TOP_SERIAL_ROWS)
    failed = [f for f in failed if f >= 0]
    if failed:
        raise FloatingPointError(f"a similarity is not finite or exceeds its bound {limit!r}")
    result = torch.from_numpy(index), torch.from_numpy(best)
    if not depth:
        return result + (None, None, None, None, None)
    return result + tuple(torch.from_numpy(a) for a in (candidates, upper, rest, codes, scale))


@_compiled
def _rounded_rows(wide, left, right, out, unsure, start, stop):
    """For the rows ``start..stop-1``: ``out``, float64 ``wide`` rounded to float32, and ``unsure``,
    where ``wide ∓ left[i]·right[j]`` (an error interval) do not both round to the same float32
    (branch-free: the loop is vectorised). The operations and their order are those of the torch
    calls this replaces, so the bits are too."""
    for i in range(start, stop):
        for j in range(wide.shape[1]):
            value = wide[i, j]
            bound = left[i] * right[j]
            rounded = np.float32(value)
            out[i, j] = rounded
            unsure[i, j] = (np.float32(value - bound) != rounded) | (np.float32(bound + value) != rounded)


def rounded_within(wide: torch.Tensor, left: torch.Tensor, right: torch.Tensor):
    """``wide`` (float64, rows × columns) rounded to float32, and the rows and columns where its error
    bound ``left[i]·right[j]`` leaves the rounding undecided, in row-major order
    (``exact.rounded_products``): one pass over the product where torch makes six."""
    values = wide.contiguous().numpy()
    out = np.empty(values.shape, np.float32)
    unsure = np.empty(values.shape, np.bool_)
    left_array = np.ascontiguousarray(left.numpy(), dtype=np.float64)
    right_array = np.ascontiguousarray(right.numpy(), dtype=np.float64)
    RowPass._run(lambda start, stop: _rounded_rows(values, left_array, right_array, out, unsure, start, stop),
                 values.shape[0], ROUNDED_SERIAL_ROWS)
    rows, cols = np.divmod(np.flatnonzero(unsure), max(1, values.shape[1]))
    return torch.from_numpy(out), torch.from_numpy(rows), torch.from_numpy(cols)


# The pull's arguments of a check pass that adds no row (``Pull.arguments``).
_NO_PULL = (np.zeros(0, np.float32), np.float32(1), 0.0, np.zeros((0, 1)), np.zeros(0, np.float32))


def _int64(values: torch.Tensor) -> np.ndarray:
    """A C-contiguous int64 array (one compiled specialisation of the pass, whatever view comes in)."""
    return np.ascontiguousarray(values.numpy(), dtype=np.int64)


class RowPass:
    """The compiled passes over the rows of ``points`` (float32 or float64)."""

    def __init__(self, points: torch.Tensor):
        self.points = points.contiguous()
        self.array = self.points.numpy()
        self._none = (np.zeros(0, np.int64), np.zeros((0, 1), np.int16), np.zeros((0, 1), np.float32), np.zeros(0),
                      np.zeros(0), np.zeros(0), np.zeros(0), np.zeros((0, 1), np.uint8), np.zeros(0),
                      np.zeros((0, 1)), np.zeros(0), np.zeros(0, np.int64), np.zeros(0), 0, 0.0, 0)

    def own(self, centers: torch.Tensor, rows: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """``⟨points[rows[p]], centers[index[p]]⟩`` for every ``p``."""
        own = np.empty(len(rows), dtype=self.array.dtype)
        centers_array, rows_array = centers.contiguous().numpy(), _int64(rows)
        index_array = np.empty(self.array.shape[0], np.int64)  # indexed by row
        index_array[rows_array] = index.numpy()
        self._run(lambda start, stop: _check_rows(
            self.array, centers_array, rows_array, index_array, start, stop, False, *self._none, 0.0, own,
            np.zeros(0, np.bool_), *_NO_PULL), len(rows))
        return torch.from_numpy(own)

    def check(self, centers: torch.Tensor, rows: torch.Tensor, state, pull=None
              ) -> tuple[torch.Tensor, np.ndarray, int]:
        """Own similarities of ``rows`` to their centers and which rows keep them (``state``: a
        ``bounds.BoundedAssignment``); returns them and the number of rows tightened. ``pull``: the rows
        kept add their weighted selves to it (``pull.Pull``, when ``fused``), the others are left to ``finish``."""
        own = torch.empty(len(rows), dtype=self.points.dtype)
        keep = np.empty(len(rows), dtype=np.bool_)
        centers_array, rows_array = centers.contiguous().numpy(), _int64(rows)
        since_rest = state.drift_since_rest()  # set to 0 where the pass makes the bound again
        aged = state.aged_since().numpy()
        step = float(aged[-2]) if len(aged) > 1 else 0.0  # the largest displacement of the last iteration
        arrays = (state.scored_at.numpy(), state.candidates.numpy(), state.upper.numpy(), state.moved.numpy(),
                  state.rest.numpy(), state.drift_since_scored(), aged, state.codes, state.scale,
                  state.history.numpy(), state.rest_bound, state.rest_at, since_rest, state.iteration, step,
                  state.tighten_limit)
        fused = pull is not None and pull.fused
        counts = self._run(lambda start, stop, slot: _check_rows(
            self.array, centers_array, rows_array, state.index.numpy(), start, stop, True, *arrays,
            state.error_now, own.numpy(), keep, *(pull.arguments(slot) if fused else _NO_PULL)), len(rows),
            slotted=True)
        state.rest_made(since_rest)
        return own, keep, int(sum(counts))

    @staticmethod
    def _run(task, count: int, serial: int = SERIAL_ROWS, slotted: bool = False) -> list:
        """``task(start, stop)`` over contiguous parts of ``count`` positions, in up to torch's number of
        threads (the calling one among them) while each has at least ``serial`` positions; the results
        of every part, in no fixed order. Each position is computed by one thread, so the values do
        not depend on the count. The parts are handed out as threads ask for them, largest first (as
        OpenMP's guided schedule): a thread that shares its core (with torch's OpenMP threads, which
        spin for a while after each operation, or with another process) takes fewer of them.
        ``slotted``: ``task(start, stop, slot)``, ``slot`` the thread's number (below torch's thread count)."""
        threads = min(max(1, torch.get_num_threads()), max(1, count // serial))
        if threads == 1:
            return [task(0, count, 0) if slotted else task(0, count)]
        parts = iter(_guided(count, threads, serial // 2))
        lock = threading.Lock()

        def work(slot: int) -> list:
            done = []
            while True:
                with lock:
                    part = next(parts, None)
                if part is None:
                    return done
                done.append(task(*part, slot) if slotted else task(*part))

        others = [_workers(threads - 1).submit(work, slot) for slot in range(1, threads)]
        results = work(0)
        for future in others:
            results += future.result()
        return results


def _guided(count: int, threads: int, smallest: int) -> list[tuple[int, int]]:
    """Parts of ``count`` positions, each half of what is left per thread, none under ``smallest``."""
    parts, start = [], 0
    while start < count:
        stop = min(count, start + max(smallest, (count - start) // (2 * threads)))
        parts.append((start, stop))
        start = stop
    return parts


# Worker threads kept between passes: threads started for each pass made it ~50% slower (measured on the
# pool's own-similarity pass, benchmarks/RESULTS.md). Private to this module; forgotten in a forked child.
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _workers(count: int) -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if count and (_POOL is None or _POOL._max_workers < count):
            if _POOL is not None:
                _POOL.shutdown(wait=False)
            _POOL = ThreadPoolExecutor(count, thread_name_prefix="active-finetuning-rows")
        return _POOL


def _forget_workers() -> None:
    global _POOL
    _POOL = None


os.register_at_fork(after_in_child=_forget_workers)
