import numpy as np
import pytest
import torch

from active_finetuning.selection import similarity
from active_finetuning.selection.similarity import (
    ScreenedNearest,
    nearest_by_similarity,
    snap_to_unique_samples,
)
from tests.conftest import gaussian_mixture


def unit(x):
    x = torch.as_tensor(x, dtype=torch.float32)
    return x / x.norm(dim=1, keepdim=True)


def assert_same_assignment(points, centers, chunk=None):
    expected_index, expected_similarity = nearest_by_similarity(points, centers)
    index, value = ScreenedNearest(points, chunk)(centers)
    assert torch.equal(index, expected_index)
    torch.testing.assert_close(value, expected_similarity, rtol=0, atol=1e-6)
    return index


def near_tie_centers(generator, base, copies, scale):
    """``copies`` perturbations of each ``base`` row, ``scale`` apart: near-ties by construction."""
    noise = scale * torch.randn(len(base) * copies, base.shape[1], generator=generator)
    return unit(base.repeat_interleave(copies, dim=0) + noise)


@pytest.mark.parametrize("scale", [0.0, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3])
def test_screened_equals_float32_argmax_on_near_ties(scale):
    generator = torch.Generator().manual_seed(1)
    points = unit(gaussian_mixture(2500, 96, 12, seed=3)[0])
    centers = near_tie_centers(generator, points[:40], 3, scale)
    index = assert_same_assignment(points, centers)
    if scale == 0.0:  # exact duplicate centers: the lowest index of each triple wins
        assert (index % 3 == 0).all()


@pytest.mark.parametrize("scale", [0.0, 1e-13, 1e-10, 1e-7, 1e-4])
def test_screened_equals_float64_argmax_on_float64_near_ties(scale):
    # ActiveFT's precision="float64": float64 points and centers, near-ties far below float32's
    # resolution; the bfloat16 screen is the same, the candidates are re-scored in float64.
    generator = torch.Generator().manual_seed(1)
    points = unit(gaussian_mixture(2500, 96, 12, seed=3)[0]).double()
    noise = scale * torch.randn(120, 96, generator=generator, dtype=torch.float64)
    centers = points[:40].repeat_interleave(3, dim=0) + noise
    centers /= centers.norm(dim=1, keepdim=True)
    index = assert_same_assignment(points, centers)
    if scale == 0.0:
        assert (index % 3 == 0).all()
    elif scale == 1e-10:  # ties for float32, decided by float64
        assert not (index % 3 == 0).all()
    assert ScreenedNearest(points)(centers)[1].dtype == torch.float64


def test_screened_equals_float32_argmax_with_duplicate_points_and_centers_on_points():
    generator = torch.Generator().manual_seed(2)
    points = unit(torch.rand(3000, 64, generator=generator))  # one narrow cone: small gaps
    points[1000:1500] = points[:500]  # duplicate samples
    centers = torch.cat([points[:60], points[:60], points[2000:2100]])  # duplicate centers on samples
    assert_same_assignment(points, centers)


def test_screened_equals_float32_argmax_on_bf16_ties():
    # Centers that round to the same bfloat16 vector but differ in float32: every row's screen
    # is a tie and only the float32 re-score can decide.
    generator = torch.Generator().manual_seed(4)
    points = unit(torch.randn(1500, 40, generator=generator))
    base = points[:25].to(torch.bfloat16).float()
    step = torch.full_like(base, 2.0**-12) * torch.sign(torch.randn(base.shape, generator=generator))
    centers = unit(torch.cat([base, base + step, base - step]))
    assert_same_assignment(points, centers)


@pytest.mark.parametrize("chunk", [None, 7, 100, 999])
def test_screened_handles_block_edges_and_small_pools(chunk):
    generator = torch.Generator().manual_seed(5)
    for n in (1, 5, 63, 64, 65, 1001):
        points = unit(torch.randn(n, 24, generator=generator))
        centers = unit(torch.randn(9, 24, generator=generator))
        assert_same_assignment(points, centers, chunk)


def test_screened_subset_matches_a_fresh_search():
    points = unit(gaussian_mixture(2000, 32, 8, seed=6)[0])
    centers = points[:50] + 0.01
    rows = torch.arange(0, 2000, 3)
    full = ScreenedNearest(points)
    part_index, part_value = full.subset(rows)(centers)
    fresh_index, fresh_value = ScreenedNearest(points[rows])(centers)
    assert torch.equal(part_index, fresh_index) and torch.equal(part_value, fresh_value)


def test_screen_bound_holds_and_most_rows_need_no_rescore():
    # The proven bound must hold for every pair; a useless (too loose) bound would send every
    # center of every row to the float32 re-score.
    points = unit(np.abs(gaussian_mixture(4000, 256, 30, seed=8)[0]))
    centers = points[:200] + 0.02
    centers = unit(centers)
    pairs = []
    original = similarity._argmax_over_pairs

    def spy(points_, centers_, rows, cols, slack):
        pairs.append(len(rows))
        return original(points_, centers_, rows, cols, slack)

    similarity._argmax_over_pairs = spy
    try:
        assert_same_assignment(points, centers)
    finally:
        similarity._argmax_over_pairs = original
    assert points.shape[0] <= pairs[0] < 3 * points.shape[0]


def test_falls_back_to_the_float32_product_when_the_probe_fails(monkeypatch):
    monkeypatch.setattr(similarity, "_bf16_accumulates_in_fp32", lambda *shape: False)
    points = unit(gaussian_mixture(500, 16, 4, seed=9)[0])
    centers = points[:20]
    index, value = ScreenedNearest(points)(centers)
    expected = nearest_by_similarity(points, centers)
    assert torch.equal(index, expected[0]) and torch.equal(value, expected[1])


def test_bf16_probe_passes_on_this_machine():
    assert similarity._bf16_accumulates_in_fp32(64, 1280, 500)


def full_sort_snap(centers, pool, excluded=()):
    taken = set(int(i) for i in excluded)
    picks = []
    for row in centers @ pool.T:
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


def test_screen_rescues_centers_that_the_bf16_screen_ranks_second():
    # Adversarial rows: each point leans on the bfloat16 rounding residual r of one center so that
    # the screen ranks the two centers the wrong way round by up to about the proven bound, while
    # float32 ranks them right. With B = 2, (c₁ − ν) = −(c₂ − ν) and the residuals are opposite.
    generator = torch.Generator().manual_seed(12)
    points, centers = [], []
    for pair in range(20):
        c = unit(torch.randn(2, 64, generator=generator))
        shifted = c.double() - c.double().mean(dim=0)
        residual = shifted[0] - shifted[0].to(torch.bfloat16).double()
        r_hat, spread = residual / residual.norm(), shifted[0]
        for q in torch.linspace(0.05, 0.95, 10, dtype=torch.float64):
            t = (q * residual.norm() - r_hat @ spread) / spread.norm()
            points.append((r_hat + t * spread / spread.norm()).float())
        centers.append(c)
    flipped = 0
    for pair, c in enumerate(centers):
        rows = unit(torch.stack(points[10 * pair : 10 * pair + 10]))
        truth = (rows.double() @ c.double().T).argmax(dim=1)
        shifted = (c.double() - c.double().mean(dim=0)).to(torch.bfloat16)
        screen = (rows.to(torch.bfloat16) @ shifted.T).float().argmax(dim=1)
        flipped += int((screen != truth).sum())
        assert_same_assignment(rows, c)
    assert flipped >= 50  # the rows really do defeat a screen without the bound
