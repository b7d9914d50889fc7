"""Bounds carried across iterations give the same assignment as scoring every row, every time."""

import math

import pytest
import torch

import numpy as np

from active_finetuning.selection import bounds
from active_finetuning.selection.bounds import DEPTH, BoundedAssignment, FullAssignment
from active_finetuning.selection.exact import dot_error
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


# The default list (more centers than these tests move: every center listed) and a short one (most centers
# behind the one bound on the rest, as on real pools).
LISTS = [DEPTH, 8]


@pytest.mark.parametrize("scorer", [GemmScorer, ScreenScorer])
@pytest.mark.parametrize("subsets", [False, True])
@pytest.mark.parametrize("depth", LISTS)
def test_bounded_equals_every_row_scored_and_the_exact_oracle(scorer, subsets, depth):
    points = unit(gaussian_mixture(3000, 32, 15, seed=1)[0])
    bounded, full = BoundedAssignment(scorer(points), depth), FullAssignment(GemmScorer(points))
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


@pytest.mark.parametrize("depth", LISTS)
def test_bounded_handles_labeled_centers_that_never_move_and_restarts_on_new_centers(depth):
    points = unit(gaussian_mixture(1500, 16, 8, seed=4)[0])
    fixed = points[:5]
    bounded, full = BoundedAssignment(GemmScorer(points), depth), FullAssignment(GemmScorer(points))
    for step, centers in moving_centers(points, 25, 15, seed=5):
        everything = torch.cat([centers, fixed])
        assert torch.equal(bounded(everything)[0], full(everything)[0])
    other = unit(torch.randn(7, 16, generator=torch.Generator().manual_seed(6)))
    assert torch.equal(bounded(other)[0], full(other)[0])  # another number of centers: starts over


@pytest.mark.parametrize("depth", LISTS)
def test_float64_points_are_bounded_in_float64(depth):
    points = unit(gaussian_mixture(800, 12, 5, seed=7)[0]).double()
    bounded, full = BoundedAssignment(GemmScorer(points), depth), FullAssignment(GemmScorer(points))
    for step, centers in moving_centers(points, 20, 20, seed=8):
        index, own = bounded(centers)
        expected_index, expected_own = full(centers)
        assert own.dtype == torch.float64
        assert torch.equal(index, expected_index) and torch.equal(own, expected_own)


def _drift_after_one_step(points, before, after):
    """The per-row drift a ``BoundedAssignment`` adds when its centers move from ``before`` to ``after``."""
    bounded = BoundedAssignment(GemmScorer(points))
    bounded(before)
    start = bounded.drift.clone()
    bounded(after)
    return bounded.drift - start


def _largest_rise(points, before, after):
    """max_j ⟨f_i, c_j(after)⟩ − ⟨f_i, c_j(before)⟩ per row, in float64 (the inputs are float32 or float64)."""
    return (points.double() @ (after.double() - before.double()).T).amax(dim=1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_each_rows_drift_bounds_the_rise_of_its_similarity_to_every_center(dtype):
    # Rows of every kind: on a center (all the rise is along it), far from every center (across it),
    # opposite to all centers (a negative own similarity), and a mixture.
    generator = torch.Generator().manual_seed(12)
    common = unit(torch.rand(1, 24, generator=generator) + 0.5)
    centers = unit(common + 0.3 * torch.randn(40, 24, generator=generator))
    mixture = unit(gaussian_mixture(600, 24, 6, seed=13)[0])
    points = torch.cat([centers, -unit(common + 0.05 * torch.randn(50, 24, generator=generator)), mixture]).to(dtype)
    centers = centers.to(dtype)
    moves = {
        "random": unit(centers + 0.02 * torch.randn(centers.shape, generator=generator, dtype=dtype)),
        "away from the common direction": unit(centers - 0.05 * common.to(dtype)),
        "towards it": unit(centers + 0.05 * common.to(dtype)),
    }
    for name, after in moves.items():
        drift = _drift_after_one_step(points, centers, after)
        rise = _largest_rise(points, centers, after)
        assert bool((drift >= rise).all()), (name, int((drift < rise).nonzero()[0]))
        cauchy = (after.double() - centers.double()).norm(dim=1).max() * points.double().norm(dim=1)
        assert bool((drift <= cauchy * (1 + 1e-6)).all())
        if name == "random":  # rows on a center: far tighter than Cauchy–Schwarz
            assert float((drift / cauchy)[:40].median()) < 0.5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_row_opposite_every_center_is_bounded_by_the_centers_moving_away_from_its_own(dtype):
    # Centers in a narrow cone and rows opposite it (own similarity near −1). Centers need not be
    # unit: shrinking them moves each along itself, so every ⟨c_a, Δ_j⟩ is negative and each row's
    # rise is |α|·max_j −⟨ĉ_a, Δ_j⟩, which only the bound for a negative α covers.
    generator = torch.Generator().manual_seed(14)
    common = unit(torch.rand(1, 16, generator=generator) + 0.5)
    centers = unit(common + 0.03 * torch.randn(30, 16, generator=generator)).to(dtype)
    points = -unit(common + 0.03 * torch.randn(200, 16, generator=generator)).to(dtype)
    after = 0.9 * centers
    drift = _drift_after_one_step(points, centers, after)
    rise = _largest_rise(points, centers, after)
    assert float(rise.min()) > 0.09
    assert bool((drift >= rise).all())


@pytest.mark.parametrize("scale", [1.0, 1e-3, 1e-41])
def test_center_steps_are_bounded_and_the_same_for_any_product_within_the_gemms_error(scale):
    # A float32 GEMM's last bits change with the thread count on some BLAS builds: every estimate within
    # its error bound must give the same values (else another thread count would score other rows).
    from active_finetuning.selection.bounds import _on_grid, steps_along_centers
    from active_finetuning.selection.exact import dot_error, rounded_products

    generator = torch.Generator().manual_seed(15)
    dim = 1280  # a wide error bound against the grid: many intervals hold a grid point
    before = unit(torch.randn(300, dim, generator=generator, dtype=torch.float64)).double()
    steps = scale * unit(torch.randn(300, dim, generator=generator, dtype=torch.float64)).double()  # equal norms
    steps[3] = 0.0  # a center that did not move
    norm, largest = before.norm(dim=1), float(steps.norm(dim=1).max()) * (1 + 1e-9)
    towards, away = steps_along_centers(before, steps, norm, largest)
    exact = before @ steps.T  # float64: far inside the float32 margins
    assert bool((towards >= exact.amax(dim=1)).all()) and bool((away >= (-exact).amax(dim=1)).all())
    if scale < 1e-30:  # steps below float32's range: Cauchy–Schwarz
        assert torch.equal(towards, norm * largest * (1 + 1e-9))
        return
    assert float((towards - exact.amax(dim=1)).max()) <= largest / 32  # the grid and the margins only
    left, right = before.float(), steps.float()
    correctly_rounded = rounded_products(left, right)
    bound = dot_error(dim, torch.float32) * left.double().norm(dim=1)[:, None] * right.double().norm(dim=1)
    for trial in range(12):  # estimates anywhere within the error bound, as another BLAS could return
        sign = torch.randint(0, 2, bound.shape, generator=generator).double() * 2 - 1
        size = 0.999 if trial % 2 else torch.rand(bound.shape, generator=generator, dtype=torch.float64)
        noise = sign * bound * size
        other = (correctly_rounded.double() + noise).float()
        got = _on_grid(other, left, right, norm, largest)
        assert torch.equal(got[0], towards) and torch.equal(got[1], away), trial


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_carried_bound_holds_after_every_step(dtype):
    # The assignment can come out right by luck where a bound is too low; the bounds themselves cannot: each
    # listed one, the one on the rest and each center's byte must lie above the true similarity it bounds.
    points = unit(gaussian_mixture(2000, 24, 12, seed=16)[0]).to(dtype)
    bounded = BoundedAssignment(GemmScorer(points), 8)
    for step, centers in moving_centers(points, 60, 40, seed=17):
        index, _ = bounded(centers.to(dtype))
        truth = points.double() @ centers.double().T
        rows = torch.from_numpy(bounded.scored_at.numpy() >= 0).nonzero().squeeze(1)
        listed = bounded.candidates[rows].long()
        aged_listed = bounded.upper[rows].double() + bounded.moved[listed]
        own = listed == bounded.index[rows, None]  # its similarity is computed at every step instead
        assert bool(((aged_listed >= truth[rows].gather(1, listed)) | own).all()), step
        others = truth[rows].scatter(1, listed, -math.inf)
        rest_at = torch.from_numpy(bounded.rest_at[rows.numpy()])
        one = torch.from_numpy(bounded.rest_bound[rows.numpy()]) + torch.minimum(
            bounded.aged_since()[rest_at], torch.from_numpy(bounded.drift_since_rest()[rows.numpy()]))
        assert bool((one >= others.amax(dim=1)).all()), step
        codes = torch.from_numpy(bounded.codes[rows.numpy()]).double()
        ageing = torch.minimum(bounded.moved - bounded.history[bounded.scored_at[rows]],
                               torch.from_numpy(bounded.drift_since_scored()[rows.numpy()])[:, None])
        coded = bounded.rest[rows, None] - codes * torch.from_numpy(bounded.scale[rows.numpy()])[:, None] + ageing
        assert bool((coded >= others).all()), step
        assert bool((codes < 255).sum(dim=1).eq(60 - 8).all())  # a byte for every center not listed
    assert bounded.counts["tightened"] > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k", [1, 16])
@pytest.mark.parametrize("depth", [8, 2])
def test_reaching_lists_every_row_whose_similarity_reaches_its_centers_level(dtype, k, depth):
    # The snap trusts that a row not listed for a center is below its level: checked against float64 similarities
    # (with 2 centers listed, most of a row's bounds are its aged bytes).
    points = unit(gaussian_mixture(3000, 32, 15, seed=18)[0]).to(dtype)
    bounded = BoundedAssignment(GemmScorer(points), depth)
    generator = torch.Generator().manual_seed(19)
    centers = points[torch.randperm(3000, generator=generator)[:40]].clone()
    fixed = points[:3]  # labeled: part of the assignment, never snapped
    for _ in range(30):
        centers = unit(centers + 0.004 * torch.randn(centers.shape, generator=generator)).to(dtype)
        bounded(torch.cat([centers, fixed]))
    final = unit(centers + 0.004 * torch.randn(centers.shape, generator=generator)).to(dtype)
    found = bounded.reaching(torch.cat([final, fixed]), 40, k)
    assert found is not None
    level, starts, rows, values = found
    truth = points.double() @ final.double().T
    assigned = bounded.index.numpy()
    for j in range(40):
        listed = rows[starts[j] : starts[j + 1]]
        assert (np.diff(listed) > 0).all()  # row order
        reached = set(np.flatnonzero(truth[:, j].numpy() >= level[j]).tolist())
        assert reached <= set(listed.tolist()), j
        if (assigned == j).any():  # the level: at least min(k, rows of j) rows at or above it
            assert len(reached) >= min(k, int((assigned == j).sum())), j
        else:
            assert level[j] == math.inf and len(listed) == 0
        error = float(dot_error(points.shape[1], dtype)) * 1.01
        assert np.allclose(values[starts[j] : starts[j + 1]], truth[listed, j].numpy(), rtol=0, atol=error)
    assert len(rows) < 0.2 * 3000 * 40  # the bounds prune


def test_reaching_declines_without_a_fit_without_bytes_or_when_too_many_rows_reach(monkeypatch):
    points = unit(gaussian_mixture(500, 8, 4, seed=20)[0])
    bounded = BoundedAssignment(GemmScorer(points))
    assert bounded.reaching(points[:10], 10, 4) is None  # no call yet: nothing is known
    bounded(points[:10])
    assert bounded.reaching(points[:10], 10, 4) is not None
    monkeypatch.setattr(bounds, "REACHING_SHARE", 0.001)
    assert bounded.reaching(points[:10], 10, 4) is None  # more pairs reach than the share allows
    uncoded = BoundedAssignment(GemmScorer(points), coded=False)
    uncoded(points[:10])
    assert uncoded.reaching(points[:10], 10, 4) is None  # the one bound on the rest cannot tell centers apart
