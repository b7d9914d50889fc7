"""BiLAF's boundary parameters (removal ratio P_rm, opponent penalty δ) on a validation split.

    python -m experiments.bilaf_boundary_validation --cores-cache outputs/core_count_40k

Does any setting of the paper's Fig. 4 grid (docs/methods.md §3.10: P_rm 0–0.3, δ 1.0–1.5) make
the boundary picks pay? Same split and pools as ``core_count_validation.py`` (the test set is never
read); the cores are that script's cached ActiveFT selections (``--cores-cache``, made with
``run --pools 1 --pool-size 40000 --repeats 3 --cores 800,2000 --budgets 2000``), so every run here
is BiLAF's denoise and boundary stages only. Each run is scored by the linear probe and kNN on the
validation set and printed as one JSON line, then a table of the paired difference against K = B
(the cached ActiveFT selection of the whole budget).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

from experiments.common import DATA, ROOT, probe_scores, validation_pools


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", default=str(DATA / "features-train.parquet"))
    parser.add_argument("--cores-cache", default=str(ROOT / "outputs" / "core_count_40k"))
    parser.add_argument("--pool-size", type=int, default=40_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cores", type=int, default=800)
    parser.add_argument("--budget", type=int, default=2000)
    parser.add_argument("--removal-ratios", default="0,0.1,0.2,0.3", type=lambda s: [float(x) for x in s.split(",")])
    parser.add_argument("--penalties", default="1.0,1.1,1.5", type=lambda s: [float(x) for x in s.split(",")])
    args = parser.parse_args(argv)

    import torch

    from active_finetuning.data.artifacts import read_features, read_selection
    from active_finetuning.selection import select

    torch.set_num_threads(1)
    val, (pool,) = validation_pools(read_features(args.train), 10_000, 1, args.pool_size)
    cache = Path(args.cores_cache)
    differences: dict[tuple, list] = {}
    for repeat in range(args.repeats):
        name = "pool0" + (f"r{repeat}" if repeat else "")
        whole = probe_scores(pool, read_selection(str(cache / f"{name}-activeft-k{args.budget}.parquet"), pool), val)
        cores = str(cache / f"{name}-activeft-k{args.cores}.parquet")
        for ratio, penalty in itertools.product(args.removal_ratios, args.penalties):
            selection = select(pool, args.budget, "bilaf", seed=repeat, cores=cores, removal_ratio=ratio,
                               opponent_penalty=penalty)
            score = probe_scores(pool, selection, val)
            print(json.dumps({"seed": repeat, "removal_ratio": ratio, "opponent_penalty": penalty, **score}), flush=True)
            differences.setdefault((ratio, penalty), []).append(
                (100 * (score["probe"] - whole["probe"]), 100 * (score["knn"] - whole["knn"])))
    print(f"\nK = {args.cores} of B = {args.budget} against K = B, validation accuracy difference "
          f"(points, mean ± std over {args.repeats} seeds): probe / kNN\n")
    print("| P_rm \\ δ | " + " | ".join(str(p) for p in args.penalties) + " |")
    print("| --- |" + " --- |" * len(args.penalties))
    for ratio in args.removal_ratios:
        cells = []
        for penalty in args.penalties:
            values = np.array(differences[ratio, penalty])
            cells.append(f"{values[:, 0].mean():+.1f} ± {values[:, 0].std():.1f} / "
                         f"{values[:, 1].mean():+.1f} ± {values[:, 1].std():.1f}")
        print(f"| {ratio} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
