"""BiLAF's default number of cores (selection/core_count.py; evidence in benchmarks/RESULTS.md)."""

import numpy as np
import pytest

from active_finetuning.selection import list_selectors, select
from active_finetuning.selection.core_count import CORE_SHARE, default_num_cores
from tests.conftest import gaussian_mixture


@pytest.mark.parametrize("pool_size", [1, 7, 500, 10_000, 50_000, 1_281_167])
def test_cores_fit_the_budget_and_grow_with_it_up_to_the_pool_share(pool_size):
    previous = 0
    for budget in sorted({1, 2, 5, 50, 250, 500, 1000, 2500, 12_811, pool_size}):
        if budget > pool_size:
            continue
        k = default_num_cores(pool_size, budget)
        assert 1 <= k <= budget
        assert k >= previous  # never fewer cores for a larger budget
        previous = k
        if budget <= CORE_SHARE * pool_size:
            assert k == budget  # small budgets: all cores, BiLAF equals ActiveFT
        else:
            assert k == max(1, min(budget, int(np.ceil(CORE_SHARE * pool_size))))


def test_cifar_scale_values():
    # 50,000 samples: 0.5/1/2% budgets are all cores, 5% keeps 1,000 cores and 1,500 boundary picks
    assert [default_num_cores(50_000, b) for b in (250, 500, 1000, 2500)] == [250, 500, 1000, 1000]
    # the 77-class, 10,000-sample case of the issue: never fewer cores than classes from 1% up
    assert all(default_num_cores(10_000, b) >= 77 for b in (100, 200, 500))


@pytest.mark.skipif("bilaf" not in list_selectors(), reason="BiLAF is not registered")
def test_bilaf_default_below_the_share_selects_exactly_the_activeft_set():
    features, _ = gaussian_mixture(500, 8, 5, seed=2)
    bilaf = select(features, 10, "bilaf", seed=1, core_params="iterations=15")
    activeft = select(features, 10, "activeft", seed=1, iterations=15)
    assert bilaf.metadata["info"]["num_cores"] == 10
    assert sorted(bilaf.indices.tolist()) == sorted(activeft.indices.tolist())
