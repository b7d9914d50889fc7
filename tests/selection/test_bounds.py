"""Bounds carried across iterations give the same assignment as scoring every row, every time."""

import pytest
import torch

from active_finetuning.selection.bounds import BoundedAssignment, FullAssignment
from active_finetuning.selection.screen import GemmScorer, ScreenScorer
from tests.conftest import gaussian_mixture
from tests.selection.test_screen import exact_nearest, unit


def moving_centers(points, count, steps, seed):
    """Centers on a random walk: small steps, occasional jumps, and near-duplicate pairs."""
    generator = torch.Generator().manual_seed(seed)
    centers = points[torch.randperm(len(points), generator=generator)[:count]].clone()
    centers[1::7] = centers[::7][: len(centers[1::7])] + 1e-6  # near-ties by construction
    for step in range(steps):
        size = 0.3 if step % 9 == 8 else 0.02 * torch.rand(1, generator=generator).item()
        centers = unit(centers + size * torch.randn(centers.shape, generator=generator))
        yield step, centers


@pytest.mark.parametrize("scorer", [GemmScorer, ScreenScorer])
@pytest.mark.parametrize("subsets", [False, True])
def test_bounded_equals_every_row_scored_and_the_exact_oracle(scorer, subsets):
    points = unit(gaussian_mixture(3000, 32, 15, seed=1)[0])
    bounded, full = BoundedAssignment(scorer(points)), FullAssignment(GemmScorer(points))
    generator = torch.Generator().manual_seed(2)
    for step, centers in moving_centers(points, 60, 40, seed=3):
        rows = torch.sort(torch.randperm(3000, generator=generator)[:1000]).values if subsets else None
        index, own = bounded(centers, rows)
        expected_index, expected_own = full(centers, rows)
        assert torch.equal(index, expected_index), step
        assert torch.equal(own, expected_own), step  # the loss sees the same bits
        if step % 10 == 0:
            assert torch.equal(index, exact_nearest(points if rows is None else points[rows], centers))
    assert bounded.counts["scored"] < 0.6 * bounded.counts["visited"]  # the bounds do skip rows


def test_bounded_handles_labeled_centers_that_never_move_and_restarts_on_new_centers():
    points = unit(gaussian_mixture(1500, 16, 8, seed=4)[0])
    fixed = points[:5]
    bounded, full = BoundedAssignment(GemmScorer(points)), FullAssignment(GemmScorer(points))
    for step, centers in moving_centers(points, 25, 15, seed=5):
        everything = torch.cat([centers, fixed])
        assert torch.equal(bounded(everything)[0], full(everything)[0])
    other = unit(torch.randn(7, 16, generator=torch.Generator().manual_seed(6)))
    assert torch.equal(bounded(other)[0], full(other)[0])  # another number of centers: starts over


def test_float64_points_are_bounded_in_float64():
    points = unit(gaussian_mixture(800, 12, 5, seed=7)[0]).double()
    bounded, full = BoundedAssignment(GemmScorer(points)), FullAssignment(GemmScorer(points))
    for step, centers in moving_centers(points, 20, 20, seed=8):
        index, own = bounded(centers)
        expected_index, expected_own = full(centers)
        assert own.dtype == torch.float64
        assert torch.equal(index, expected_index) and torch.equal(own, expected_own)
