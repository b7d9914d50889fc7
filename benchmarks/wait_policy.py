"""Thread defaults under load: ``select --method activeft`` with OpenMP's waiting unset (libgomp's
default), active, passive, or passive after a bounded spin, on a quiet machine and beside busy
processes (one per CPU), each a fresh process, medians of repeats.

    python -m benchmarks.wait_policy --count 5000 --budget 100 --repeats 2
    python -m benchmarks.wait_policy --policies ACTIVE PASSIVE spin:10000 spin:50000

A policy ``spin:N`` is ``OMP_WAIT_POLICY=PASSIVE`` with ``GOMP_SPINCOUNT=N``: libgomp's threads
spin ``N`` times (about 100,000 per millisecond, by libgomp's own estimate) before they sleep.
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


def policy_environment(policy: str) -> dict:
    """The environment of a policy: ``unset`` leaves the wait policy out (libgomp's own default:
    spin about 3 ms, then sleep), ``spin:N`` sleeps after ``N`` spins, others name the policy."""
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    if policy == "unset":
        return {**env, "OMP_WAIT_POLICY": ""}  # an empty value: libgomp ignores it, and the CLI keeps it
    if policy.startswith("spin:"):
        return {**env, "OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": str(int(policy[5:]))}
    return {**env, "OMP_WAIT_POLICY": policy}


def policy_name(text: str) -> str:
    """An argparse type: ``unset``, ``ACTIVE``, ``PASSIVE`` or ``spin:N`` with ``N`` a count >= 0."""
    count = text[5:] if text.startswith("spin:") else None
    if text in ("unset", "ACTIVE", "PASSIVE") or (count is not None and count.isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: expected unset, ACTIVE, PASSIVE or spin:N (N a whole number)")


def timed_select(features: str, budget: int, policy: str, folder: str) -> float:
    """Wall time of one ``select`` process under ``policy`` (``policy_environment``)."""
    env = policy_environment(policy)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "active_finetuning.cli", "select", "--features", features, "--budget",
                    str(budget), "--method", "activeft", "--out", f"{folder}/selection.parquet", "--no-progress"],
                   check=True, env=env, capture_output=True)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", default=str(DATA / "features-train.parquet"))
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--policies", nargs="+", type=policy_name, default=["unset", "ACTIVE", "PASSIVE"],
                        help="unset, ACTIVE, PASSIVE or spin:N (PASSIVE after N spins)")
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
                for _ in range(args.repeats):  # policies interleaved: a drifting load hits them alike
                    for policy in args.policies:
                        seconds = timed_select(features, args.budget, policy, folder)
                        report["seconds"].setdefault(f"{load}/{policy}", []).append(round(seconds, 2))
                        print(load, policy, round(seconds, 2), file=sys.stderr, flush=True)
            finally:
                for hog in hogs:
                    hog.kill()
    report["medians"] = {k: round(statistics.median(v), 2) for k, v in report["seconds"].items()}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
