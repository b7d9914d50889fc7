"""TypiClust against the authors' loop and the paper's typicality (dense oracles)."""

import numpy as np
import pytest

from active_finetuning.selection import select
from active_finetuning.selection.api import unit_rows
from active_finetuning.selection.clustering import cluster_pool
from active_finetuning.selection.typiclust import typicality
from tests.conftest import gaussian_mixture, unit_mixture
from tests.oracles.typiclust_probcover_dense import (
    dense_typicality,
    pairwise_distance,
    typiclust_loop,
)


def test_typicality_matches_the_papers_definition_and_the_authors_squared_distances():
    points, _ = unit_mixture(60)
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
