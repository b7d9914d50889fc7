"""What the validation studies share: where the CIFAR-10 fixture lives, validation splits carved
from the training pool (the test set is never read by a study that chooses a setting), and the
scores of the evaluation layer's linear probe and kNN.

Run a study from the repository root as a module: ``python -m experiments.budget_study ...``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# The CIFAR-10 fixture (images and features) is kept beside the checkout, never inside it.
DATA = ROOT.parent / "shared" / "data" / "cifar10"


def validation_pools(train, validation: int, pools: int, pool_size: int):
    """(validation set, disjoint pools): ``train`` shuffled once (seed 0), its first ``validation``
    rows held out, the rest cut into ``pools`` pools of ``pool_size`` rows."""
    from active_finetuning.data.artifacts import FeatureTable

    order = np.random.default_rng(0).permutation(len(train))
    held = order[:validation]
    val = FeatureTable(train.sample_ids[held], train.features[held], train.labels[held], train.metadata)
    out = []
    for p in range(pools):
        rows = np.sort(order[validation + p * pool_size : validation + (p + 1) * pool_size])
        out.append(FeatureTable(train.sample_ids[rows], train.features[rows], train.labels[rows], train.metadata))
    return val, out


def probe_scores(pool, selection, val) -> dict:
    """Top-1 of the evaluation layer's linear probe and kNN, trained on the selection, on ``val``."""
    from active_finetuning.training.probe import probe

    result = probe(pool, selection, val)
    return {"probe": result["linear_probe"]["top1"], "knn": result["knn"]["top1"], "seconds": selection.seconds}
