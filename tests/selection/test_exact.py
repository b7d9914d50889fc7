"""Exact products and sums: sampled dot products, correctly rounded float32 products with any thread
count, float64 products independent of the summation order, exact matmul precision."""

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from active_finetuning.selection.exact import Sliced, exact_matmul, sampled_products, sliced_products
from active_finetuning.selection.similarity import (
    nearest_by_similarity,
)
from tests.conftest import with_threads
from tests.selection.test_screen import unit


@pytest.mark.parametrize("threads", [1, 2])
def test_sampled_products_do_not_depend_on_the_other_pairs_asked(threads):
    # The loss uses these values whichever assignment path asked for them: same bits required.
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        generator = torch.Generator().manual_seed(8)
        points = unit(torch.randn(5000, 640, generator=generator))
        centers = unit(torch.randn(300, 640, generator=generator))
        index = torch.randint(0, 300, (5000,), generator=generator)
        everything = sampled_products(points, centers, torch.arange(5000), index)
        rows = torch.sort(torch.randperm(5000, generator=generator)[:1234]).values
        extra = torch.randint(0, 300, (1234,), generator=generator)
        pair_rows, order = torch.sort(torch.cat([rows, rows]), stable=True)
        pair_cols = torch.cat([index[rows], extra])[order]
        several = sampled_products(points, centers, pair_rows, pair_cols)
        first = several[torch.argsort(order)[:1234]]
        gathered = sampled_products(points[rows], centers, torch.arange(1234), index[rows])
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(everything[rows], first) and torch.equal(everything[rows], gathered)


def _exact_dot(x, y) -> Fraction:
    """The exact dot product of two float sequences, in rational arithmetic."""
    return sum(Fraction(float(a)) * Fraction(float(b)) for a, b in zip(x, y))


def _nearest_float32(value) -> float:
    """Independent correct rounding of an exact Fraction to float32 (ties to even)."""
    guess = np.float32(float(value))
    options = [np.nextafter(guess, np.float32(-np.inf)), guess, np.nextafter(guess, np.float32(np.inf))]
    distance = [abs(Fraction(float(o)) - value) for o in options]
    best = min(distance)
    ties = [o for o, d in zip(options, distance) if d == best]
    return float(ties[0] if len(ties) == 1 else next(o for o in ties if int(o.view(np.int32)) % 2 == 0))


@pytest.mark.parametrize("threads", [1, 2])
def test_rounded_products_are_correctly_rounded_with_any_thread_count(threads):
    from active_finetuning.selection.exact import rounded_products

    generator = torch.Generator().manual_seed(6)
    left = torch.randn(64, 1280, generator=generator)  # a shape whose float32 GEMM changes with threads here
    right = torch.randn(64, 1280, generator=generator) * torch.logspace(-30, 0, 1280)  # tiny terms too
    got = with_threads(threads, lambda: rounded_products(left, right))
    a, b = left.double().numpy(), right.double().numpy()
    for i, j in [(i, j) for i in range(0, 64, 7) for j in range(0, 64, 5)]:
        assert float(got[i, j]) == _nearest_float32(_exact_dot(a[i], b[j]))


def _awkward_sums(seed):
    """Rows of exact float64 products of float32 values that are hard to round: sums at or next to
    a float32 midpoint with tails far below float64's resolution, cancellations down to nothing
    or to a tail, and terms of every scale."""
    generator = np.random.default_rng(seed)
    rows = []
    for k in (1, 2, 3, 17, 500, 1280):
        for kind in range(6):
            a = generator.standard_normal(k).astype(np.float32).astype(np.float64)
            b = generator.standard_normal(k).astype(np.float32).astype(np.float64)
            terms = a * b * 2.0 ** generator.integers(-40, 40, k)
            if kind == 1 and k > 1:  # a float32 midpoint, decided by tails of 2⁻⁸⁰
                terms[0], terms[1:] = 1.0 + 2.0**-24, generator.choice([-1, 1], k - 1) * 2.0**-80
            if kind == 2 and k > 1:  # cancels to exactly nothing
                terms[-1] = 0.0
                terms[-1] = -math.fsum(terms.tolist()) if abs(math.fsum(terms.tolist())) < 2.0**60 else 0.0
            if kind == 3 and k > 2:  # large terms that cancel, leaving a tail at a midpoint
                terms[0], terms[1], terms[2:] = 2.0**40, -(2.0**40), terms[2:] * 2.0**-100
                terms[2] = 1.5 * 2.0**-149
            if kind == 4:  # every term of one sign
                terms = np.abs(terms)
            rows.append(terms)
    # Large terms that cancel, then a remainder's rounding that a float64 sum in row order gets wrong
    # (2⁻¹⁰ − 2⁻⁶⁴ ties to 2⁻¹⁰) by far more than the total's own rounding: at a float32 midpoint.
    rows.append(np.array([2.0**40, -(2.0**40), 2.0**-10, -(2.0**-64), -(2.0**-10),
                          2.0**-30 * (1 + 2.0**-24), 2.0**-66]))
    return rows


def test_rounded_sums_are_the_float32_nearest_to_the_exact_sum():
    # The sums that settle the products a float64 GEMM leaves undecided; an independent rational oracle.
    from active_finetuning.selection.exact import _rounded_sums

    for terms in _awkward_sums(11):
        for batch in (terms[None, :], np.stack([terms, -terms, terms[::-1]])):
            got = _rounded_sums(batch)
            for row, value in zip(batch, got):
                assert float(value) == _nearest_float32(sum(Fraction(float(t)) for t in row)), row[:4]


def test_products_near_rounding_boundaries_are_correctly_rounded():
    # Products a float64 GEMM leaves undecided (the settling path).
    from active_finetuning.selection.exact import rounded_products

    # ⟨a, b⟩ = 1 + 2⁻²⁴ − 2⁻⁸⁰ (just below a float32 midpoint: rounds down), ⟨a, a⟩ = 1 + 2⁻²⁴ + 2⁻⁸⁰ (up).
    values = torch.tensor([[1.0, 2.0**-12, 2.0**-40], [1.0, 2.0**-12, -(2.0**-40)], [1.0, 0.0, 3.0]])
    got = rounded_products(values, values)
    assert float(got[0, 1]) == 1.0 and float(got[0, 0]) == 1 + 2.0**-23
    for i in range(3):
        for j in range(3):
            exact = sum(Fraction(float(a)) * Fraction(float(b)) for a, b in zip(values[i], values[j]))
            assert float(got[i, j]) == _nearest_float32(exact), (i, j)


def _float64_operands(rows, inner, seed):
    generator = torch.Generator().manual_seed(seed)
    values = torch.randn(rows, inner, dtype=torch.float64, generator=generator)
    values *= torch.logspace(-30, 0, inner, dtype=torch.float64)[torch.randperm(inner, generator=generator)]
    values[0] = 0.0  # a zero row
    values[1] *= 1e-100  # rows of any scale (their products within float64's range)
    values[2] *= 1e100
    return values


@pytest.mark.parametrize("inner", [1, 7, 500, 1280, 5000])
@pytest.mark.parametrize("kind", ["mixed", "positive"])
def test_float64_products_are_the_same_bits_in_any_summation_order(inner, kind):
    # A BLAS sums in an order of its choosing (it changes with the thread count on some builds).
    # "positive": every entry near its row's largest, so slice products sum to near 2⁵³ (one more
    # bit per slice and the sums round).
    if kind == "mixed":
        left, right = _float64_operands(40, inner, 1), _float64_operands(30, inner, 2)
    else:
        generator = torch.Generator().manual_seed(1)
        left, right = (0.5 + torch.rand(rows, inner, dtype=torch.float64, generator=generator) / 2 for rows in (40, 30))
    order = torch.randperm(inner, generator=torch.Generator().manual_seed(3))
    got = sliced_products(left, right)
    assert torch.equal(got, sliced_products(left[:, order], right[:, order]))
    assert torch.equal(got[:17], sliced_products(left[:17], right))  # blocks of rows: the same bits
    assert torch.equal(sliced_products(left, left), sliced_products(left, left.clone()))  # the Gram shortcut
    # A right operand sliced once (``Sliced``) gives the same bits, for a Gram matrix and its row chunks too.
    assert torch.equal(sliced_products(left[:17], Sliced(right)), got[:17])
    gram = sliced_products(left, left)
    assert torch.equal(sliced_products(left, Sliced(left)), gram)
    assert torch.equal(sliced_products(left[5:17], Sliced(left)), gram[5:17])
    if inner >= 500:  # the plain GEMM, for contrast, does depend on the order
        assert not torch.equal(left @ right.T, left[:, order] @ right[:, order].T)


@pytest.mark.parametrize("inner", [48, 1280])
def test_float64_products_are_within_their_bound_of_the_exact_value(inner):
    left, right = _float64_operands(12, inner, 4), _float64_operands(9, inner, 5)
    got = sliced_products(left, right)
    for i in range(3, 12):  # rows 0–2: zero and extreme scales (checked for order above)
        for j in range(3, 9):
            exact = _exact_dot(left[i].tolist(), right[j].tolist())
            scale = float(left[i].abs().max() * right[j].abs().max())
            bound = 2.0**-50 * abs(float(exact)) + inner * 2.0**-60 * scale
            assert abs(Fraction(float(got[i, j])) - exact) <= Fraction(bound)
    assert torch.equal(sliced_products(left[:1], right), torch.zeros(1, 9, dtype=torch.float64))


@pytest.mark.parametrize("tail, expected", [(2.0**-80, 1 + 2.0**-23), (-(2.0**-80), 1.0), (0.0, 1.0)])
def test_exact_sums_round_once_at_a_float32_midpoint(tail, expected):
    # 1 + 2⁻²⁴ is halfway between two float32 values; a tail below float64's resolution decides.
    from active_finetuning.selection.exact import _correctly_rounded_float32

    assert _correctly_rounded_float32(np.array([1.0 + 2.0**-24, tail])) == expected


def test_exact_matmul_forces_full_float32_and_restores_the_user_setting():
    generator = torch.Generator().manual_seed(3)
    points, centers = torch.randn(300, 256, generator=generator), torch.randn(40, 256, generator=generator)
    expected = (points.double() @ centers.double().T)
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")  # what a user may set for their own model
    try:
        with exact_matmul():
            assert torch.backends.mkldnn.matmul.fp32_precision == "ieee"
            assert torch.backends.cuda.matmul.fp32_precision == "ieee"
            product = points @ centers.T
        assert torch.get_float32_matmul_precision() == "medium"
        assert torch.backends.mkldnn.matmul.fp32_precision == "bf16"
        index, _ = nearest_by_similarity(points, centers)
    finally:
        torch.set_float32_matmul_precision(previous)
    assert (product.double() - expected).abs().max() < 1e-4  # float32, not bfloat16 (~1e-1 here)
    assert torch.equal(index, expected.argmax(dim=1))


# torch's float32 precision settings, (backend, operation), from the process-wide one to the matmuls'.
PRECISION_KEYS = (("generic", "all"), ("mkldnn", "all"), ("mkldnn", "matmul"), ("cuda", "all"), ("cuda", "matmul"))


def _precisions():
    return [torch._C._get_fp32_precision_getter(backend, op) for backend, op in PRECISION_KEYS]


@pytest.mark.parametrize("setting", ["oneDNN matmul", "every backend"])
def test_exact_matmul_forces_and_restores_the_per_backend_settings(setting):
    # torch's newer settings: once a user sets one, torch.get_float32_matmul_precision() raises, so reading it
    # (as this code once did) made every selection fail; and the setting must still be forced and restored.
    fresh = _precisions()
    try:
        if setting == "oneDNN matmul":
            torch.backends.mkldnn.matmul.fp32_precision = "bf16"
        else:
            torch.backends.fp32_precision = "bf16"
        before = _precisions()
        with exact_matmul():
            assert torch.backends.mkldnn.matmul.fp32_precision == "ieee"
            assert torch.backends.cuda.matmul.fp32_precision == "ieee"
        assert _precisions() == before
        if setting == "every backend":  # oneDNN's matmul still follows the process-wide setting, as before
            torch.backends.fp32_precision = "ieee"
            assert torch.backends.mkldnn.matmul.fp32_precision == "ieee"
    finally:
        for (backend, op), value in zip(PRECISION_KEYS, fresh):
            torch._C._set_fp32_precision_setter(backend, op, value)
