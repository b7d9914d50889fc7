"""The drift benchmark (``benchmarks/activeft_drift.py``) in a small form: every variant only changes
which rows are looked at again, so each must follow the default's trajectory bit for bit, and the
exact per-row drift can only score fewer rows than the default bound (both without the bytes per center)."""

import json

import numpy as np

from active_finetuning.data.artifacts import FeatureTable, write_features
from benchmarks import activeft_drift


def test_every_drift_variant_follows_the_default_trajectory(tmp_path):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(600, 32)) + 1.0  # a blob: many rows change centroid as they move
    path = tmp_path / "features.parquet"
    write_features(FeatureTable([f"s{i}" for i in range(600)], features.astype(np.float32)), str(path))
    out = tmp_path / "drift.json"
    activeft_drift.main(["--features", str(path), "--budget", "24", "--iterations", "40", "--threads", "1",
                         "--variants", "path:16", "path:2", "flat:2", "cauchy:2", "exact:2", "lowrank:2:6:3",
                         "--json", str(out)])
    runs = {run["variant"]: run for run in json.loads(out.read_text())["runs"]}
    assert all(run["same_trajectory"] for run in runs.values())
    assert len({run["centroids_sha1"] for run in runs.values()}) == 1
    assert runs["exact:2"]["rows_scored"] <= runs["flat:2"]["rows_scored"] <= runs["cauchy:2"]["rows_scored"]
    assert 0 < runs["path:2"]["rows_scored"] < runs["flat:2"]["rows_scored"]  # the bytes per center keep rows
