"""Compiled loops over rows, where torch would make many passes (docs/selection.md, "Exact assignment", compiled passes).

``RowPass.check``: every row's similarity to its own center and the check of its carried bounds
(``bounds.BoundedAssignment``), tightening them where only the listed centers stand in the way, in one
pass over the pool while each row is in cache. As torch calls these are a sampled product over the
pool, a dozen passes over per-row and per-row × 32 arrays, and a second sampled product over the rows
tightened; torch has nothing that fuses them.

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
# Rows whose own similarities are computed before their bounds are checked (640 KB of float32 rows
# of 1,280: they stay in the L2 cache for the tightening).
CHECK_BLOCK = 128


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


@_compiled(fastmath={"reassoc", "nnan", "nsz"})
def _listed_top(upper, candidates, moved):
    """``max_c upper[c] + moved[candidates[c]]``: the largest aged bound of a row's listed centers (a
    maximum, exact in any order; reassociation lets it run in vector lanes; bounds are never NaN)."""
    top = -np.inf
    for col in range(upper.shape[0]):
        top = max(top, upper[col] + moved[candidates[col]])
    return top


@_compiled
def _check_rows(points, centers, rows, index, start, stop, check, scored_at, candidates, upper, moved, rest,
                since_scored, aged_since, error, own, keep):
    """For the positions ``start..stop-1``: ``own[i]``, the similarity of row ``rows[i]`` to its center
    ``index[rows[i]]``. With ``check``, also ``keep[i]``: whether the row provably keeps that center
    (``bounds.BoundedAssignment``), after tightening its listed centers if only they stood in the way;
    a row never scored is not kept and its own similarity is left alone. Returns the rows tightened.

    Rows go in blocks of ``CHECK_BLOCK``: their own similarities first (one stream over the pool),
    then their bounds, while the block's rows are still in cache for the tightening."""
    tightened = 0
    for first in range(start, stop, CHECK_BLOCK):
        last = min(stop, first + CHECK_BLOCK)
        for i in range(first, last):
            r = rows[i]
            if not check or scored_at[r] >= 0:
                own[i] = _dot(points[r], centers[index[r]])
        if not check:
            continue
        for i in range(first, last):
            r = rows[i]
            if scored_at[r] < 0:
                keep[i] = False
                continue
            lower = np.float64(own[i]) - error
            bound_rest = rest[r] + min(aged_since[scored_at[r]], since_scored[r])
            kept = lower > max(_listed_top(upper[r], candidates[r], moved), bound_rest)
            if not kept and lower > bound_rest:
                # Tightening the listed centers cannot save a row whose bound on the others fails too.
                tightened += 1
                top = -np.inf
                for col in range(candidates.shape[1]):
                    j = candidates[r, col]
                    value = upper[r, col] + moved[j]
                    if value >= lower:
                        value = np.float64(_dot(points[r], centers[j])) + error
                        upper[r, col] = value - moved[j]
                    top = max(top, value)
                kept = lower > top
            keep[i] = kept
    return tightened


def _int64(values: torch.Tensor) -> np.ndarray:
    """A C-contiguous int64 array (one compiled specialisation of the pass, whatever view comes in)."""
    return np.ascontiguousarray(values.numpy(), dtype=np.int64)


class RowPass:
    """The compiled passes over the rows of ``points`` (float32 or float64)."""

    def __init__(self, points: torch.Tensor):
        self.points = points.contiguous()
        self.array = self.points.numpy()
        self._none = (np.zeros(0, np.int64), np.zeros((0, 1), np.int64), np.zeros((0, 1)), np.zeros(0),
                      np.zeros(0), np.zeros(0), np.zeros(0))

    def own(self, centers: torch.Tensor, rows: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """``⟨points[rows[p]], centers[index[p]]⟩`` for every ``p``."""
        own = np.empty(len(rows), dtype=self.array.dtype)
        centers_array, rows_array = centers.contiguous().numpy(), _int64(rows)
        index_array = np.empty(self.array.shape[0], np.int64)  # indexed by row
        index_array[rows_array] = index.numpy()
        self._run(lambda start, stop: _check_rows(
            self.array, centers_array, rows_array, index_array, start, stop, False, *self._none, 0.0, own,
            np.zeros(0, np.bool_)), len(rows))
        return torch.from_numpy(own)

    def check(self, centers: torch.Tensor, rows: torch.Tensor, state) -> tuple[torch.Tensor, np.ndarray, int]:
        """Own similarities of ``rows`` to their centers and which rows keep them (``state``: a
        ``bounds.BoundedAssignment``); returns them and the number of rows tightened."""
        own = torch.empty(len(rows), dtype=self.points.dtype)
        keep = np.empty(len(rows), dtype=np.bool_)
        centers_array, rows_array = centers.contiguous().numpy(), _int64(rows)
        arrays = (state.scored_at.numpy(), state.candidates.numpy(), state.upper.numpy(), state.moved.numpy(),
                  state.rest.numpy(), state.drift_since_scored(), state.aged_since().numpy())
        counts = self._run(lambda start, stop: _check_rows(
            self.array, centers_array, rows_array, state.index.numpy(), start, stop, True, *arrays,
            state.error_now, own.numpy(), keep), len(rows))
        return own, keep, int(sum(counts))

    @staticmethod
    def _run(task, count: int) -> list:
        """``task(start, stop)`` over contiguous parts of ``count`` positions, one per thread (torch's
        number; the first in the calling thread): each position is computed by one thread, so the
        values do not depend on the count."""
        threads = min(max(1, torch.get_num_threads()), max(1, count // SERIAL_ROWS))
        edges = np.linspace(0, count, threads + 1).astype(np.int64).tolist()
        others = [_workers(threads - 1).submit(task, start, stop) for start, stop in zip(edges[1:-1], edges[2:])]
        return [task(edges[0], edges[1])] + [future.result() for future in others]


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
