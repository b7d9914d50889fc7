"""BiLAF's default number of cores (selection/core_count.py; evidence in benchmarks/RESULTS.md)."""

import pytest

from active_finetuning.selection import list_selectors, select
from active_finetuning.selection.core_count import default_num_cores
from tests.conftest import gaussian_mixture


@pytest.mark.parametrize("budget", [1, 5, 250, 2500, 12_811])
def test_every_pick_is_a_core_by_default(budget):
    assert default_num_cores(budget) == budget


@pytest.mark.skipif("bilaf" not in list_selectors(), reason="BiLAF is not registered")
@pytest.mark.parametrize("budget", [10, 50])  # 2% and 10% of the pool
def test_bilaf_default_selects_exactly_the_activeft_set_and_num_cores_turns_boundaries_on(budget):
    features, _ = gaussian_mixture(500, 8, 5, seed=2)
    bilaf = select(features, budget, "bilaf", seed=1, core_params="iterations=15")
    activeft = select(features, budget, "activeft", seed=1, iterations=15)
    assert bilaf.metadata["info"]["num_cores"] == budget and set(bilaf.role) == {"core"}
    assert sorted(bilaf.indices.tolist()) == sorted(activeft.indices.tolist())
    paper = select(features, budget, "bilaf", seed=1, num_cores=5, core_params="iterations=15")
    assert paper.metadata["info"]["num_cores"] == 5
    assert list(paper.role).count("core") == 5 and list(paper.role).count("boundary") == budget - 5
