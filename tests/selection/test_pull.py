"""ActiveFT's pull summed exactly: the same bits in any order, fused with the assignment or not."""

import math

import pytest
import torch

from active_finetuning.selection import pull as pull_module
from active_finetuning.selection.bounds import BoundedAssignment, FullAssignment
from active_finetuning.selection.pull import Pull
from active_finetuning.selection.screen import GemmScorer
from tests.conftest import gaussian_mixture
from tests.conftest import with_threads
from tests.selection.test_bounds import moving_centers
from tests.selection.test_screen import unit


def _inputs(n=9000, dim=1280, centers=81, seed=6):
    generator = torch.Generator().manual_seed(seed)
    features = unit(torch.randn(n, dim, generator=generator))
    rows = torch.sort(torch.randperm(n, generator=generator)[: 2 * n // 3]).values
    index = torch.randint(0, centers // 2, (len(rows),), generator=generator) * 2  # odd centers get no rows
    own = (torch.rand(len(rows), generator=generator) * 2 - 1).float()
    shift = (torch.randn(centers, generator=generator) * 3).float()
    return features, rows, index, own, shift


def _pulled(features, rows, index, own, shift, tau=0.07, threads=2):
    def run():
        made = Pull(features, len(shift), float(features.double().norm(dim=1).max()))
        made.start(shift, tau, len(rows))
        made.finish(rows, index, own)
        return made
    return with_threads(threads, run)


def test_pull_is_the_weighted_sum_of_each_centers_rows_within_float32_rounding():
    features, rows, index, own, shift = _inputs()
    made = _pulled(features, rows, index, own, shift)
    z = shift[index] - own / 0.07  # in float32, as the loss computes it
    weight = torch.sigmoid(z.double())  # rounded once to float32: within half a unit
    assert bool(((made.weights.double() - weight).abs() <= 2.0 ** -24 * weight).all())
    exact = torch.zeros(len(shift), features.shape[1], dtype=torch.float64).index_add_(
        0, index, features[rows].double() * made.weights.double()[:, None])
    assert made.sums.dtype == torch.float32 and made.sums.shape == exact.shape
    # Rounded once to float32 from sums that err by at most 2⁻³⁶ per row: within one float32 unit of the truth.
    unit_in_last_place = torch.finfo(torch.float32).eps * exact.abs()
    assert bool(((made.sums.double() - exact).abs() <= unit_in_last_place + len(rows) * 2.0 ** -36).all())
    assert not made.sums[1::2].any()


def test_paper_weights_are_one():
    features, rows, index, own, _ = _inputs(n=900, dim=64)
    made = _pulled(features, rows, index, own, torch.full((81,), math.inf))
    assert bool((made.weights == 1).all())


@pytest.mark.parametrize("order", ["threads", "centers", "reversed"])
def test_pull_is_the_same_bits_in_any_order(order, monkeypatch):
    # Exact sums: one thread or two, rows added in another order, or center by center (the path beyond the
    # per-thread totals' memory) all give the same bits.
    features, rows, index, own, shift = _inputs()
    expected = _pulled(features, rows, index, own, shift, threads=1)
    if order == "threads":
        got = _pulled(features, rows, index, own, shift, threads=2)
    elif order == "centers":
        monkeypatch.setattr(pull_module, "FUSED_BYTES", 0)
        got = _pulled(features, rows, index, own, shift)
    else:
        flip = torch.arange(len(rows) - 1, -1, -1)
        got = _pulled(features, rows.flip(0), index[flip], own[flip], shift)
        got.weights = got.weights.flip(0)
    assert torch.equal(got.sums, expected.sums)
    assert torch.equal(got.weights, expected.weights)


@pytest.mark.parametrize("rows_per_step", [None, 1000])
def test_the_assignments_pull_equals_the_pull_of_its_result(rows_per_step):
    # The check pass adds the rows scored before, to their centers then; a row that changes center is taken
    # back and added again: the sums equal a pull made afresh from the final assignment, every step.
    points = unit(gaussian_mixture(3000, 48, 15, seed=8)[0])
    bounded, full = BoundedAssignment(GemmScorer(points), 8), FullAssignment(GemmScorer(points))
    norm_max = float(points.double().norm(dim=1).max())
    fused, fresh = Pull(points, 60, norm_max), Pull(points, 60, norm_max)
    generator = torch.Generator().manual_seed(9)
    changed = 0
    for step, centers in moving_centers(points, 60, 30, seed=10):
        rows = torch.arange(3000) if rows_per_step is None else torch.sort(
            torch.randperm(3000, generator=generator)[:rows_per_step]).values
        shift = torch.randn(60, generator=generator).float()
        before = bounded.index[rows].clone()
        fused.start(shift, 0.07, len(rows))
        index, own = bounded(centers, rows, fused)
        changed += int((index != before).sum()) if step else 0
        fresh.start(shift, 0.07, len(rows))
        expected_index, expected_own = full(centers, rows, fresh)
        assert torch.equal(index, expected_index) and torch.equal(own, expected_own)
        assert torch.equal(fused.sums, fresh.sums), step
        assert torch.equal(fused.weights, fresh.weights), step
    assert changed > 100  # rows taken back and added again
