"""One battery of contract checks over every registered selector (sklearn's estimator checks)."""

import numpy as np
import pytest

from active_finetuning.data.artifacts import FeatureTable, write_selection
from active_finetuning.errors import InputError
from active_finetuning.selection import list_selectors, select
from tests.conftest import gaussian_mixture

FAST = {"activeft": {"iterations": 30}, "bilaf": {"core_params": "iterations=30"}}


@pytest.fixture(params=list_selectors())
def method(request):
    return request.param


def test_budget_honoured_with_distinct_pool_rows(method, mixture):
    features, _ = mixture
    selection = select(features, 25, method, seed=1, **FAST.get(method, {}))
    assert len(selection) == 25
    assert len(set(selection.indices.tolist())) == 25
    assert set(selection.sample_ids) <= {str(i) for i in range(len(features))}
    assert selection.metadata["method"] == method and selection.metadata["budget"] == 25


def test_same_seed_gives_byte_identical_file_and_other_seed_differs(method, mixture, tmp_path):
    features, _ = mixture
    paths = []
    for run, seed in enumerate([3, 3, 4]):
        selection = select(features, 20, method, seed=seed, **FAST.get(method, {}))
        paths.append(tmp_path / f"s{run}.parquet")
        write_selection(selection, str(paths[-1]))
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()


def test_selection_does_not_modify_the_callers_features(method, mixture):
    features, _ = mixture
    before = features.copy()
    select(features, 10, method, seed=0, **FAST.get(method, {}))
    np.testing.assert_array_equal(features, before)


def test_labeled_samples_are_never_returned(method, mixture):
    features, _ = mixture
    pool = FeatureTable.from_array(features)
    labeled = [str(i) for i in range(0, 600, 7)]
    selection = select(pool, 30, method, seed=0, labeled=labeled, **FAST.get(method, {}))
    assert not set(selection.sample_ids) & set(labeled)


@pytest.mark.parametrize("budget", [0, -3, 601, "0%", "101%", "-1%", "abc", 2.5, "0.001%"])
def test_bad_budgets_are_rejected(method, mixture, budget):
    features, _ = mixture
    with pytest.raises(InputError, match="budget"):
        select(features, budget, method)


def test_unknown_parameter_is_named(method, mixture):
    with pytest.raises(InputError, match="unknown parameter 'no_such_thing'"):
        select(mixture[0], 5, method, no_such_thing=1)


def test_unknown_method_lists_the_registered_ones(mixture):
    with pytest.raises(InputError, match="unknown method 'nope'.*activeft"):
        select(mixture[0], 5, "nope")


def test_kmeans_and_kcenter_cover_every_cluster_of_a_clear_mixture():
    from tests.conftest import gaussian_mixture

    features, labels = gaussian_mixture(1200, 32, 8, spread=0.05, seed=5)
    for method in ("kmeans", "kcenter", "activeft"):
        selection = select(features, 8 if method != "activeft" else 16, method, seed=0)
        assert len(np.unique(labels[selection.indices])) == 8, method


def test_rows_of_tiny_or_huge_values_select_as_their_directions(method, mixture):
    # Float32 norms underflow at 1e-40 (the row became NaN) and overflow at 1e20 (it became zero).
    features, _ = mixture
    scaled = features.copy()
    scaled[5] *= np.float32(1e-30)
    scaled[7] *= np.float32(1e20)
    expected = select(features, 20, method, seed=2, **FAST.get(method, {}))
    got = select(scaled, 20, method, seed=2, **FAST.get(method, {}))
    assert got.indices.tolist() == expected.indices.tolist()


def test_rows_without_a_direction_are_refused_with_their_id(method):
    features = np.random.default_rng(0).standard_normal((60, 4)).astype(np.float32)
    features[9] = 0.0
    with pytest.raises(InputError, match="all-zero rows.*'9'"):
        select(features, 5, method)


def test_a_users_medium_matmul_precision_changes_nothing_and_is_restored(method):
    # "medium" lets oneDNN compute float32 products in bfloat16 where the CPU has it: on this pool
    # that moves the picks of kcenter, kmeans, typiclust and probcover unless selection forces
    # full precision (on CPUs without bfloat16 the setting changes nothing either way).
    import torch

    features, _ = gaussian_mixture(2000, 64, 6)
    expected = select(features, 20, method, seed=4, **FAST.get(method, {}))
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    try:
        got = select(features, 20, method, seed=4, **FAST.get(method, {}))
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision(previous)
    assert got.indices.tolist() == expected.indices.tolist()


def test_a_users_per_backend_matmul_precision_changes_nothing_and_is_restored(method):
    # torch's newer per-backend setting: with it set, torch's older getter raises, which once failed every
    # selection; the selection must force full float32 all the same and give the setting back.
    import torch

    features, _ = gaussian_mixture(2000, 64, 6)
    expected = select(features, 20, method, seed=4, **FAST.get(method, {}))
    torch.backends.mkldnn.matmul.fp32_precision = "bf16"
    try:
        got = select(features, 20, method, seed=4, **FAST.get(method, {}))
        assert torch.backends.mkldnn.matmul.fp32_precision == "bf16"
    finally:
        torch.backends.mkldnn.matmul.fp32_precision = "none"
    assert got.indices.tolist() == expected.indices.tolist()
