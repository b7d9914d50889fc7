"""The compiled products of the repulsion: within a dot product's error bound, and the same bits for an
element wherever it is computed (any thread count, row order, subset of rows, place in a tile)."""

import pytest
import torch

from active_finetuning.selection.exact import dot_error
from active_finetuning.selection.products import fixed_gram, fixed_products
from tests.conftest import with_threads


def _operands(rows, columns, inner, dtype, seed):
    generator = torch.Generator().manual_seed(seed)
    left = torch.randn(rows, inner, generator=generator, dtype=torch.float64).to(dtype)
    right = torch.randn(columns, inner, generator=generator, dtype=torch.float64).to(dtype)
    right[0] = left[0]  # a repeated row
    return left, right


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("rows, columns, inner", [(1, 1, 1), (3, 5, 7), (9, 4, 500), (37, 23, 1280)])
def test_products_are_within_the_dot_product_bound_of_the_exact_value(dtype, rows, columns, inner):
    left, right = _operands(rows, columns, inner, dtype, seed=rows)
    got = fixed_products(left, right)
    assert got.shape == (rows, columns) and got.dtype == dtype
    # Float32 operands multiply exactly in float64, and float64's own rounding is far below the bound.
    exact = left.double() @ right.double().T
    norms = torch.linalg.vector_norm(left.double(), dim=1)[:, None] * torch.linalg.vector_norm(right.double(), dim=1)
    slack = dot_error(inner, torch.float64) * norms if dtype == torch.float64 else 0
    assert bool(((got.double() - exact).abs() <= dot_error(inner, dtype) * norms * 1.01 + 2 * slack).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("threads", [1, 2])
def test_an_element_has_the_same_bits_wherever_it_is_computed(dtype, threads):
    left, right = _operands(45, 31, 300, dtype, seed=3)
    got = with_threads(threads, lambda: fixed_products(left, right))
    reference = fixed_products(left, right)  # the session's thread count
    assert torch.equal(got, reference)
    left_order, right_order = torch.randperm(45), torch.randperm(31)
    assert torch.equal(fixed_products(left[left_order], right[right_order]), reference[left_order][:, right_order])
    assert torch.equal(fixed_products(left[7:12], right[3:4]), reference[7:12, 3:4])  # other places in a tile
    for row in (0, 13, 44):
        assert torch.equal(fixed_products(left[row : row + 1], right), reference[row : row + 1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("rows", [1, 3, 4, 5, 9, 101])
def test_a_gram_matrix_from_its_upper_tiles_is_the_same_bits_as_the_whole_product(dtype, rows):
    values = _operands(rows, 1, 96, dtype, seed=rows)[0]
    values[-1] = values[0]
    gram = fixed_gram(values)
    assert torch.equal(gram, fixed_products(values, values))
    assert torch.equal(gram, gram.T)


def test_mixed_or_integer_operands_are_refused():
    with pytest.raises(TypeError, match="float32 or two float64"):
        fixed_products(torch.ones(2, 3), torch.ones(2, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="float32 or float64"):
        fixed_gram(torch.ones(2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="inner sizes differ"):
        fixed_products(torch.ones(2, 3), torch.ones(2, 4))
