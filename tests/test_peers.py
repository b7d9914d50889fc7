"""TypiClust and ProbCover against dense oracles written from the papers, plus their building blocks."""

import numpy as np
import pytest
import torch

from active_finetuning.errors import InputError
from active_finetuning.selection import select
from active_finetuning.selection.api import unit_rows
from active_finetuning.selection.clustering import cluster_pool, kmeans, kmeans_plusplus, minibatch_kmeans
from active_finetuning.selection.neighbours import nearest_neighbours, nearest_other_group
from active_finetuning.selection.peers import ball_graph, purity_radius, typicality
from tests.conftest import gaussian_mixture
from tests.oracles.peers_dense import (dense_probcover, dense_pure_fraction, dense_typicality,
                                       pairwise_distance, typiclust_loop)


def _unit(n=300, dim=8, clusters=5, spread=0.4, seed=0):
    features, labels = gaussian_mixture(n, dim, clusters, spread=spread, seed=seed)
    return unit_rows(features), labels


def test_chunked_neighbours_equal_a_full_sort():
    points, _ = _unit(257)
    rows, similarity = nearest_neighbours(points, 7, chunk=50)
    dense = (points @ points.T).numpy()
    np.fill_diagonal(dense, -np.inf)
    expected = np.argsort(-dense, axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(rows.numpy(), expected)
    np.testing.assert_allclose(similarity.numpy(), np.take_along_axis(dense, expected, 1), rtol=1e-6)
    queries = points[:5]
    rows_q, _ = nearest_neighbours(points, 3, queries=queries, chunk=2)
    assert rows_q[:, 0].tolist() == [0, 1, 2, 3, 4]  # a query that is in the pool finds itself first


def test_nearest_other_group_matches_a_masked_dense_max():
    points, _ = _unit(200)
    groups = torch.from_numpy(np.random.default_rng(0).integers(0, 4, 200))
    rows = torch.arange(0, 200, 3)
    got = nearest_other_group(points, groups, rows, chunk=16).numpy()
    dense = (points @ points.T).numpy()
    mask = groups.numpy()[:, None] != groups.numpy()[None, :]
    expected = np.where(mask, dense, -np.inf).max(axis=1)[rows.numpy()]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def _textbook_d2_seeding(points: np.ndarray, k: int, seed: int) -> list:
    """k-means++ as Arthur & Vassilvitskii write it: squared differences in float64."""
    rng = np.random.default_rng(seed)
    chosen = [int(rng.integers(len(points)))]
    closest = ((points - points[chosen[0]]) ** 2).sum(axis=1)
    for _ in range(1, k):
        chosen.append(int(np.searchsorted(np.cumsum(closest), rng.random() * closest.sum(), side="right")))
        closest = np.minimum(closest, ((points - points[chosen[-1]]) ** 2).sum(axis=1))
    return chosen


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kmeans_plusplus_draws_the_textbook_d2_samples(seed):
    features, _ = gaussian_mixture(400, 12, 5, spread=0.6, seed=seed)  # not unit rows: norms differ
    points = torch.as_tensor(features, dtype=torch.float32)
    expected = _textbook_d2_seeding(points.double().numpy(), 25, seed)
    centers = kmeans_plusplus(points, 25, np.random.default_rng(seed))
    assert torch.equal(centers, points[expected])


def test_kmeans_plusplus_never_draws_a_center_twice_when_points_repeat():
    points = torch.eye(4).repeat(3, 1)  # 4 distinct rows, each three times
    centers = kmeans_plusplus(points, 4, np.random.default_rng(0))
    assert len({tuple(row.tolist()) for row in centers}) == 4


def test_minibatch_kmeans_recovers_separated_clusters_deterministically():
    points, labels = _unit(2000, 16, 6, spread=0.05, seed=3)
    first = minibatch_kmeans(points, 6, seed=1, batch_size=256, max_epochs=4)
    second = minibatch_kmeans(points, 6, seed=1, batch_size=256, max_epochs=4)
    assert first.iterations <= 4 * 2000 // 256 + 1  # the budget is in epochs
    assert torch.equal(first.labels, second.labels)
    # each found cluster is one true cluster (purity), and every true cluster is found
    found = first.labels.numpy()
    for c in np.unique(found):
        assert len(np.unique(labels[found == c])) == 1
    assert len(np.unique(found)) == 6


def test_typicality_matches_the_papers_definition_and_the_authors_squared_distances():
    points, _ = _unit(60)
    euclidean = typicality(points, 20, "euclidean")
    np.testing.assert_allclose(euclidean, dense_typicality(points.numpy(), 20), rtol=1e-4)
    np.testing.assert_allclose(typicality(points[:4], 3, "euclidean"), dense_typicality(points[:4].numpy(), 3),
                               rtol=1e-4)
    distance = pairwise_distance(points.numpy()) ** 2
    np.fill_diagonal(distance, np.inf)
    expected = 1 / (np.sort(distance, axis=1)[:, :20].mean(axis=1) + 1e-5)
    np.testing.assert_allclose(typicality(points, 20), expected, rtol=1e-4)
    assert np.isnan(typicality(points[:1], 0)).all()


@pytest.mark.parametrize("n, clusters, budget, labeled", [
    (1200, 8, 8, ()),  # one pick per cluster, Lloyd's k-means
    (1200, 8, 30, ()),  # round robin over the clusters, typicality recomputed after each pick
    (900, 6, 70, ()),  # mini-batch k-means (70 clusters > 50), clusters of ≤ 5 left out
    (1000, 8, 12, (3, 50, 51, 400)),  # incremental: clusters with labeled samples come last
])
def test_typiclust_equals_the_authors_loop(n, clusters, budget, labeled):
    features, _ = gaussian_mixture(n, 12, clusters, spread=0.5, seed=n + budget)
    points = unit_rows(features)
    selection = select(features, budget, "typiclust", seed=2, labeled=[str(i) for i in labeled])
    count = min(n, budget + len(labeled), 500)
    labels = cluster_pool(points, count, seed=2).labels.numpy()
    if count > 50:
        assert (np.bincount(labels, minlength=count) <= 5).any()  # the case that drops clusters
    expected = typiclust_loop(points.numpy(), labels, budget, labeled=list(labeled))
    assert selection.indices.tolist() == expected


def test_typiclust_clusters_are_capped_at_500_and_small_clusters_left_out():
    features, _ = gaussian_mixture(3000, 8, 40, spread=0.5, seed=9)
    selection = select(features, 600, "typiclust", seed=0)
    info = selection.metadata["info"]
    assert info["clusters"] == 500 and info["clusters_used"] < 500
    assert len(set(selection.indices.tolist())) == 600


def test_typiclust_takes_the_most_typical_sample_of_the_largest_clusters_first():
    # four blobs of very different sizes; budget 4 → one pick per cluster, largest cluster first
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((4, 12)) * 3
    sizes = [400, 200, 100, 50]
    raw = np.concatenate([c + 0.2 * rng.standard_normal((s, 12)) for c, s in zip(centers, sizes)])
    truth = np.repeat(np.arange(4), sizes)
    unit = unit_rows(raw).numpy()
    for distance, power in (("euclidean", 1), ("squared", 2)):
        selection = select(raw.astype(np.float32), 4, "typiclust", seed=0, distance=distance)
        assert truth[selection.indices].tolist() == [0, 1, 2, 3]
        for row, cluster in zip(selection.indices, selection.pseudo_class):
            members = np.flatnonzero(truth == truth[row])
            values = dense_typicality(unit[members], 20, power)
            assert members[np.argmax(values)] == row
        np.testing.assert_allclose(
            selection.score[0], dense_typicality(unit[truth == 0], 20, power).max(), rtol=1e-4)


def test_typiclust_covers_every_blob_and_uses_minibatch_for_many_clusters():
    features, labels = gaussian_mixture(1500, 16, 10, spread=0.1, seed=4)
    selection = select(features, 10, "typiclust", seed=0)
    assert len(np.unique(labels[selection.indices])) == 10
    many = select(features, 60, "typiclust", seed=0, minibatch_above=20)
    assert len(np.unique(labels[many.indices])) == 10 and len(set(many.indices.tolist())) == 60


def test_probcover_greedy_cover_equals_the_dense_oracle():
    points, _ = _unit(180, 6, 4, spread=0.5, seed=1)
    delta = 0.45
    selection = select(points.numpy(), 15, "probcover", seed=0, delta=delta)
    oracle = dense_probcover(points.numpy(), 15, delta)
    assert selection.indices[: len(oracle)].tolist() == oracle
    assert selection.metadata["info"]["delta"] == delta


def test_probcover_uses_whole_balls_where_a_neighbour_cut_would_truncate_them():
    # Balls of hundreds of points: a 100-nearest-neighbour graph would cut most of them.
    points, _ = _unit(1500, 5, 3, spread=0.3, seed=4)
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
    points, _ = _unit(300, 5, 3, spread=0.3, seed=4)
    with pytest.raises(InputError, match="max_edges"):
        select(points.numpy(), 5, "probcover", seed=0, delta=1.5, max_edges=1000)


def test_probcover_with_labeled_samples_equals_the_dense_oracle():
    points, _ = _unit(150, 6, 4, spread=0.5, seed=2)
    labeled = [3, 40, 77]
    selection = select(points.numpy(), 10, "probcover", seed=0, delta=0.5, labeled=[str(i) for i in labeled])
    oracle = dense_probcover(points.numpy(), 10, 0.5, labeled=labeled)
    assert selection.indices[: len(oracle)].tolist() == oracle


def test_probcover_fills_with_random_picks_once_everything_is_covered():
    points, _ = _unit(100, 4, 2, spread=0.1, seed=3)
    selection = select(points.numpy(), 30, "probcover", seed=0, delta=1.9)
    assert selection.metadata["info"]["covered_fraction"] == 1.0
    assert len(set(selection.indices.tolist())) == 30
    assert (selection.score[1:] == 0).all() and selection.score[0] > 0


def test_purity_radius_is_the_largest_delta_with_enough_pure_balls():
    points, _ = _unit(240, 5, 4, spread=0.6, seed=5)
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


@pytest.mark.parametrize("method, params, field", [
    ("probcover", {"delta": -0.1}, "delta"),
    ("probcover", {"purity": 1.5}, "purity"),
    ("probcover", {"max_edges": 0}, "max_edges"),
    ("probcover", {"purity_clusters": 1}, "purity_clusters"),
    ("typiclust", {"neighbours": 0}, "neighbours"),
    ("typiclust", {"min_cluster_size": -1}, "min_cluster_size"),
    ("typiclust", {"max_clusters": 0}, "max_clusters"),
    ("typiclust", {"distance": "cosine"}, "distance"),
])
def test_bad_parameters_name_the_field(method, params, field):
    features, _ = gaussian_mixture(50, 4, 2)
    with pytest.raises(InputError, match=f"parameter '{field}' must be"):
        select(features, 5, method, **params)


def test_kmeans_relocates_an_empty_cluster_to_the_farthest_point():
    # Half the pool is one repeated point: random seeding draws it twice, the twin center wins no
    # sample (ties go to the lower index) and must move instead of staying where it was.
    # The third center starts in one of two blobs that both lie on the same side: kept where it
    # was, the twin would stay empty for ever and one center would hold both blobs.
    rng = np.random.default_rng(0)
    points = torch.cat([torch.zeros(60, 2), torch.tensor(rng.normal(5, 0.3, (30, 2)), dtype=torch.float32),
                        torch.tensor(rng.normal(9, 0.3, (30, 2)), dtype=torch.float32)])
    seed = next(s for s in range(500)
                if (np.random.default_rng(s).choice(120, 3, replace=False) < 60).sum() == 2)
    result = kmeans(points, 3, seed=seed, init="random")
    assert sorted(np.bincount(result.labels.numpy(), minlength=3).tolist()) == [30, 30, 60]
