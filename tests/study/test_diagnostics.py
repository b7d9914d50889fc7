"""Label-free diagnostics: coverage against a dense oracle, pseudo-class share, the CLI's files."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from active_finetuning.cli.main import main
from active_finetuning.data.artifacts import (
    FeatureTable,
    write_features,
    write_selection,
)
from active_finetuning.selection import select
from active_finetuning.selection.api import unit_rows
from active_finetuning.study import diagnostics
from tests.conftest import gaussian_mixture
from tests.oracles.typiclust_probcover_dense import pairwise_distance


@pytest.fixture
def pool():
    features, labels = gaussian_mixture(600, 12, 6, spread=0.1, seed=3)
    return FeatureTable.from_array(features, labels=labels)


def test_coverage_equals_the_dense_nearest_distance(pool):
    unit = unit_rows(pool.features)
    rows = np.array([3, 50, 200, 401])
    got = diagnostics.coverage(unit, rows)
    nearest = pairwise_distance(unit.numpy())[:, rows].min(axis=1)
    assert got["mean"] == pytest.approx(nearest.mean(), abs=1e-5)
    assert got["max"] == pytest.approx(nearest.max(), abs=1e-5)
    for q in (50, 90, 99):
        assert got[f"p{q}"] == pytest.approx(np.percentile(nearest, q), abs=1e-5)


def test_one_pick_per_blob_holds_every_pseudo_class_and_a_clump_does_not(pool):
    unit = unit_rows(pool.features)
    spread = np.array([np.flatnonzero(pool.labels == c)[0] for c in range(6)])
    clump = np.flatnonzero(pool.labels == 0)[:6]
    good = diagnostics.pseudo_class_share(unit, spread)
    bad = diagnostics.pseudo_class_share(unit, clump)
    assert good["clusters"] == 6 and good["covered_share"] == 1.0 and good["uncovered_pool_share"] == 0.0
    assert bad["covered_share"] == pytest.approx(1 / 6)
    assert bad["uncovered_pool_share"] == pytest.approx(1 - (pool.labels == 0).mean())
    assert diagnostics.coverage(unit, spread)["mean"] < diagnostics.coverage(unit, clump)["mean"]


def test_labeled_samples_count_as_covering(pool):
    selection = select(pool, 3, "random", seed=0)
    labeled = [str(i) for i in np.flatnonzero(pool.labels >= 3)[:20]]
    alone = diagnostics.diagnose(pool, selection)
    together = diagnostics.diagnose(pool, selection, labeled=labeled)
    assert together["labeled"] == 20 and together["coverage"]["mean"] < alone["coverage"]["mean"]
    assert together["metrics"]["coverage_mean"] == together["coverage"]["mean"]


def _cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_writes_json_and_png(pool, tmp_path, capsys):
    features = tmp_path / "features.parquet"
    write_features(pool, str(features))
    selection = tmp_path / "selection.parquet"
    write_selection(select(pool, 12, "kcenter", seed=0), str(selection))
    out = tmp_path / "diag"
    code, stdout, stderr = _cli(capsys, "diagnose", "--features", str(features), "--selection", str(selection),
                                "--out", str(out))
    assert code == 0, stderr
    assert "coverage (Euclidean distance of L2-normalised features, 0 to 2, from each pool sample to the nearest selected one): mean" in stdout
    report = json.loads((out / "diagnostics.json").read_text())
    assert report["selected"] == 12 and report["method"] == "kcenter" and report["roles"] == {"pick": 12}
    assert report["pseudo_classes"]["clusters"] == 12
    png = (out / "diagnostics.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert sorted(p.name for p in out.iterdir()) == ["diagnostics.json", "diagnostics.png"]


def test_cli_rejects_a_selection_from_another_pool_and_writes_nothing(pool, tmp_path, capsys):
    features = tmp_path / "features.parquet"
    write_features(pool, str(features))
    foreign = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"sample_id": ["nope", "0"], "rank": [0, 1], "role": ["pick", "pick"]}), foreign)
    out = tmp_path / "diag"
    code, _, stderr = _cli(capsys, "diagnose", "--features", str(features), "--selection", str(foreign),
                           "--out", str(out))
    assert code == 2 and "not in the features pool" in stderr
    assert "Traceback" not in stderr and not out.exists()
    code, _, stderr = _cli(capsys, "diagnose", "--features", str(features), "--selection", str(tmp_path / "no.parquet"))
    assert code == 2 and "does not exist" in stderr
