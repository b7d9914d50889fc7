"""The scorers find the exact nearest center (true argmax, ties to the lowest index), and every
term of the bfloat16 screen's error bound is needed."""

import math

import numpy as np
import pytest
import torch

from active_finetuning.selection import screen
from active_finetuning.selection.screen import (
    GemmScorer,
    ScreenScorer,
    fastest_scorer,
    screen_error_of,
    screen_terms,
)
from tests.conftest import gaussian_mixture


def unit(x, dtype=torch.float32):
    x = torch.as_tensor(x, dtype=dtype)
    return x / x.norm(dim=1, keepdim=True)


def exact_nearest(points, centers):
    """Independent oracle: float64 products, and for rows whose best two are within 1e-9 the
    correctly rounded exact sums (``math.fsum``) of each candidate, lowest index among equals."""
    values = points.double() @ centers.double().T
    index = values.argmax(dim=1)
    best = values.max(dim=1).values
    for row in ((best[:, None] - values) <= 1e-9).sum(dim=1).gt(1).nonzero().squeeze(1).tolist():
        options = ((best[row] - values[row]) <= 1e-9).nonzero().squeeze(1).tolist()
        exact = {j: _exact_dot(points[row], centers[j]) for j in options}
        top = max(exact.values())
        index[row] = min(j for j, value in exact.items() if value == top)
    return index


def _exact_dot(x, y):
    """Exact enough to order near-ties: fsum of the float64 products, with each float64 product
    split into exact halves (Dekker) when the inputs are float64."""
    a, b = x.double().numpy(), y.double().numpy()
    if x.dtype != torch.float64:
        return math.fsum((a * b).tolist())
    from fractions import Fraction
    return sum(Fraction(float(p)) * Fraction(float(q)) for p, q in zip(a, b))


SCORERS = [GemmScorer, ScreenScorer]


def assert_exact(points, centers, chunk=None, rows=None):
    expected = exact_nearest(points if rows is None else points[rows], centers)
    for scorer in SCORERS:
        index = scorer(points, chunk)(centers, rows).index
        assert torch.equal(index, expected), scorer.__name__
    return expected


def near_tie_centers(generator, base, copies, scale):
    """``copies`` perturbations of each ``base`` row, ``scale`` apart: near-ties by construction."""
    noise = scale * torch.randn(len(base) * copies, base.shape[1], generator=generator)
    return unit(base.repeat_interleave(copies, dim=0) + noise)


@pytest.mark.parametrize("scale", [0.0, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3])
def test_exact_on_near_ties(scale):
    generator = torch.Generator().manual_seed(1)
    points = unit(gaussian_mixture(2500, 96, 12, seed=3)[0])
    centers = near_tie_centers(generator, points[:40], 3, scale)
    index = assert_exact(points, centers)
    if scale == 0.0:  # exact duplicate centers: the lowest index of each triple wins
        assert (index % 3 == 0).all()


@pytest.mark.parametrize("scale", [0.0, 1e-13, 1e-10, 1e-7, 1e-4])
def test_exact_on_float64_near_ties(scale):
    # ActiveFT's precision="float64": near-ties far below float32's resolution.
    generator = torch.Generator().manual_seed(1)
    points = unit(gaussian_mixture(600, 32, 6, seed=3)[0]).double()
    noise = scale * torch.randn(60, 32, generator=generator, dtype=torch.float64)
    centers = points[:20].repeat_interleave(3, dim=0) + noise
    centers /= centers.norm(dim=1, keepdim=True)
    index = assert_exact(points, centers)
    if scale == 0.0:
        assert (index % 3 == 0).all()
    elif scale == 1e-10:  # ties for float32, decided in float64
        assert not (index % 3 == 0).all()


def test_exact_with_duplicate_points_and_centers_on_points():
    generator = torch.Generator().manual_seed(2)
    points = unit(torch.rand(3000, 64, generator=generator))  # one narrow cone: small gaps
    points[1000:1500] = points[:500]  # duplicate samples
    centers = torch.cat([points[:60], points[:60], points[2000:2100]])  # duplicate centers on samples
    assert_exact(points, centers)


def test_exact_on_bf16_ties():
    # Centers that round to the same bfloat16 vector but differ in float32: every row's screen
    # is a tie and only the re-score can decide.
    generator = torch.Generator().manual_seed(4)
    points = unit(torch.randn(1500, 40, generator=generator))
    base = points[:25].to(torch.bfloat16).float()
    step = torch.full_like(base, 2.0**-12) * torch.sign(torch.randn(base.shape, generator=generator))
    centers = unit(torch.cat([base, base + step, base - step]))
    assert_exact(points, centers)


@pytest.mark.parametrize("chunk", [None, 7, 100, 999])
def test_block_edges_small_pools_and_row_subsets(chunk):
    generator = torch.Generator().manual_seed(5)
    for n in (1, 5, 63, 64, 65, 1001):
        points = unit(torch.randn(n, 24, generator=generator))
        centers = unit(torch.randn(9, 24, generator=generator))
        assert_exact(points, centers, chunk)
        assert_exact(points, centers, chunk, rows=torch.arange(0, n, 2))


@pytest.mark.parametrize("scorer", SCORERS)
@pytest.mark.parametrize("depth", [1, 16, 40])
def test_listed_centers_bound_their_true_similarity_and_the_rest_bounds_the_others(scorer, depth):
    points = unit(gaussian_mixture(1200, 48, 10, seed=6)[0])
    centers = unit(points[:30] + 0.05)
    rows = torch.arange(3, 1200, 5)
    scores = scorer(points)(centers, rows, depth)
    truth = points[rows].double() @ centers.double().T
    listed = min(depth, 30)
    assert scores.candidates.shape == (len(rows), listed)
    listed_truth = truth.gather(1, scores.candidates)
    assert (scores.upper >= listed_truth).all()
    assert (scores.upper - listed_truth).max() < 0.05  # bounds, not useless ones
    others = truth.scatter(1, scores.candidates, -math.inf).max(dim=1).values
    assert (scores.rest >= others).all()
    if depth >= 30:
        assert torch.isinf(scores.rest).all()
    if scores.codes is not None:  # each center not listed: a bound of its own, below the one on the rest
        coded = scores.rest[:, None] - scores.codes.double() * scores.scale[:, None]
        not_listed = truth.scatter(1, scores.candidates, math.nan).isfinite()
        assert (coded[not_listed] >= truth[not_listed]).all()
        if depth < 30:
            assert float((coded - truth)[not_listed].median()) < float((scores.rest[:, None] - truth)[not_listed].median())
    assert torch.equal(scores.index, exact_nearest(points[rows], centers))


def test_screen_rescues_centers_that_the_bf16_screen_ranks_second():
    # Adversarial rows: each point leans on the bfloat16 rounding residual r of one center so that
    # the screen ranks the two centers the wrong way round by up to about the proven bound, while
    # the exact similarities rank them right. With B = 2, (c₁ − ν) = −(c₂ − ν), opposite residuals.
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
        truth = exact_nearest(rows, c)
        shifted = (c.double() - c.double().mean(dim=0)).to(torch.bfloat16)
        screen_rank = (rows.to(torch.bfloat16) @ shifted.T).float().argmax(dim=1)
        flipped += int((screen_rank != truth).sum())
        assert torch.equal(ScreenScorer(rows)(c).index, truth)
    assert flipped >= 50  # the rows really do defeat a screen without the bound


# --- every term of the screen's error bound is needed --------------------------------------------
# A bound must hold for every bfloat16 GEMM that accumulates exact products in float32 and rounds
# once: ``sequential_kernel`` is one such kernel (left to right). Each case below makes exactly one
# error source large; the library's bound (``screen_terms`` + ``screen_error_of`` + β|o|) must
# cover it, and the same bound without that term must not. Deleting a term from the library fails
# the case that needs it.

def sequential_kernel(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """bfloat16 inputs, exact products, float32 sums from left to right, one rounding to bfloat16."""
    a, b = left.float().numpy(), right.float().numpy()
    out = np.zeros((a.shape[0], b.shape[0]), dtype=np.float32)
    for k in range(a.shape[1]):
        out = (out + (a[:, k : k + 1] * b[None, :, k]).astype(np.float32)).astype(np.float32)
    return torch.from_numpy(out).to(torch.bfloat16)


def _case(points, shifted):
    """Points and centers whose mean is exactly zero (``ν = 0``), so ``c − ν`` is ``shifted``."""
    shifted = torch.tensor(shifted, dtype=torch.float32)
    return torch.tensor(points, dtype=torch.float32), torch.cat([shifted, -shifted])


BOUND_CASES = {
    # centers off the bfloat16 grid, the points orthogonal to the rounded centers: ⟨f, r⟩ alone
    "residual": _case([[1.0, 1.0]], [[1.0 + 2.0**-10, -1.0 + 2.0**-10]]),
    # points off the grid, the centers on it: ⟨f − f̂, c − ν⟩ alone
    "point_rounding": _case([[1.0 + 2.0**-10, 1.0 - 2.0**-10]], [[1.0, -1.0]]),
    # everything on the grid, a small product lost between two that cancel: the float32 sums
    "gamma": _case([[1.0, 2.0**-15, 1.0]], [[1.0, 2.0**-15, -1.0]]),
    # one exact product that bfloat16 cannot hold: the output rounding
    "beta": _case([[1.0 + 2.0**-7, 0.0]], [[1.0 + 2.0**-7, 0.0]]),
}


def _bound(points, centers, without=None):
    scorer = ScreenScorer(points)
    terms = screen_terms(centers, points.shape[1])
    rounding_norm = scorer.rounding_norm
    if without in ("residual", "gamma"):
        terms[without] = 0.0
    if without == "point_rounding":
        rounding_norm = torch.zeros_like(rounding_norm)
    output = sequential_kernel(points.to(torch.bfloat16), terms["rounded"]).double()
    beta = 0.0 if without == "beta" else terms["beta"]
    bound = screen_error_of(scorer.rounded_norm, rounding_norm, terms)[:, None] + beta * output.abs()
    exact = torch.tensor([[math.fsum((p.double() * (c.double() - terms["mean"])).tolist()) for c in centers]
                          for p in points], dtype=torch.float64)
    return (output - exact).abs(), bound


@pytest.mark.parametrize("term", list(BOUND_CASES))
def test_every_term_of_the_screen_bound_is_needed(term):
    points, centers = BOUND_CASES[term]
    error, bound = _bound(points, centers)
    assert (error <= bound).all()
    error, without = _bound(points, centers, without=term)
    assert (error > without).any(), f"the case for {term} does not need it"
    # the real GEMM of this machine stays within the full bound on these inputs too
    terms = screen_terms(centers, points.shape[1])
    real = (points.to(torch.bfloat16) @ terms["rounded"].T).double()
    scorer = ScreenScorer(points)
    exact = points.double() @ (centers.double() - terms["mean"]).T
    full = screen_error_of(scorer.rounded_norm, scorer.rounding_norm, terms)[:, None] + terms["beta"] * real.abs()
    assert ((real - exact).abs() <= full).all()


def test_the_gemm_probe_passes_here_and_catches_a_planted_fault():
    assert screen.bf16_accumulates_in_fp32(64, 1280, 500)
    assert screen.random_product_within_bound(300, 1280, 200)

    def bf16_partial_sums(left, right):  # accumulates in bfloat16 every 128 terms: not allowed
        parts = [left[:, k : k + 128].float() @ right[:, k : k + 128].float().T for k in range(0, left.shape[1], 128)]
        total = torch.zeros_like(parts[0]).to(torch.bfloat16)
        for part in parts:
            total = (total.float() + part).to(torch.bfloat16)
        return total

    assert not screen.random_product_within_bound(300, 1280, 200, product=bf16_partial_sums)


def test_falls_back_to_the_gemm_when_the_probe_fails(monkeypatch):
    monkeypatch.setattr(screen, "bf16_accumulates_in_fp32", lambda *shape: False)
    points = unit(gaussian_mixture(500, 16, 4, seed=9)[0])
    centers = points[:20]
    assert torch.equal(ScreenScorer(points)(centers).index, GemmScorer(points)(centers).index)


def test_fastest_scorer_names_a_scorer_and_is_measured_once():
    first = fastest_scorer(torch.float32, 64, 30)
    assert first in ("gemm", "bfloat16-screen")
    assert fastest_scorer(torch.float32, 64, 30) == first
    assert (torch.float32, 64, 30, torch.get_num_threads()) in screen._FASTEST


