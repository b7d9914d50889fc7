"""How many BiLAF cores (K) to use: a grid of K × budget on a validation split of the training pool.

    python -m experiments.core_count_validation run --train ../shared/data/cifar10/features-train.parquet
    python -m experiments.core_count_validation report

The test set is never read. The training features are shuffled once (seed 0); the first
``--validation`` rows are the validation set (scored with their labels), and the rest is cut into
``--pools`` disjoint pools of ``--pool-size`` rows (one seed per pool, or ``--repeats`` seeds each).
On each pool, ActiveFT selects K cores for every K of the grid (each core set computed once, reused
for every budget through BiLAF's ``cores`` parameter, exactly what BiLAF computes itself with the
same seed), then BiLAF selects each budget B > K from those cores; K = B is ActiveFT itself. Every
selection is scored by the linear probe and the kNN classifier of the evaluation layer on the
validation set.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from experiments.common import DATA, ROOT, probe_scores, validation_pools

def command_run(args) -> None:
    import torch

    from active_finetuning.data.artifacts import read_features, write_selection
    from active_finetuning.selection import select

    torch.set_num_threads(args.threads)
    cache = Path(args.cache)
    results_path = cache / "scores.json"
    scores = json.loads(results_path.read_text()) if results_path.exists() else {}
    val, pools = validation_pools(read_features(args.train), args.validation, args.pools, args.pool_size)
    runs = [(f"pool{p}" + (f"r{r}" if r else ""), p + r * len(pools), pool)
            for p, pool in enumerate(pools) for r in range(args.repeats)]
    for name, seed, pool in runs:
        for cores in args.cores:
            core_path = cache / f"{name}-activeft-k{cores}.parquet"
            key = f"{name}-k{cores}-b{cores}"
            if key not in scores:
                selection = select(pool, cores, "activeft", seed=seed)
                write_selection(selection, str(core_path))
                scores[key] = probe_scores(pool, selection, val)
                results_path.write_text(json.dumps(scores, indent=1, sort_keys=True))
                print(key, scores[key], flush=True)
            for budget in args.budgets:
                key = f"{name}-k{cores}-b{budget}"
                if budget <= cores or key in scores:
                    continue
                selection = select(pool, budget, "bilaf", seed=seed, cores=str(core_path))
                scores[key] = probe_scores(pool, selection, val)
                results_path.write_text(json.dumps(scores, indent=1, sort_keys=True))
                print(key, scores[key], flush=True)


def command_report(args) -> None:
    scores = {}
    for cache in [args.cache, *args.also]:
        scores.update(json.loads((Path(cache) / "scores.json").read_text()))
    grouped: dict = {}
    for key, value in scores.items():
        _, k, b = key.split("-")
        grouped.setdefault((int(k[1:]), int(b[1:])), []).append(value)
    budgets = sorted({b for _, b in grouped})
    ks = sorted({k for k, _ in grouped})
    for metric in ("probe", "knn"):
        print(f"\nvalidation {metric} accuracy (%), mean ± std over pools; K = B is ActiveFT\n")
        print("| K \\ B | " + " | ".join(str(b) for b in budgets) + " |")
        print("| --- |" + " --- |" * len(budgets))
        for k in ks:
            cells = []
            for b in budgets:
                runs = grouped.get((k, b))
                if not runs:
                    cells.append("–")
                    continue
                values = [100 * r[metric] for r in runs]
                cells.append(f"{np.mean(values):.1f} ± {np.std(values):.1f}" + ("" if len(runs) == 3 else f" (n={len(runs)})"))
            print(f"| {k} | " + " | ".join(cells) + " |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=("run", "report"))
    parser.add_argument("--train", default=str(DATA / "features-train.parquet"))
    parser.add_argument("--cache", default=str(ROOT / "outputs" / "core_count"))
    parser.add_argument("--validation", type=int, default=10_000)
    parser.add_argument("--pools", type=int, default=3)
    parser.add_argument("--pool-size", type=int, default=10_000)
    parser.add_argument("--cores", default="5,10,25,50,100,200,500", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--budgets", default="50,100,200,500", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--repeats", type=int, default=1,
                        help="seeds per pool: pool p runs seeds p, p + pools, p + 2·pools, …")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--also", nargs="*", default=[], help="more caches to merge in the report")
    args = parser.parse_args(argv)
    {"run": command_run, "report": command_report}[args.stage](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
