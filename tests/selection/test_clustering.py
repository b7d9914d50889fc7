"""k-means++, Lloyd and mini-batch k-means: the textbook draws, determinism, empty clusters."""

import numpy as np
import pytest
import torch

from active_finetuning.selection.clustering import (
    kmeans,
    kmeans_plusplus,
    minibatch_kmeans,
)
from tests.conftest import gaussian_mixture, unit_mixture


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
    points, labels = unit_mixture(2000, 16, 6, spread=0.05, seed=3)
    first = minibatch_kmeans(points, 6, seed=1, batch_size=256, max_epochs=4)
    second = minibatch_kmeans(points, 6, seed=1, batch_size=256, max_epochs=4)
    assert first.iterations <= 4 * 2000 // 256 + 1  # the budget is in epochs
    assert torch.equal(first.labels, second.labels)
    # each found cluster is one true cluster (purity), and every true cluster is found
    found = first.labels.numpy()
    for c in np.unique(found):
        assert len(np.unique(labels[found == c])) == 1
    assert len(np.unique(found)) == 6


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


@pytest.mark.parametrize("seed", [0, 1])
def test_lloyd_from_the_same_start_equals_scikit_learn(seed):
    """Our chunked Lloyd's k-means (kept for bounded memory and byte-identical results across thread
    counts) converges, from the same initial centers, to scikit-learn's partition and centers."""
    from sklearn.cluster import KMeans

    features, _ = gaussian_mixture(1500, 16, 8, spread=0.9, seed=seed)
    points = torch.as_tensor(features, dtype=torch.float32)
    start = kmeans_plusplus(points, 8, np.random.default_rng(seed))
    ours = kmeans(points, 8, seed=seed, max_iter=300, tol=0.0)
    theirs = KMeans(n_clusters=8, init=start.double().numpy(), n_init=1, max_iter=300, tol=0.0,
                    algorithm="lloyd").fit(features.astype(np.float64))
    assert np.array_equal(ours.labels.numpy(), theirs.labels_)
    np.testing.assert_allclose(ours.centers.numpy(), theirs.cluster_centers_, rtol=0, atol=1e-5)
    assert ours.inertia == pytest.approx(theirs.inertia_, rel=1e-5)
