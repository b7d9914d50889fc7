"""ActiveFT's pull on each centroid, summed exactly (docs/selection.md, "The pull").

The gradient's pull on center ``j`` is ``Σ_{i: k_i = j} w_i f_i`` with ``w_i = σ(shift_j − ⟨f_i, c_j⟩/τ)``
(``shift_j = log λ + log R_j``; ``+inf`` gives every row the weight 1, the paper's loss). Float32 rows are
summed in fixed point: each product ``w_i·f_ik`` (exact in float64: two 24-bit significands) is rounded to
a grid ``g`` fine enough that the sum of every row's products stays below ``2^53·g``, so that every
partial sum in float64 is exact. The total is then the same bits in any order, whichever thread adds
which row, and is rounded once to float32. That is what lets the assignment's check pass add each row
it keeps while the row is in cache (one pass over the pool instead of two), the rows it scores again
being added after; and the sums are closer to the exact ones than a float32 sum in row order.

Float64 rows keep a float64 sum in row order per center (``activeft._assigned_sum``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .kernels import RowPass, _drain_totals, _int64, _pull_bags, _pull_positions, _take_back

# Bytes of per-thread float64 totals (threads × centers × dim) up to which the sums are made in the check
# pass; above, center by center after it (a second pass over the rows, the same bits).
FUSED_BYTES = 1 << 27


class Pull:
    """The pull of float32 ``points`` on ``centers`` centers, every row norm at most ``norm_max``.

    Per iteration: ``start`` (the shifts), rows added by a check pass (``bounds.BoundedAssignment``) while
    ``fused``, then ``finish`` with every row's center and own similarity; ``sums`` (centers × dim, float32)
    and ``weights`` (per row) are then the iteration's."""

    def __init__(self, points: torch.Tensor, centers: int, norm_max: float):
        if points.dtype != torch.float32:
            raise TypeError("Pull sums float32 rows")
        self.array = points.contiguous().numpy()
        self.centers = centers
        self.norm_max = norm_max
        self.totals = np.zeros((0, centers, points.shape[1]))
        self.fused = self.dirty = False
        self.sums: torch.Tensor | None = None
        self.weights: torch.Tensor | None = None

    def start(self, shift: torch.Tensor, tau: float, count: int) -> None:
        """A new sum over ``count`` rows; ``shift`` per center, ``tau`` the temperature."""
        threads = max(1, torch.get_num_threads())
        self.fused = threads * self.centers * self.array.shape[1] * 8 <= FUSED_BYTES
        if self.fused and len(self.totals) < threads:
            self.totals = np.zeros((threads, self.centers, self.array.shape[1]))
        elif self.fused and self.dirty:  # a sum left unfinished (``finish`` leaves the totals at zero)
            self.totals.fill(0.0)
        self.dirty = self.fused
        self.shift = np.ascontiguousarray(shift.numpy(), dtype=np.float32)
        self.tau = np.float32(tau)
        self.weight = np.empty(count, np.float32)
        # Every product and partial sum is below 2·count·norm_max < 2^(e−1) (each row added at most twice, once
        # taken back); σ = 1.5·2^e rounds x to a multiple of ulp(σ) = 2^(e−52) as (x + σ) − σ (ties to the even
        # multiple: −x rounds to minus x's), and float64 holds every such multiple below 2^(e+1).
        self.magic = 1.5 * 2.0 ** (math.frexp(2 * count * self.norm_max)[1] + 1)
        self.sums = self.weights = None

    def arguments(self, slot: int) -> tuple:
        """What a check pass run by thread ``slot`` adds its rows with."""
        return self.shift, self.tau, self.magic, self.totals[slot], self.weight

    def finish(self, rows: torch.Tensor, index: torch.Tensor, own: torch.Tensor, added: np.ndarray | None = None,
               added_to: torch.Tensor | None = None) -> None:
        """Make ``sums`` and ``weights`` from every position of ``rows`` (``index``: its center, ``own``: its
        similarity to it), given the positions already ``added`` by the check pass, to the centers ``added_to``:
        those now with another center are taken back and added again, those not added are added."""
        rows_array, index_array, own_array = _int64(rows), _int64(index), own.numpy()
        sums = np.empty((self.centers, self.array.shape[1]), np.float32)
        if self.fused:
            if added is None:
                positions = np.arange(len(rows_array))
            else:
                before = _int64(added_to)
                moved = np.flatnonzero(added & (before != index_array))
                RowPass._run(lambda start, stop, slot: _take_back(
                    self.array, rows_array, before, moved, self.magic, self.totals[slot], self.weight, start, stop),
                    len(moved), slotted=True)
                positions = np.flatnonzero(~added | (before != index_array))
            RowPass._run(lambda start, stop, slot: _pull_positions(
                self.array, rows_array, index_array, own_array, positions, self.shift, self.tau, self.magic,
                self.totals[slot], self.weight, start, stop), len(positions), slotted=True)
            RowPass._run(lambda start, stop: _drain_totals(self.totals, sums, start, stop), self.centers, 8)
            self.dirty = False
        else:
            order = np.argsort(index_array, kind="stable")
            starts = np.zeros(self.centers + 1, np.int64)
            np.cumsum(np.bincount(index_array, minlength=self.centers), out=starts[1:])
            RowPass._run(lambda start, stop: _pull_bags(
                self.array, rows_array, own_array, order, starts, self.shift, self.tau, self.magic, sums,
                self.weight, start, stop), self.centers, 2)
        self.sums = torch.from_numpy(sums)
        self.weights = torch.from_numpy(self.weight)
