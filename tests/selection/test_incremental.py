"""Incremental selection (what a scheduled run needs): picks complement the samples already labeled.

Pool: eight well-separated blobs. The labeled set holds a quarter of each of blobs 0–3 and nothing
of blobs 4–7, so a selector that takes the labeled set into account must spend its budget on the
blobs the labeled set misses.
"""

import numpy as np
import pytest

from active_finetuning.data.artifacts import FeatureTable
from active_finetuning.selection import list_selectors, select
from tests.conftest import gaussian_mixture

# BiLAF with two cores: its own labeled handling (boundary stage), not its ActiveFT cores, is tested
FAST = {"activeft": {"iterations": 20}, "bilaf": {"core_params": "iterations=20", "num_cores": 2}}
# Selectors that, by design, do not steer away from labeled regions (they only exclude labeled rows).
UNAWARE = {"random": "a uniform sample", "kmeans": "clusters the whole pool, then skips labeled rows"}


@pytest.fixture(scope="module")
def half_labeled():
    features, blob = gaussian_mixture(480, 16, 8, spread=0.08, seed=11)
    rows = np.concatenate([np.flatnonzero(blob == b)[: (blob == b).sum() // 4] for b in range(4)])
    pool = FeatureTable.from_array(features)
    return pool, blob, [str(r) for r in rows]


@pytest.fixture(params=list_selectors())
def method(request):
    return request.param


def _picked_blobs(method, half_labeled, budget, **params):
    pool, blob, labeled = half_labeled
    selection = select(pool, budget, method, seed=0, labeled=labeled, **{**FAST.get(method, {}), **params})
    assert not set(selection.sample_ids) & set(labeled)
    assert len(set(selection.sample_ids)) == budget
    return blob[selection.indices]


def test_every_region_the_labeled_set_misses_gets_a_pick(method, half_labeled):
    if method == "random":
        pytest.skip("random has no notion of regions")
    # ProbCover's δ heuristic clusters into as many pseudo-classes as there are classes (the paper)
    picked = _picked_blobs(method, half_labeled, 12, **({"purity_clusters": 8} if method == "probcover" else {}))
    assert set(range(4, 8)) <= set(picked.tolist()), f"{method} picked blobs {sorted(picked.tolist())}"


def test_labeled_aware_selectors_spend_the_budget_where_labels_are_missing(method, half_labeled):
    if method in UNAWARE:
        pytest.skip(f"{method}: {UNAWARE[method]}")
    picked = _picked_blobs(method, half_labeled, 8)
    outside = (picked >= 4).mean()
    assert outside >= 0.75, f"{method} put only {outside:.0%} of its picks in unlabeled blobs: {picked.tolist()}"


def test_without_labels_the_same_selectors_do_spread_over_all_blobs(half_labeled):
    """The control: the preference above comes from the labeled set, not from the blobs."""
    pool, blob, _ = half_labeled
    for method in ("kcenter", "typiclust", "probcover"):
        picked = blob[select(pool, 8, method, seed=0).indices]
        assert (picked < 4).any() and (picked >= 4).any(), method
