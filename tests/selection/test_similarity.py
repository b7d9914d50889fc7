import numpy as np
import pytest
import torch

from active_finetuning.selection.exact import exact_matmul
from active_finetuning.selection.similarity import (
    nearest_by_similarity,
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


def test_exact_matmul_forces_full_float32_and_restores_the_user_setting():
    generator = torch.Generator().manual_seed(3)
    points, centers = torch.randn(300, 256, generator=generator), torch.randn(40, 256, generator=generator)
    expected = (points.double() @ centers.double().T)
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")  # what a user may set for their own model
    try:
        with exact_matmul():
            assert torch.get_float32_matmul_precision() == "highest"
            product = points @ centers.T
        assert torch.get_float32_matmul_precision() == "medium"
        index, _ = nearest_by_similarity(points, centers)
    finally:
        torch.set_float32_matmul_precision(previous)
    assert (product.double() - expected).abs().max() < 1e-4  # float32, not bfloat16 (~1e-1 here)
    assert torch.equal(index, expected.argmax(dim=1))


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
