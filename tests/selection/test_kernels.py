"""The compiled row passes: the same values on any thread count, within their error bounds."""

import numpy as np
import pytest
import torch

from active_finetuning.selection.bounds import own_similarity
from active_finetuning.selection.exact import dot_error
from active_finetuning.selection.kernels import RowPass
from tests.selection.test_activeft import _with_threads, unit


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_own_similarities_are_within_their_bound_and_the_same_on_any_threads(dtype):
    generator = torch.Generator().manual_seed(1)
    points = unit(torch.randn(9000, 1283, generator=generator)).to(dtype)  # a length that is no multiple of a vector
    centers = unit(torch.randn(70, 1283, generator=generator)).to(dtype)
    rows = torch.sort(torch.randperm(9000, generator=generator)[:7000]).values
    index = torch.randint(0, 70, (7000,), generator=generator)
    one, two = (_with_threads(threads, lambda: own_similarity(points, centers, rows, index)) for threads in (1, 2))
    assert one.dtype == dtype and torch.equal(one, two)
    exact = (points[rows].double() * centers[index].double()).sum(dim=1)
    assert ((one.double() - exact).abs() <= dot_error(1283, dtype) * 1.0001).all()
    # A row's value does not depend on which other rows are asked.
    assert torch.equal(own_similarity(points, centers, rows[::7], index[::7]), one[::7])


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
    expected = _with_threads(2, lambda: own_similarity(points, centers, None, index)).numpy().tobytes()
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_own_in_child, args=(queue,))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert queue.get(timeout=5) == expected
