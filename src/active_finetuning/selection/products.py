"""Small dense products whose every element is one compiled dot product (docs/selection.md, "The same bits
with any number of threads").

ActiveFT's repulsion multiplies B × d matrices: the Gram matrix of the centroids and the softmax weights
times the centroids. A float32 GEMM's last bits change with the thread count on some BLAS builds, and
Adam turns them into different picks. Here each element ``⟨a_i, b_j⟩`` is computed by one thread in an
order fixed when the loop is compiled, and that order is the same for every element, wherever it falls in
a tile, in a chunk of rows or in a thread's share: the product's bits depend on the operands and the
compiled code only (not on the thread count, the chunking, the row order or the BLAS). The elements are
computed in tiles of 4 × 2 (eight sums in registers, the operands read once for the tile), which keeps a
product of 500 × 1,280 by 1,280 × 500 about as fast as MKL's float32 GEMM on two cores, with AVX-512 or
with AVX2's sixteen registers (benchmarks/RESULTS.md, "The repulsion's products compiled"), where the
correctly rounded products used before cost a float64 GEMM and a rounding pass.

The Gram matrix is symmetric bit for bit (``x·y`` and ``y·x`` are the same, and so is the order), so only
the tiles on and above the diagonal are computed and mirrored.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .kernels import RowPass, _compiled

# A tile: rows of the left operand by rows of the right one. Eight sums and six operand vectors fit AVX2's
# sixteen registers (4 × 4 spilled there: 30% slower); AVX-512 gains little from larger tiles.
TILE_ROWS, TILE_COLUMNS = 4, 2
# Row tiles below which a product runs on one thread.
SERIAL_TILES = 8


@_compiled(fastmath={"reassoc", "contract"})
def _tiles(a, b, out, start, stop, upper):
    """``out[i, j] = ⟨a[i], b[j]⟩`` for the rows ``i`` of the row tiles ``start..stop-1`` and every ``j`` (rows
    of both padded to whole tiles); with ``upper`` (``a`` is ``b``), only the tiles from the diagonal on, each
    also written at ``out[j, i]``, row tiles counted from the last (the parts handed out first, the largest, then
    hold the rows with the fewest tiles: the threads' shares even out). Reassociation lets the compiler sum each element in vector lanes; the order
    is the same for all eight elements of a tile, so every element gets the same bits wherever it is."""
    zero = a.dtype.type(0)
    for position in range(start, stop):
        i = (a.shape[0] // TILE_ROWS - 1 - position if upper else position) * TILE_ROWS
        a0, a1, a2, a3 = a[i], a[i + 1], a[i + 2], a[i + 3]
        for j in range(i if upper else 0, b.shape[0], TILE_COLUMNS):
            b0, b1 = b[j], b[j + 1]
            t00 = t01 = t10 = t11 = t20 = t21 = t30 = t31 = zero
            for k in range(a.shape[1]):
                y0, y1 = b0[k], b1[k]
                t00 += a0[k] * y0
                t01 += a0[k] * y1
                t10 += a1[k] * y0
                t11 += a1[k] * y1
                t20 += a2[k] * y0
                t21 += a2[k] * y1
                t30 += a3[k] * y0
                t31 += a3[k] * y1
            out[i, j], out[i, j + 1], out[i + 1, j], out[i + 1, j + 1] = t00, t01, t10, t11
            out[i + 2, j], out[i + 2, j + 1], out[i + 3, j], out[i + 3, j + 1] = t20, t21, t30, t31
            if upper:
                out[j, i], out[j + 1, i], out[j, i + 1], out[j + 1, i + 1] = t00, t01, t10, t11
                out[j, i + 2], out[j + 1, i + 2], out[j, i + 3], out[j + 1, i + 3] = t20, t21, t30, t31


def _padded(values: torch.Tensor, multiple: int) -> np.ndarray:
    """``values`` as a C-contiguous array with zero rows added up to a multiple of ``multiple``."""
    array = values.contiguous().numpy()
    rows = -(-array.shape[0] // multiple) * multiple
    if rows == array.shape[0]:
        return array
    padded = np.zeros((rows, array.shape[1]), array.dtype)
    padded[: array.shape[0]] = array
    return padded


def fixed_products(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """``left @ right.T`` (2-D, both float32 or both float64), every element one compiled dot product
    (module docstring): the same bits with any thread count, for any subset or order of the rows."""
    if left.dtype != right.dtype or left.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"fixed_products needs two float32 or two float64 operands, not {left.dtype} and {right.dtype}")
    if left.shape[1] != right.shape[1]:
        raise ValueError(f"inner sizes differ: {tuple(left.shape)} and {tuple(right.shape)}")
    a, b = _padded(left, TILE_ROWS), _padded(right, TILE_COLUMNS)
    out = np.empty((a.shape[0], b.shape[0]), a.dtype)
    _run(a, b, out, upper=False)
    return torch.from_numpy(out)[: left.shape[0], : right.shape[0]]


def fixed_gram(values: torch.Tensor) -> torch.Tensor:
    """``fixed_products(values, values)``, the same bits, from the tiles on and above the diagonal."""
    if values.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"fixed_gram needs float32 or float64 values, not {values.dtype}")
    a = _padded(values, math.lcm(TILE_ROWS, TILE_COLUMNS))
    out = np.empty((a.shape[0], a.shape[0]), a.dtype)
    _run(a, a, out, upper=True)
    n = values.shape[0]
    return torch.from_numpy(out)[:n, :n]


def _run(a: np.ndarray, b: np.ndarray, out: np.ndarray, upper: bool) -> None:
    RowPass._run(lambda start, stop: _tiles(a, b, out, start, stop, upper), a.shape[0] // TILE_ROWS, SERIAL_TILES)
