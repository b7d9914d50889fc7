"""ProbCover against a dense oracle: the whole δ-ball graph, the greedy cover, the purity radius, the cache."""

import numpy as np
import pytest

from active_finetuning.errors import InputError
from active_finetuning.selection import select
from active_finetuning.selection.probcover import ball_graph, purity_radius
from tests.conftest import gaussian_mixture, unit_mixture
from tests.oracles.typiclust_probcover_dense import (
    dense_probcover,
    dense_pure_fraction,
    pairwise_distance,
)


def test_probcover_greedy_cover_equals_the_dense_oracle():
    points, _ = unit_mixture(180, 6, 4, spread=0.5, seed=1)
    delta = 0.45
    selection = select(points.numpy(), 15, "probcover", seed=0, delta=delta)
    oracle = dense_probcover(points.numpy(), 15, delta)
    assert selection.indices[: len(oracle)].tolist() == oracle
    assert selection.metadata["info"]["delta"] == delta


def test_probcover_uses_whole_balls_where_a_neighbour_cut_would_truncate_them():
    # Balls of hundreds of points: a 100-nearest-neighbour graph would cut most of them.
    points, _ = unit_mixture(1500, 5, 3, spread=0.3, seed=4)
    delta = 0.6
    start, targets = ball_graph(points, delta, max_edges=10**8)
    dense = pairwise_distance(points.numpy()) < delta
    sizes = np.diff(start)
    assert (sizes > 100).mean() > 0.5
    for row in range(0, 1500, 7):
        assert targets[start[row] : start[row + 1]].tolist() == np.flatnonzero(dense[row]).tolist()
    selection = select(points.numpy(), 12, "probcover", seed=0, delta=delta)
    oracle = dense_probcover(points.numpy(), 12, delta)
    assert len(oracle) >= 3 and selection.indices[: len(oracle)].tolist() == oracle
    assert selection.metadata["info"]["mean_ball_size"] == pytest.approx(dense.sum() / 1500)


def test_probcover_refuses_a_graph_above_max_edges():
    points, _ = unit_mixture(300, 5, 3, spread=0.3, seed=4)
    with pytest.raises(InputError, match="max_edges"):
        select(points.numpy(), 5, "probcover", seed=0, delta=1.5, max_edges=1000)


def test_probcover_with_labeled_samples_equals_the_dense_oracle():
    points, _ = unit_mixture(150, 6, 4, spread=0.5, seed=2)
    labeled = [3, 40, 77]
    selection = select(points.numpy(), 10, "probcover", seed=0, delta=0.5, labeled=[str(i) for i in labeled])
    oracle = dense_probcover(points.numpy(), 10, 0.5, labeled=labeled)
    assert selection.indices[: len(oracle)].tolist() == oracle


def test_probcover_fills_with_random_picks_once_everything_is_covered():
    points, _ = unit_mixture(100, 4, 2, spread=0.1, seed=3)
    selection = select(points.numpy(), 30, "probcover", seed=0, delta=1.9)
    assert selection.metadata["info"]["covered_fraction"] == 1.0
    assert len(set(selection.indices.tolist())) == 30
    assert (selection.score[1:] == 0).all() and selection.score[0] > 0


def test_purity_radius_is_the_largest_delta_with_enough_pure_balls():
    points, _ = unit_mixture(240, 5, 4, spread=0.6, seed=5)
    pseudo = (points[:, 0] > 0).long()  # two half-spheres: balls that straddle the equator are impure
    sample = np.arange(240)
    delta = purity_radius(points, pseudo, sample, 0.9)
    unit = points.numpy()
    assert dense_pure_fraction(unit, pseudo.numpy(), delta) >= 0.9
    assert dense_pure_fraction(unit, pseudo.numpy(), delta * 1.02) < 0.9


def test_probcover_estimates_delta_and_graph_cache_is_reused(tmp_path):
    features, labels = gaussian_mixture(800, 16, 8, spread=0.2, seed=6)
    cache = tmp_path / "graphs"
    first = select(features, 16, "probcover", seed=0, purity_clusters=8, graph_cache=str(cache))
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].name.startswith("balls-")
    second = select(features, 16, "probcover", seed=0, purity_clusters=8, graph_cache=str(cache))
    assert first.indices.tolist() == second.indices.tolist()
    info = first.metadata["info"]
    assert 0 < info["delta"] < 2 and 0 < info["covered_fraction"] <= 1
    assert len(np.unique(labels[first.indices])) == 8
