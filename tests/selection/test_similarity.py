import numpy as np
import pytest
import torch

from active_finetuning.selection.bounds import BoundedAssignment
from active_finetuning.selection.screen import GemmScorer
from active_finetuning.selection.similarity import (
    snap_to_unique_samples,
)
from tests.conftest import gaussian_mixture


def unit(x):
    x = torch.as_tensor(x, dtype=torch.float32)
    return x / x.norm(dim=1, keepdim=True)


def full_sort_snap(centers, pool, excluded=()):
    """C1's greedy snapping with a full descending sort per center, on float64 similarities (they
    order every pair that is not an exact tie here), ties to the lowest row."""
    taken = set(int(i) for i in excluded)
    picks = []
    for row in centers.double() @ pool.double().T:
        for index in torch.argsort(row, descending=True, stable=True).tolist():
            if index not in taken:
                taken.add(index)
                picks.append(index)
                break
    return picks


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("topk", [1, 2, 64])
def test_snapping_equals_full_sort_even_when_topk_is_exhausted(topk, dtype):
    pool = unit(gaussian_mixture(800, 12, 5, seed=10)[0]).to(dtype)
    centers = torch.cat([pool[:30], pool[:30] + 1e-3])  # pairs of centers compete for samples
    centers /= centers.norm(dim=1, keepdim=True)
    excluded = np.array([3, 7, 11])
    picks = snap_to_unique_samples(centers, pool, topk=topk, excluded=excluded)
    assert picks.tolist() == full_sort_snap(centers, pool, excluded)
    assert len(set(picks.tolist())) == len(picks) and not set(picks.tolist()) & {3, 7, 11}


@pytest.mark.parametrize("threads", [1, 2])
def test_snapping_settles_float32_near_ties_exactly(threads):
    # Pool rows that differ from each other by less than float32 can resolve: the pick is the row
    # whose exact similarity is largest, whatever the GEMM's rounding with this thread count.
    generator = torch.Generator().manual_seed(3)
    base = unit(torch.randn(40, 256, generator=generator))
    pool = torch.cat([base + 1e-7 * torch.randn(40, 256, generator=generator) for _ in range(4)])
    centers = unit(base[:30] + 0.05 * torch.randn(30, 256, generator=generator))
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        picks = snap_to_unique_samples(centers, pool, topk=8)
    finally:
        torch.set_num_threads(previous)
    assert picks.tolist() == full_sort_snap(centers, pool)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("topk", [1, 2, 64])
def test_snapping_from_the_bounds_equals_full_sort(topk, dtype):
    # The rows the bounds list for each center replace the pass over the pool; pairs of centers compete for
    # samples and the best rows of some are excluded, so that listed rows below a center's level are all that
    # is left free for it and its whole row must be computed.
    pool = unit(gaussian_mixture(6000, 24, 10, seed=12)[0]).to(dtype)
    generator = torch.Generator().manual_seed(13)
    start = pool[torch.randperm(6000, generator=generator)[:20]]
    centers = torch.cat([start, start + 1e-3])
    bounded = BoundedAssignment(GemmScorer(pool), 8)
    for _ in range(15):
        centers = unit(centers + 0.003 * torch.randn(centers.shape, generator=generator)).to(dtype)
        bounded(centers)
    centers = unit(centers + 0.003 * torch.randn(centers.shape, generator=generator)).to(dtype)
    excluded = (centers[:10].double() @ pool.double().T).argmax(dim=1).unique().numpy()
    reaching = bounded.reaching(centers, len(centers), topk)
    assert reaching is not None
    picks = snap_to_unique_samples(centers, pool, topk=topk, excluded=excluded, reaching=reaching)
    assert picks.tolist() == full_sort_snap(centers, pool, excluded)
