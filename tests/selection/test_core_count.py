"""BiLAF's number of cores: the paper's fixed share of the pool by default (selection/core_count.py)."""

import warnings

import pytest

from active_finetuning.errors import InputError
from active_finetuning.selection import select
from active_finetuning.selection.core_count import parse_num_cores, resolve_num_cores
from tests.conftest import gaussian_mixture


@pytest.mark.parametrize("pool, budget, expected", [
    (50_000, 500, 250),  # CIFAR at 1%: the paper's 0.5% of the pool, the same for every budget
    (50_000, 2500, 250),
    (1_281_167, 12_811, 6405),  # ImageNet at 1%: the paper's K
    (50_000, 250, 125),  # a budget at or below 0.5%: at most half of it goes to cores
    (300, 2, 1),
    (100, 1, 1),
])
def test_default_is_half_a_percent_of_the_pool_at_most_half_the_budget(pool, budget, expected):
    """The expected counts are the paper's own K (docs/methods.md §3.8: 250 cores of CIFAR100's
    50,000 at every budget, 6,405 of ImageNet's 1,281,167), written out, not recomputed."""
    assert resolve_num_cores(None, pool, budget) == expected


@pytest.mark.parametrize("value, pool, expected", [("0.1%", 50_000, 50), ("250", 50_000, 250), (7, 50_000, 7),
                                                   ("0.001%", 1000, 1)])
def test_counts_and_shares_of_the_pool(value, pool, expected):
    assert resolve_num_cores(parse_num_cores(value), pool, 5000) == expected


@pytest.mark.parametrize("value", [0, -3, "0%", "150%", "many", "1.5", True])
def test_bad_values_name_the_parameter(value):
    with pytest.raises(InputError, match="num_cores"):
        parse_num_cores(value)


def test_as_many_cores_as_the_budget_warns_that_bilaf_is_its_core_selector():
    with pytest.warns(UserWarning, match="core selector"):
        assert resolve_num_cores(40, 10_000, 40) == 40
    with pytest.raises(InputError, match="exceeds the budget"):
        resolve_num_cores(41, 10_000, 40)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resolve_num_cores(None, 10_000, 40)  # the default never degenerates


@pytest.mark.parametrize("budget", [10, 50])  # 2% and 10% of the pool
def test_bilaf_default_picks_boundaries_and_k_equal_to_b_is_the_activeft_set(budget):
    features, _ = gaussian_mixture(500, 8, 5, seed=2)
    bilaf = select(features, budget, "bilaf", seed=1, core_params="iterations=15")
    cores = resolve_num_cores(None, 500, budget)
    assert bilaf.metadata["info"]["num_cores"] == cores
    assert list(bilaf.role).count("core") == cores and list(bilaf.role).count("boundary") == budget - cores
    with pytest.warns(UserWarning):
        all_cores = select(features, budget, "bilaf", seed=1, num_cores=budget, core_params="iterations=15")
    activeft = select(features, budget, "activeft", seed=1, iterations=15)
    assert set(all_cores.role) == {"core"}
    assert sorted(all_cores.indices.tolist()) == sorted(activeft.indices.tolist())
