"""BiLAF (docs/methods.md §3): reference parity against the dense oracle, the paper mode's guarantees
and edge cases (§3.7), bad input, core reuse, and the CLI."""

import dataclasses

import numpy as np
import pyarrow.parquet as pq
import pytest

from active_finetuning.data.artifacts import (
    FeatureTable,
    write_features,
    write_selection,
)
from active_finetuning.errors import InputError
from active_finetuning.selection import bilaf, select
from active_finetuning.selection.api import unit_rows
from active_finetuning.selection.bilaf import BilafParams, boundary_selection
from tests.conftest import gaussian_mixture, run_cli, run_cli_many
from tests.oracles.bilaf_dense import dense_bilaf
from tests.oracles.bilaf_paper import paper_bilaf


def arc(angles):
    return np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)


def two_arcs(noise=(0.45, 0.47, 0.49)):
    """Two pseudo-classes on the unit circle, cores at angles 0 and 1, plus sparse noise on the
    boundary side of class 0: (features, angles, core rows, noise rows)."""
    rng = np.random.default_rng(0)
    angles = np.concatenate([
        np.linspace(-0.3, 0.3, 101) + rng.uniform(-1e-4, 1e-4, 101),
        np.linspace(0.7, 1.3, 101) + rng.uniform(-1e-4, 1e-4, 101),
        np.asarray(noise, dtype=float),
    ])
    angles[50], angles[151] = 0.0, 1.0
    return arc(angles), angles, np.array([50, 151]), np.arange(202, 202 + len(noise))


def blobs(sizes, dim=8, spread=0.05, seed=0):
    """Well separated blobs of the given sizes; the first row of each blob is its core."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((len(sizes), dim)) * 3
    parts = [c + spread * rng.standard_normal((s, dim)) for c, s in zip(centers, sizes)]
    cores = np.cumsum([0, *sizes[:-1]])
    for part in parts:
        part[0] = part.mean(axis=0)
    return np.concatenate(parts).astype(np.float32), cores


COMPAT = BilafParams(reference_compat=True)


# ----------------------------------------------------------------------------------------------
# reference parity: the same list, order included, as the per-candidate-loop oracle


@pytest.mark.parametrize("n, dim, clusters, num_cores, budget, options", [
    (3000, 16, 12, 30, 150, {}),
    (2500, 16, 10, 12, 300, {}),
    (1800, 24, 8, 20, 120, {"opponent_penalty": 1.5, "removal_ratio": 0.2, "ring_fraction": 0.15}),
    (900, 8, 5, 6, 200, {"density_k": 4, "min_cluster_for_denoise": 30}),
    (400, 8, 3, 1, 12, {}),
])
def test_paper_mode_equals_the_paper_loop_oracle(n, dim, clusters, num_cores, budget, options):
    # The default mode against an oracle written from the paper's definitions as plain loops
    # (tests/oracles/bilaf_paper.py): IDC seeded with the core until all are in, eq. 7's minimum
    # over all opponents, the capped split, the top-up.
    features, _ = gaussian_mixture(n, dim, clusters, spread=0.6, seed=n + 1)
    unit = unit_rows(features)
    cores = select(features, num_cores, "kmeans", seed=0).indices
    expected = paper_bilaf(unit.numpy(), cores, budget, **options)
    picks = boundary_selection(unit, cores, budget, BilafParams(**options))
    assert picks.indices.tolist() == expected


@pytest.mark.parametrize("n, dim, clusters, num_cores, budget, options", [
    (3000, 16, 12, 30, 150, {}),
    (2000, 32, 8, 20, 200, {"opponent_penalty": 1.5, "removal_ratio": 0.2, "ring_fraction": 0.15}),
    (1500, 8, 5, 15, 160, {"density_k": 4, "min_cluster_for_denoise": 30}),
    (400, 8, 3, 1, 12, {}),
])
def test_reference_compat_equals_the_dense_oracle(n, dim, clusters, num_cores, budget, options):
    features, _ = gaussian_mixture(n, dim, clusters, spread=0.6, seed=n)
    unit = unit_rows(features)
    cores = select(features, num_cores, "kmeans", seed=0).indices
    expected = dense_bilaf(unit.numpy(), cores, budget, **options)
    picks = boundary_selection(unit, cores, budget, BilafParams(reference_compat=True, **options))
    assert picks.indices.tolist() == expected


def test_reference_compat_refuses_where_the_reference_emits_duplicates():
    features, _ = gaussian_mixture(1500, 8, 5, spread=0.6, seed=1500)
    unit = unit_rows(features)
    cores = select(features, 40, "kmeans", seed=0).indices
    expected = dense_bilaf(unit.numpy(), cores, 160, density_k=4, min_cluster_for_denoise=30)
    assert len(set(expected)) < len(expected)
    with pytest.raises(InputError, match="emits duplicates"):
        boundary_selection(unit, cores, 160, BilafParams(reference_compat=True, density_k=4,
                                                          min_cluster_for_denoise=30))
    picks = boundary_selection(unit, cores, 160, BilafParams(density_k=4, min_cluster_for_denoise=30))
    assert len(set(picks.indices.tolist())) == 160


def test_reference_compat_differs_from_the_paper_mode():
    features, _ = gaussian_mixture(3000, 16, 12, spread=0.6, seed=3000)
    unit = unit_rows(features)
    cores = select(features, 30, "kmeans", seed=0).indices
    compat = boundary_selection(unit, cores, 150, COMPAT).indices
    paper = boundary_selection(unit, cores, 150, BilafParams()).indices
    assert set(compat[np.isin(compat, cores)]) == set(paper[np.isin(paper, cores)]) == set(cores)
    assert 0 < len(set(compat) & set(paper)) < 150  # §3.4/§3.6 change some picks, not all


def test_known_pseudo_classes_denoising_and_boundaries():
    features, angles, cores, noise = two_arcs()
    unit = unit_rows(features)
    for params in (BilafParams(), COMPAT):
        picks = boundary_selection(unit, cores, 10, params)
        table = picks.tables["clusters"].to_pydict()
        assert table["size"] == [104, 101]  # noise joins class 0, its nearest core
        assert table["allocation"] == [5, 5]
        assert not set(picks.indices) & set(noise)  # IDC admits the sparse noise last and drops it
        boundary = picks.role == "boundary"
        assert picks.pseudo_class.tolist() == [0] * 5 + [1] * 5
        assert picks.indices[[0, 5]].tolist() == cores.tolist() and not boundary[[0, 5]].any()
        # The first boundary pick of each class is the one facing the other class.
        assert angles[picks.indices[1]] > 0.2 and angles[picks.indices[6]] < 0.8
        assert np.isnan(picks.score[~boundary]).all() and np.isfinite(picks.score[boundary]).all()
    assert picks.indices.tolist() == dense_bilaf(unit.numpy(), cores, 10)
    # Without removal the noise, nearest the boundary, is what gets picked.
    undenoised = boundary_selection(unit, cores, 10, BilafParams(removal_ratio=0.0))
    assert set(undenoised.indices) & set(noise)


def test_blocked_computation_gives_the_same_result(monkeypatch):
    features, _ = gaussian_mixture(1200, 16, 6, spread=0.6, seed=4)
    unit = unit_rows(features)
    cores = np.random.default_rng(2).choice(1200, 12, replace=False)
    expected = {p: boundary_selection(unit, cores, 90, p).indices.tolist() for p in (COMPAT, BilafParams())}
    monkeypatch.setattr(bilaf, "rows_per_block", lambda columns: max(1, 500 // max(1, columns)))
    for params, indices in expected.items():
        assert boundary_selection(unit, cores, 90, params).indices.tolist() == indices


def test_clusters_too_large_for_a_distance_matrix_give_the_same_result(monkeypatch):
    # Above BLOCK_ELEMENTS a cluster has no n×n matrix: IDC computes its distances ring by ring.
    features, _ = gaussian_mixture(3000, 16, 12, spread=0.6, seed=3000)
    unit = unit_rows(features)
    cores = select(features, 30, "kmeans", seed=0).indices
    expected = {p: boundary_selection(unit, cores, 150, p).indices.tolist() for p in (COMPAT, BilafParams())}
    monkeypatch.setattr(bilaf, "BLOCK_ELEMENTS", 1000)
    for params, indices in expected.items():
        assert boundary_selection(unit, cores, 150, params).indices.tolist() == indices


# ----------------------------------------------------------------------------------------------
# paper mode: exactly B distinct samples for every input (§3.7)


def test_zero_allocation():
    features, cores = blobs([80, 10, 10])
    unit = unit_rows(features)
    picks = boundary_selection(unit, cores, 3, BilafParams())
    assert sorted(picks.indices.tolist()) == sorted(cores.tolist())
    with pytest.raises(InputError, match="0 samples.*reference code crashes"):
        boundary_selection(unit, cores, 3, COMPAT)


def test_allocation_larger_than_the_denoised_cluster_tops_up_distinct_samples():
    features, cores = blobs([20, 20, 20])
    unit = unit_rows(features)
    picks = boundary_selection(unit, cores, 58, BilafParams())
    assert len(set(picks.indices.tolist())) == 58
    assert picks.info["top_up"] == 4  # 3 × 18 denoised samples, 4 more from the whole pool
    table = picks.tables["clusters"].to_pydict()
    assert table["allocation"] == table["denoised_size"] == [18, 18, 18]
    with pytest.raises(InputError, match="emits duplicates"):
        boundary_selection(unit, cores, 58, COMPAT)


def test_tiny_clusters_are_kept_whole_and_match_the_oracle():
    features, cores = blobs([200, 150, 4, 6], spread=0.3)
    unit = unit_rows(features)
    for params in (BilafParams(), COMPAT):
        picks = boundary_selection(unit, cores, 60, params)
        table = picks.tables["clusters"].to_pydict()
        assert table["denoised_size"][2:] == table["size"][2:] == [4, 6]
        assert len(set(picks.indices.tolist())) == 60
    assert picks.indices.tolist() == dense_bilaf(unit.numpy(), cores, 60)


def test_duplicate_features_and_duplicate_cores():
    base, _ = gaussian_mixture(150, 8, 4, seed=6)
    features = np.repeat(base, 3, axis=0)  # every sample three times
    picks = select(features, 40, "bilaf", num_cores=6, core_selector="random", seed=0)
    assert len(set(picks.indices.tolist())) == 40
    unit = unit_rows(features)
    twins = np.array([0, 1, 30, 60])  # rows 0 and 1 are identical
    picks = boundary_selection(unit, twins, 20, BilafParams())
    assert len(set(picks.indices.tolist())) == 20 and {0, 1} <= set(picks.indices.tolist())
    with pytest.raises(InputError, match="identical features.*reference code fails"):
        boundary_selection(unit, twins, 20, COMPAT)


def test_as_many_cores_as_budget_returns_the_cores():
    features, _ = gaussian_mixture(500, 8, 5, seed=7)
    cores = select(features, 12, "kmeans", seed=3)
    picks = select(features, 12, "bilaf", num_cores=12, core_selector="kmeans", seed=3)
    assert set(picks.sample_ids) == set(cores.sample_ids)
    assert (picks.role == "core").all() and np.isnan(picks.score).all()


def test_a_single_core():
    features, _ = gaussian_mixture(300, 8, 3, seed=8)
    picks = select(features, 15, "bilaf", num_cores=1, core_selector="random")
    assert len(set(picks.indices.tolist())) == 15 and (picks.role == "core").sum() == 1


def test_labeled_samples_are_centres_that_cost_no_budget():
    features, _ = gaussian_mixture(600, 16, 6, seed=9)
    labeled = [str(i) for i in range(0, 600, 40)]
    picks = select(features, 30, "bilaf", num_cores=5, core_selector="kmeans", labeled=labeled)
    assert len(set(picks.sample_ids)) == 30 and not set(picks.sample_ids) & set(labeled)
    assert picks.metadata["info"]["num_centers"] == 5 + len(labeled)
    table = picks.tables["clusters"].to_pydict()
    assert sum(table["center_labeled"]) == len(labeled)
    assert sum(table["selected"]) == 30
    with pytest.raises(InputError, match="no incremental mode"):
        select(features, 30, "bilaf", num_cores=5, core_selector="kmeans", labeled=labeled,
               reference_compat=True)


def test_artifact_records_roles_classes_scores_and_every_parameter(tmp_path):
    features, _ = gaussian_mixture(600, 16, 6, seed=10)
    selection = select(features, 30, "bilaf", num_cores=6, core_selector="activeft",
                       core_params="iterations=20", seed=1)
    write_selection(selection, str(tmp_path / "s.parquet"))
    table = pq.read_table(tmp_path / "s.parquet")
    assert {"role", "pseudo_class", "score"} <= set(table.column_names)
    assert table.column("role").to_pylist().count("core") == 6
    meta = selection.metadata
    assert set(meta["params"]) == {f.name for f in dataclasses.fields(BilafParams)}
    assert meta["info"]["num_cores"] == 6 and meta["info"]["cores_from"] == "activeft"
    default_k = select(features, 30, "bilaf", core_selector="random").metadata["info"]["num_cores"]
    assert default_k == 3  # 0.5% of 600, at least 1
    share = select(features, 30, "bilaf", core_selector="random", num_cores="2%")
    assert share.metadata["info"]["num_cores"] == 12 and share.metadata["params"]["num_cores"] == "2%"


# ----------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("params, field", [
    ({"num_cores": 0}, "num_cores"),
    ({"num_cores": -2}, "num_cores"),
    ({"num_cores": 21}, "num_cores"),
    ({"num_cores": "12.5"}, "num_cores"),
    ({"num_cores": "0%"}, "num_cores"),
    ({"ring_fraction": -0.1}, "ring_fraction"),
    ({"ring_fraction": 1.0}, "ring_fraction"),
    ({"removal_ratio": -0.1}, "removal_ratio"),
    ({"removal_ratio": 1.0}, "removal_ratio"),
    ({"opponent_penalty": 0.9}, "opponent_penalty"),
    ({"density_k": 0}, "density_k"),
    ({"core_selector": "nope"}, "core_selector"),
    ({"core_selector": "bilaf"}, "core_selector"),
    ({"core_params": "iterations"}, "core_params"),
    ({"core_params": "no_such=1"}, "core_params"),
])
def test_bad_parameters_name_the_field(params, field):
    features, _ = gaussian_mixture(200, 8, 3)
    with pytest.raises(InputError, match=field):
        select(features, 20, "bilaf", **{"core_selector": "random", **params})


def test_cli_bad_input_exits_non_zero_and_writes_nothing(tmp_path):
    features, _ = gaussian_mixture(200, 8, 3)
    write_features(FeatureTable.from_array(features), str(tmp_path / "f.parquet"))
    out = tmp_path / "s.parquet"
    flags = (["--opponent-penalty", "0.5"], ["--cores", str(tmp_path / "missing.parquet")])
    runs = run_cli_many([["select", "--features", str(tmp_path / "f.parquet"), "--budget", "20", "--method", "bilaf",
                          "--out", str(out), *more] for more in flags])
    for code, stderr in runs:
        assert code == 2, stderr
        assert "error" in stderr and "Traceback" not in stderr and not out.exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "f.parquet"]


# ----------------------------------------------------------------------------------------------
# core reuse and the CLI


def test_cores_artifact_gives_the_same_result_as_computing_the_cores(tmp_path):
    features, _ = gaussian_mixture(800, 16, 8, seed=11)
    computed = select(features, 40, "bilaf", num_cores=8, core_selector="kmeans", seed=2)
    write_selection(computed, str(tmp_path / "first.parquet"))  # its 'core' rows are the cores
    for budget in (40, 64):
        reused = select(features, budget, "bilaf", cores=str(tmp_path / "first.parquet"), seed=2)
        fresh = select(features, budget, "bilaf", num_cores=8, core_selector="kmeans", seed=2)
        assert reused.indices.tolist() == fresh.indices.tolist()
        assert reused.metadata["info"]["cores_from"] == "artifact"
    write_selection(select(features, 8, "kmeans", seed=2), str(tmp_path / "kmeans.parquet"))
    plain = select(features, 40, "bilaf", cores=str(tmp_path / "kmeans.parquet"))
    assert plain.indices.tolist() == computed.indices.tolist()
    with pytest.raises(InputError, match="num_cores"):
        select(features, 40, "bilaf", cores=str(tmp_path / "kmeans.parquet"), num_cores=5)
    with pytest.raises(InputError, match="already-labeled"):
        select(features, 40, "bilaf", cores=str(tmp_path / "kmeans.parquet"),
               labeled=list(computed.sample_ids[:3]))


def test_cli_select_with_bilaf_flags(tmp_path):
    features, _ = gaussian_mixture(500, 16, 5, seed=12)
    write_features(FeatureTable.from_array(features), str(tmp_path / "f.parquet"))
    common = ["select", "--features", str(tmp_path / "f.parquet"), "--method", "bilaf", "--no-progress"]
    first = run_cli(*common, "--budget", "25", "--num-cores", "5", "--core-selector", "kmeans",
                    "--removal-ratio", "0.2", "--reference-compat", "--out", str(tmp_path / "a.parquet"))
    assert first.returncode == 0, first.stderr
    assert "core 5" in first.stdout and "boundary 20" in first.stdout
    second = run_cli(*common, "--budget", "40", "--cores", str(tmp_path / "a.parquet"),
                     "--out", str(tmp_path / "b.parquet"))
    assert second.returncode == 0, second.stderr
    meta = pq.read_table(tmp_path / "a.parquet").schema.metadata
    assert b'"reference_compat":true' in meta[b"active_finetuning"]
    assert b'"removal_ratio":0.2' in meta[b"active_finetuning"]
    expected = select(features, 40, "bilaf", num_cores=5, core_selector="kmeans")
    assert pq.read_table(tmp_path / "b.parquet").column("sample_id").to_pylist() == list(expected.sample_ids)
