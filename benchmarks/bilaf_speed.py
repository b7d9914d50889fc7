"""BiLAF boundary stage on the CIFAR-10 fixture: ours against the loop-shaped oracle, same process.

K = 250 cores are computed once (ActiveFT, or read from ``--cores``), then for each budget the
stages after the core selection (assignment, IDC denoising, budget split, boundary selection) run
in the dense per-candidate-loop oracle (``tests/oracles/bilaf_dense.py``, the shape of the official
code) and in the library, in reference-compat mode (the same list is expected; float rounding in
distances can flip near-ties, so shared picks are reported) and in the default paper mode.

    python -m benchmarks.bilaf_speed --features ../shared/data/cifar10/features-train.parquet
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from active_finetuning.data.artifacts import read_features, read_selection, rows_of
from active_finetuning.selection import select
from active_finetuning.selection.api import unit_rows
from active_finetuning.selection.bilaf import BilafParams, boundary_selection
from tests.oracles.bilaf_dense import dense_bilaf


def timed(fn, cpu: list | None = None):
    """Run ``fn``: its value and wall seconds; its process CPU seconds are appended to ``cpu``."""
    started, cpu_started = time.perf_counter(), time.process_time()
    value = fn()
    if cpu is not None:
        cpu.append(time.process_time() - cpu_started)
    return value, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", default="../shared/data/cifar10/features-train.parquet")
    parser.add_argument("--cores", help="selection artifact holding the K cores (default: run ActiveFT)")
    parser.add_argument("--save-cores", help="write the computed cores here for later runs")
    parser.add_argument("--num-cores", type=int, default=250)
    parser.add_argument("--core-iterations", type=int, default=300)
    parser.add_argument("--budgets", default="1000,2500")
    parser.add_argument("--repeats", type=int, default=3, help="runs of the library per budget and mode")
    parser.add_argument("--oracle-repeats", type=int, default=1)
    parser.add_argument("--json", help="also write the results as JSON to this path")
    args = parser.parse_args()

    table = read_features(args.features)
    unit = unit_rows(table.features)
    if args.cores:
        cores = rows_of(table, read_selection(args.cores).sample_ids, what="cores")
        core_seconds = None
    else:
        selection, core_seconds = timed(lambda: select(table, args.num_cores, "activeft", seed=0,
                                                       iterations=args.core_iterations))
        cores = selection.indices
        if args.save_cores:
            from active_finetuning.data.artifacts import write_selection

            write_selection(selection, args.save_cores)
    results = {"pool": len(table), "dim": table.dim, "num_cores": len(cores), "core_seconds": core_seconds,
               "threads": torch.get_num_threads(), "budgets": {}}
    for budget in [int(b) for b in args.budgets.split(",")]:
        oracle_cpu: list[float] = []
        oracle_runs = [timed(lambda: dense_bilaf(unit.numpy(), cores, budget), oracle_cpu)
                       for _ in range(args.oracle_repeats)]
        expected = oracle_runs[0][0]
        entry = {"oracle_seconds": statistics.median(t for _, t in oracle_runs),
                 "oracle_cpu_seconds": statistics.median(oracle_cpu)}
        for mode, params in (("compat", BilafParams(reference_compat=True)), ("default", BilafParams())):
            runs, cpu = [], []
            for _ in range(args.repeats):
                stages: dict[str, float] = {}
                picks, seconds = timed(lambda: boundary_selection(unit, cores, budget, params, timings=stages), cpu)
                runs.append((seconds, stages, picks.indices.tolist()))
            median = statistics.median(r[0] for r in runs)
            picks = runs[0][2]
            entry[mode] = {
                "seconds": median,
                "stages": {k: statistics.median(r[1][k] for r in runs) for k in runs[0][1]},
                "speedup_vs_oracle": entry["oracle_seconds"] / median,
                "cpu_seconds": statistics.median(cpu),
                "cpu_speedup_vs_oracle": entry["oracle_cpu_seconds"] / statistics.median(cpu),
                "shared_picks_pct": 100 * len(set(picks) & set(expected)) / budget,
                "same_list": picks == expected,
                "deterministic": all(r[2] == picks for r in runs),
            }
        results["budgets"][budget] = entry
        print(json.dumps({budget: entry}, indent=2), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
