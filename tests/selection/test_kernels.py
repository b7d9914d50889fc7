"""The compiled row passes: the same values on any thread count, within their error bounds."""

import numpy as np
import pytest
import torch

from active_finetuning.selection.bounds import own_similarity
from active_finetuning.selection.exact import dot_error
from active_finetuning.selection.kernels import RowPass, _dots, _guided, rounded_within, top_rows
from tests.conftest import with_threads
from tests.selection.test_activeft import unit


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_own_similarities_are_within_their_bound_and_the_same_on_any_threads(dtype):
    generator = torch.Generator().manual_seed(1)
    points = unit(torch.randn(9000, 1283, generator=generator)).to(dtype)  # a length that is no multiple of a vector
    centers = unit(torch.randn(70, 1283, generator=generator)).to(dtype)
    rows = torch.sort(torch.randperm(9000, generator=generator)[:7000]).values
    index = torch.randint(0, 70, (7000,), generator=generator)
    one, two = (with_threads(threads, lambda: own_similarity(points, centers, rows, index)) for threads in (1, 2))
    assert one.dtype == dtype and torch.equal(one, two)
    exact = (points[rows].double() * centers[index].double()).sum(dim=1)
    assert ((one.double() - exact).abs() <= dot_error(1283, dtype) * 1.0001).all()
    # A row's value does not depend on which other rows are asked.
    assert torch.equal(own_similarity(points, centers, rows[::7], index[::7]), one[::7])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("count", [0, 1, 3, 4, 7, 9])
def test_tightening_dots_four_at_a_time_are_within_their_bound(dtype, count):
    # Groups of four and a remainder; centers chosen out of order and repeated; only ``count`` values written.
    rng = np.random.default_rng(count)
    point = rng.standard_normal(1283).astype(dtype)
    centers = rng.standard_normal((12, 1283)).astype(dtype)
    chosen = rng.integers(0, 12, 10)
    out = np.full(10, np.nan, dtype)
    _dots(point, centers, chosen, count, out)
    exact = centers[chosen[:count]].astype(np.float64) @ point.astype(np.float64)
    bound = dot_error(1283, torch.from_numpy(point).dtype) * np.linalg.norm(point) * np.linalg.norm(
        centers[chosen[:count]], axis=1)
    assert (np.abs(out[:count] - exact) <= bound).all()
    assert np.isnan(out[count:]).all()


def test_own_pass_visits_only_the_rows_asked():
    points = unit(torch.randn(3000, 16, generator=torch.Generator().manual_seed(2)))
    centers = points[:5].clone()
    values = RowPass(points).own(centers, torch.tensor([4, 2999]), torch.tensor([4, 0]))
    assert values.shape == (2,)
    assert values[0] == pytest.approx(1.0, abs=1e-6)
    assert values[1] == pytest.approx(float(points[2999] @ points[0]), abs=1e-6)


def _fork_inputs():
    """Inputs made without torch's thread pool (libgomp may not be used again in a forked child)."""
    values = np.random.default_rng(3).standard_normal((6000, 32)).astype(np.float32)
    points = torch.from_numpy(values / np.linalg.norm(values, axis=1, keepdims=True))
    return points, points[:4], torch.from_numpy(np.arange(6000) % 4)


def _own_in_child(queue):
    points, centers, index = _fork_inputs()
    queue.put(own_similarity(points, centers, None, index).numpy().tobytes())


def test_a_forked_child_starts_its_own_worker_threads():
    # The pass keeps its worker threads between calls; a forked child has none of them running and must
    # not wait on them (it would hang).
    import multiprocessing

    points, centers, index = _fork_inputs()
    expected = with_threads(2, lambda: own_similarity(points, centers, None, index)).numpy().tobytes()
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_own_in_child, args=(queue,))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert queue.get(timeout=5) == expected


def _top_oracle(values: np.ndarray, depth: int):
    """Per row: the first column of the largest value, the two largest values, the ``depth`` largest
    values sorted and the ``depth + 1``-th (``-inf`` when every column is listed), from a full sort."""
    ordered = -np.sort(-values.astype(np.float64), axis=1)
    rest = ordered[:, depth] if values.shape[1] > depth else np.full(len(values), -np.inf)
    second = ordered[:, 1] if values.shape[1] > 1 else np.full(len(values), -np.inf)
    return values.argmax(axis=1), ordered[:, 0], second, ordered[:, :depth], rest


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("columns", "depth"), [(500, 96), (500, 32), (33, 32), (20, 32), (7, 0), (1, 0), (2, 1)])
def test_top_rows_match_a_full_sort_ties_included(dtype, columns, depth):
    generator = torch.Generator().manual_seed(columns + depth)
    values = torch.randn(1500, columns, generator=generator, dtype=torch.float64)
    values[::3] = torch.round(values[::3] * 4) / 4  # many equal values, ties at every place of the top
    values[5] = 0.5  # a row of one value
    values = values.to(dtype)
    error = torch.rand(1500, generator=generator, dtype=torch.float64) * 1e-3
    one, two = (with_threads(threads, lambda: top_rows(values, depth, 10.0, error)) for threads in (1, 2))
    for a, b in zip(one, two):
        assert (a is None and b is None) or torch.equal(a, b)
    index, best, candidates, upper, rest, codes, scale = one
    first, largest, second, listed, beyond = _top_oracle(values.numpy(), depth)
    assert np.array_equal(index.numpy(), first)  # the lowest column among equal largest values
    assert np.array_equal(best.numpy(), np.stack([largest, second], axis=1))
    if not depth:
        assert candidates is None and upper is None and rest is None and codes is None
        return
    listed_values = np.take_along_axis(values.numpy().astype(np.float64), candidates.numpy(), axis=1)
    assert all(len(set(row)) == len(row) for row in candidates.tolist())
    assert np.array_equal(-np.sort(-listed_values, axis=1), listed[:, : candidates.shape[1]])
    assert np.array_equal(upper.numpy(), listed_values + error.numpy()[:, None])
    assert np.array_equal(rest.numpy(), beyond + error.numpy() if columns > depth else beyond)
    _assert_codes_bound_every_value_not_listed(values.numpy(), error.numpy(), candidates.numpy(), rest.numpy(),
                                               codes.numpy(), scale.numpy())


def _assert_codes_bound_every_value_not_listed(values, error, candidates, rest, codes, scale):
    """``LISTED`` exactly at the listed columns; elsewhere ``rest − code·scale`` is an upper bound on the
    value + error, and the largest code that is one (unless the range ends first)."""
    from active_finetuning.selection.kernels import LISTED

    listed = np.zeros(codes.shape, bool)
    np.put_along_axis(listed, candidates, True, axis=1)
    assert np.array_equal(codes == LISTED, listed)
    bound, truth = values.astype(np.float64) + error[:, None], rest[:, None] - codes * scale[:, None]
    assert (truth[~listed] >= bound[~listed]).all()
    one_more = rest[:, None] - (codes.astype(np.float64) + 1) * scale[:, None]
    assert ((one_more < bound + 1e-9) | (codes >= LISTED - 1))[~listed].all()
    assert (scale >= 0).all() and np.isfinite(scale).all()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 6.0, -6.0])
def test_top_rows_refuse_values_the_limit_does_not_bound(bad):
    values = torch.randn(40, 50, generator=torch.Generator().manual_seed(4))
    values[17, 3] = bad
    with pytest.raises(FloatingPointError, match="not finite or exceeds"):
        top_rows(values, 32, 5.0, torch.zeros(40, dtype=torch.float64))


@pytest.mark.parametrize(("count", "threads", "smallest"), [(50_000, 2, 1024), (3_700, 2, 256), (5_000, 4, 1024), (7, 2, 1)])
def test_guided_parts_cover_every_position_once_largest_first(count, threads, smallest):
    parts = _guided(count, threads, smallest)
    assert parts[0][0] == 0 and parts[-1][1] == count
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))  # contiguous, no overlap
    sizes = [stop - start for start, stop in parts]
    assert all(size >= smallest for size in sizes[:-1])
    assert all(a >= b for a, b in zip(sizes, sizes[1:-1]))  # largest first (the last takes what is left)
    assert sizes[0] == max(smallest, count // (2 * threads))


def test_rounded_within_matches_the_torch_expression_it_replaces():
    generator = torch.Generator().manual_seed(5)
    wide = torch.randn(300, 257, generator=generator, dtype=torch.float64)
    # Values a hair from a float32 rounding boundary: the midpoint between two neighbouring float32s.
    low = wide[::7].float().double()
    wide[::7] = (low + torch.nextafter(low.float(), torch.tensor(float("inf"))).double()) / 2 + 1e-17
    left = torch.rand(300, generator=generator, dtype=torch.float64) * 1e-12
    right = torch.rand(257, generator=generator, dtype=torch.float64)
    bound = torch.outer(left, right)
    out = wide.float()
    unsure = torch.sub(wide, bound).float().ne_(out).logical_or_(bound.add(wide).float().ne_(out))
    rows, cols = unsure.nonzero(as_tuple=True)
    assert len(rows) > 100  # the test reaches the undecided case
    for threads in (1, 2):
        got_out, got_rows, got_cols = with_threads(threads, lambda: rounded_within(wide, left, right))
        assert torch.equal(got_out, out) and torch.equal(got_rows, rows) and torch.equal(got_cols, cols)
