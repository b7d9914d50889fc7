"""MaxHerding: lazy greedy on blocks equals the authors' dense greedy loop pick for pick."""

import numpy as np
import pytest

from active_finetuning.selection import select
from tests.conftest import gaussian_mixture, unit_mixture
from tests.oracles.maxherding_dense import dense_maxherding


@pytest.mark.parametrize("n, clusters, budget, bandwidth", [(300, 5, 20, 1.0), (500, 8, 40, 0.5), (257, 3, 10, 2.0)])
def test_lazy_greedy_equals_the_dense_loop(n, clusters, budget, bandwidth):
    features, _ = gaussian_mixture(n, 12, clusters, spread=0.6, seed=n)
    unit, _ = unit_mixture(n, 12, clusters, spread=0.6, seed=n)
    picks = select(features, budget, "maxherding", seed=0, bandwidth=bandwidth)
    assert picks.indices.tolist() == dense_maxherding(unit.numpy(), budget, bandwidth=bandwidth)
    assert np.all(np.diff(picks.score) <= 1e-12)  # gains only shrink (submodular)


def test_with_labeled_samples_equals_the_dense_loop():
    features, _ = gaussian_mixture(400, 10, 6, spread=0.5, seed=7)
    unit, _ = unit_mixture(400, 10, 6, spread=0.5, seed=7)
    labeled_rows = [3, 50, 51, 200]
    ids = [f"{i}" for i in range(400)]
    from active_finetuning.data.artifacts import FeatureTable

    table = FeatureTable(np.asarray(ids, dtype=object), features)
    picks = select(table, 25, "maxherding", seed=0, labeled=[ids[r] for r in labeled_rows])
    assert picks.indices.tolist() == dense_maxherding(unit.numpy(), 25, labeled=labeled_rows)
    assert not set(picks.indices.tolist()) & set(labeled_rows)


def test_coverage_grows_and_every_cluster_is_reached():
    features, labels = gaussian_mixture(600, 16, 6, spread=0.3, seed=1)
    picks = select(features, 12, "maxherding", seed=0)
    assert set(labels[picks.indices]) == set(range(6))
    assert 0 < picks.metadata["info"]["coverage"] <= 1
