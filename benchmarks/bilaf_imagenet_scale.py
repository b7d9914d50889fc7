"""BiLAF at ImageNet scale on one CPU machine: time per stage and peak memory.

1,281,167 synthetic unit features of d = 384 from a mixture of 1,000 Gaussian clusters, K = 6,405
cores (0.5%), B = 12,811 (1%), ActiveFT core stage in its stochastic ``pool_batch`` mode
(docs/methods.md §2.7, §3.8). The official code would need a 65 GB dense N×K matrix here (§3.9).

    python -m benchmarks.bilaf_imagenet_scale                      # the full run (many minutes)
    python -m benchmarks.bilaf_imagenet_scale --core-selector random     # the BiLAF stages alone
    python -m benchmarks.bilaf_imagenet_scale --pool 128000 --num-cores 640 --budget 1281 --core-iterations 5
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time

import numpy as np
import torch

from active_finetuning.selection import activeft
from active_finetuning.selection.api import Pool
from active_finetuning.selection.bilaf import BilafParams, run_bilaf


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is KiB on Linux


def synthetic_pool(size: int, dim: int, clusters: int, spread: float, seed: int) -> torch.Tensor:
    """Unit rows from a Gaussian mixture, generated in chunks straight into one float32 buffer."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, dim), dtype=np.float32)
    features = np.empty((size, dim), dtype=np.float32)
    step = 100_000
    for start in range(0, size, step):
        stop = min(size, start + step)
        labels = rng.integers(0, clusters, stop - start)
        block = centers[labels] + spread * rng.standard_normal((stop - start, dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        features[start:stop] = block
    return torch.from_numpy(features)


def time_the_snapping(record: dict) -> None:
    """Report ActiveFT's final snapping apart from its fit: seconds, and the peak memory so far
    (so through the whole core stage)."""
    snap = activeft.snap_to_unique_samples

    def timed(*args, **kwargs):
        started = time.perf_counter()
        picks = snap(*args, **kwargs)
        record["cores_snap_seconds"] = round(time.perf_counter() - started, 1)
        record["peak_rss_after_cores_gib"] = round(peak_rss_gib(), 2)
        return picks

    activeft.snap_to_unique_samples = timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=1_281_167)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--spread", type=float, default=0.5)
    parser.add_argument("--num-cores", type=int, default=6405)
    parser.add_argument("--budget", type=int, default=12_811)
    parser.add_argument("--core-iterations", type=int, default=100,
                        help="ActiveFT iterations (C1's ImageNet script default: 100)")
    parser.add_argument("--pool-batch", type=int, default=100_000)
    parser.add_argument("--core-selector", default="activeft",
                        help="'random' times the BiLAF stages alone (cores given)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the result as JSON to this path")
    args = parser.parse_args()

    started = time.perf_counter()
    features = synthetic_pool(args.pool, args.dim, args.clusters, args.spread, args.seed)
    generated = time.perf_counter() - started
    memory_after_data = peak_rss_gib()
    pool = Pool(features, np.zeros(0, dtype=np.int64))
    core_params = (f"iterations={args.core_iterations},pool_batch={args.pool_batch}"
                   if args.core_selector == "activeft" else None)
    params = BilafParams(num_cores=args.num_cores, core_selector=args.core_selector, core_params=core_params)
    timings: dict[str, float] = {}
    core_stage: dict[str, float] = {}
    time_the_snapping(core_stage)
    started = time.perf_counter()
    picks = run_bilaf(pool, args.budget, params, seed=args.seed, progress=True, timings=timings)
    total = time.perf_counter() - started
    roles, counts = np.unique(picks.role.astype(str), return_counts=True)
    result = {
        "pool": args.pool, "dim": args.dim, "num_cores": args.num_cores, "budget": args.budget,
        "core_selector": args.core_selector, "core_params": core_params,
        "picks": int(len(picks.indices)), "distinct": int(len(np.unique(picks.indices))),
        "roles": dict(zip(roles.tolist(), counts.tolist())),
        "seconds": {"generate": round(generated, 1), **{k: round(v, 1) for k, v in timings.items()},
                    "bilaf_total": round(total, 1)},
        **core_stage,
        "peak_rss_gib": round(peak_rss_gib(), 2), "rss_after_data_gib": round(memory_after_data, 2),
        "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
