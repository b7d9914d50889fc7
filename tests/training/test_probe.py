"""The linear probe and kNN on the selected samples' features, library and CLI."""

import json

import numpy as np
import pytest

from active_finetuning.cli.main import main
from active_finetuning.data.artifacts import (
    FeatureTable,
    Selection,
    write_features,
    write_selection,
)
from active_finetuning.errors import InputError
from active_finetuning.labels import Labels, write_labels
from active_finetuning.training.probe import ProbeParams, knn_scores, probe
from tests.conftest import gaussian_mixture, run_cli


def test_knn_votes_follow_the_nearest_labeled_samples():
    train = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
    votes = knn_scores(train, [0, 0, 1, 1], np.array([[1, 0.05], [0.05, 1]]), 2, ProbeParams(k=3))
    assert votes.argmax(1).tolist() == [0, 1]


@pytest.fixture
def pools():
    features, labels = gaussian_mixture(1400, 16, 5, spread=0.6, seed=3)
    ids = [f"s{i}" for i in range(len(features))]
    train = FeatureTable.from_array(features[:1000], ids[:1000], labels[:1000])
    test = FeatureTable.from_array(features[1000:], ids[1000:], labels[1000:])
    return train, test


def _selection(ids):
    ids = np.asarray(ids, dtype=object)
    return Selection(np.arange(len(ids)), ids, np.asarray(["pick"] * len(ids), dtype=object),
                     metadata={"method": "random", "budget": len(ids), "seed": 0})


def test_probe_learns_separable_clusters_and_beats_chance(pools):
    train, test = pools
    rng = np.random.default_rng(0)
    metrics = probe(train, _selection(rng.choice(train.sample_ids, 60, replace=False)), test)
    assert metrics["labeled"] == 60 and metrics["label_source"].startswith("oracle")
    assert metrics["linear_probe"]["top1"] > 0.9 and metrics["knn"]["top1"] > 0.9
    assert metrics["linear_probe"]["samples"] == 400


def test_probe_uses_given_labels_over_the_oracle(pools):
    train, test = pools
    chosen = train.sample_ids[:50]
    wrong = (train.labels[:50] + 1) % 5  # every label shifted: the probe must learn the shift
    metrics = probe(train, _selection(chosen), test, labels=Labels(chosen, wrong))
    assert metrics["label_source"] == "labels artifact"
    assert metrics["linear_probe"]["top1"] < 0.2


def test_balanced_class_weights_reach_the_logistic_regression(pools):
    """``class_weight="balanced"``: the probe's scores are scikit-learn's balanced logistic regression's."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from active_finetuning.training.probe import linear_probe

    train, test = pools
    rows = np.concatenate([np.flatnonzero(train.labels == c)[: 40 if c else 3] for c in range(5)])
    x, y = train.features[rows], train.labels[rows]
    scores = linear_probe(x, y, test.features, 5, ProbeParams(class_weight="balanced"))
    scaler = StandardScaler().fit(x)
    expected = LogisticRegression(C=0.5, max_iter=1000, class_weight="balanced").fit(scaler.transform(x), y)
    assert np.allclose(scores, expected.predict_proba(scaler.transform(test.features)))
    assert not np.allclose(scores, linear_probe(x, y, test.features, 5))  # and they differ from the plain probe


def test_probe_rejects_a_single_class_and_missing_labels(pools):
    train, test = pools
    one_class = train.sample_ids[train.labels == 2][:10]
    with pytest.raises(InputError, match="single class"):
        probe(train, _selection(one_class), test)
    with pytest.raises(InputError, match="lack 1 selected samples"):
        probe(train, _selection(train.sample_ids[:11]), test,
              labels=Labels(train.sample_ids[:10], train.labels[:10]))
    with pytest.raises(InputError, match="not in the features pool"):
        probe(train, _selection(["nope", "s1"]), test)


def test_probe_cli_prints_and_writes_both_classifiers(pools, tmp_path):
    train, test = pools
    write_features(train, str(tmp_path / "train.parquet"))
    write_features(test, str(tmp_path / "test.parquet"))
    write_selection(_selection(train.sample_ids[::20]), str(tmp_path / "sel.parquet"))
    out = tmp_path / "m" / "probe.json"
    result = run_cli("probe", "--features-train", str(tmp_path / "train.parquet"), "--selection",
                     str(tmp_path / "sel.parquet"), "--features-test", str(tmp_path / "test.parquet"),
                     "--out", str(out), "--C", "0.3", env={"MLFLOW_TRACKING_URI": ""})
    assert result.returncode == 0, result.stderr
    assert "linear probe: top-1" in result.stdout and "kNN (k=20): top-1" in result.stdout
    written = json.loads(out.read_text())
    assert written["params"]["C"] == 0.3 and written["labeled"] == 50
    assert written["knn"]["confusion_matrix"]["matrix"] and written["linear_probe"]["top1"] > 0.8


def test_probe_cli_bad_labels_exit_2_and_write_nothing(pools, tmp_path, capsys):
    train, test = pools
    write_features(train, str(tmp_path / "train.parquet"))
    write_features(test, str(tmp_path / "test.parquet"))
    write_selection(_selection(train.sample_ids[:30]), str(tmp_path / "sel.parquet"))
    write_labels(Labels(train.sample_ids[:30], np.zeros(30, dtype=np.int64)), str(tmp_path / "labels.parquet"))
    out = tmp_path / "probe.json"
    code = main(["probe", "--features-train", str(tmp_path / "train.parquet"), "--selection",
                 str(tmp_path / "sel.parquet"), "--features-test", str(tmp_path / "test.parquet"),
                 "--labels", str(tmp_path / "labels.parquet"), "--out", str(out)])
    assert code == 2 and "single class" in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.glob("*.tmp")) == []


@pytest.mark.slow
def test_probe_matches_the_fixture_reference_at_250_random_labels(cifar_dir):
    from active_finetuning.data.artifacts import read_features
    from active_finetuning.selection import select

    train = read_features(str(cifar_dir / "features-train.parquet"))
    test = read_features(str(cifar_dir / "features-test.parquet"))
    scores = [probe(train, select(train, 250, "random", seed=seed, progress=False), test)["linear_probe"]["top1"]
              for seed in range(3)]
    assert np.mean(scores) == pytest.approx(0.624, abs=0.025)  # README of the fixture: 62.4 ± 1.3
