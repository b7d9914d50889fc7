"""Thread defaults under load: ``select --method activeft`` with OpenMP's waiting unset (libgomp's
default), active and passive, on a quiet machine and beside busy processes (one per CPU), each a
fresh process, medians of repeats.

    python -m benchmarks.wait_policy --count 5000 --budget 100 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from experiments.common import DATA


def timed_select(features: str, budget: int, policy: str, folder: str) -> float:
    """Wall time of one ``select`` process; policy ``unset`` leaves the variable out (libgomp's own
    default: spin a while, then sleep), which the CLI no longer does unless the user sets it."""
    env = {**os.environ, "OMP_WAIT_POLICY": policy}
    if policy == "unset":
        env["OMP_WAIT_POLICY"] = ""  # an empty value: libgomp ignores it, and the CLI keeps it
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "active_finetuning.cli", "select", "--features", features, "--budget",
                    str(budget), "--method", "activeft", "--out", f"{folder}/s-{policy}.parquet", "--no-progress"],
                   check=True, env=env, capture_output=True)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", default=str(DATA / "features-train.parquet"))
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    import numpy as np

    from active_finetuning.data.artifacts import FeatureTable, read_features, write_features
    from active_finetuning.resources import available_cpus

    pool = read_features(args.features)
    rows = np.sort(np.random.default_rng(0).choice(len(pool), args.count, replace=False))
    report: dict = {"cpus": available_cpus(), "count": args.count, "budget": args.budget, "seconds": {}}
    with tempfile.TemporaryDirectory() as folder:
        features = f"{folder}/pool.parquet"
        write_features(FeatureTable(pool.sample_ids[rows], pool.features[rows], pool.labels[rows], pool.metadata),
                       features)
        for load in ("quiet", "busy"):
            hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(available_cpus())] \
                if load == "busy" else []
            try:
                for policy in ("unset", "ACTIVE", "PASSIVE"):
                    times = [timed_select(features, args.budget, policy, folder) for _ in range(args.repeats)]
                    report["seconds"][f"{load}/{policy}"] = [round(t, 2) for t in times]
                    print(load, policy, times, file=sys.stderr, flush=True)
            finally:
                for hog in hogs:
                    hog.kill()
    report["medians"] = {k: round(statistics.median(v), 2) for k, v in report["seconds"].items()}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
