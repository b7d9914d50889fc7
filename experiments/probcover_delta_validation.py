"""ProbCover's ball radius δ on a validation split of the training pool (the test set is never read).

    python -m experiments.probcover_delta_validation --train ../shared/data/cifar10/features-train.parquet

Same split as ``core_count_validation.py`` (validation = the first 10,000 rows of a seed-0
shuffle, pools of 10,000 after it). For each pool and budget, ProbCover with the purity-estimated δ
(α = 0.95, 10 k-means pseudo-classes, as the paper) and with fixed δ values, scored by the linear
probe and kNN on the validation set; prints one line per run as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from experiments.common import DATA, ROOT, probe_scores, validation_pools


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", default=str(DATA / "features-train.parquet"))
    parser.add_argument("--cache", default=str(ROOT / "outputs" / "probcover_delta"))
    parser.add_argument("--pools", type=int, default=2)
    parser.add_argument("--budgets", default="100,200", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--deltas", default="auto,0.7,0.8,0.9", type=lambda s: s.split(","))
    args = parser.parse_args(argv)

    import torch

    from active_finetuning.data.artifacts import read_features
    from active_finetuning.selection import select

    torch.set_num_threads(1)
    val, pools = validation_pools(read_features(args.train), 10_000, args.pools, 10_000)
    for seed, pool in enumerate(pools):
        for budget in args.budgets:
            for delta in args.deltas:
                params = {"graph_cache": str(Path(args.cache) / "graphs")}
                if delta != "auto":
                    params["delta"] = float(delta)
                selection = select(pool, budget, "probcover", seed=seed, **params)
                info = selection.metadata["info"]
                row = {"pool": seed, "budget": budget, "delta": delta, **probe_scores(pool, selection, val),
                       "delta_used": info["delta"], "covered": info["covered_fraction"],
                       "ball": info["mean_ball_size"], "edges": info["edges"]}
                print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
