"""``active-finetuning diagnose``: label-free coverage diagnostics of a selection, JSON and a PNG plot."""

from __future__ import annotations

import argparse


# checked before any work by cli.main: where this command writes, and what it must not overwrite
OUTPUTS = {"out": "folder"}
INPUTS = ("features", "selection", "labeled")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--features", required=True, help="features artifact (Parquet) URI of the pool")
    parser.add_argument("--selection", required=True, help="selection artifact (Parquet) URI")
    parser.add_argument("--out", help="directory for diagnostics.json and diagnostics.png (default: print only)")
    parser.add_argument("--labeled", help="artifact with a sample_id column: ids already annotated (count as covering)")
    parser.add_argument("--clusters", type=int, help="pseudo-classes for the share (default: the selection size)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the k-means and the plot's subsample")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")


def run(args: argparse.Namespace) -> int:
    import json

    from ..data.artifacts import read_features, read_sample_ids, read_selection
    from ..errors import InputError
    from ..study import diagnostics

    if args.clusters is not None and args.clusters < 1:
        raise InputError(f"--clusters must be at least 1, got {args.clusters}")
    if args.seed < 0:
        raise InputError(f"--seed must be a non-negative integer, got {args.seed}")
    pool = read_features(args.features)
    selection = read_selection(args.selection)
    labeled = read_sample_ids(args.labeled, "labeled set") if args.labeled else None
    report = diagnostics.diagnose(pool, selection, labeled=labeled, seed=args.seed, clusters=args.clusters)
    print(diagnostics.summary(report))
    if args.out:
        out = args.out.rstrip("/")
        if not args.no_plot:
            diagnostics.plot(pool, selection, f"{out}/diagnostics.png", labeled=labeled, seed=args.seed)
        diagnostics.write_report(report, f"{out}/diagnostics.json")
        print(f"wrote {out}/diagnostics.json" + ("" if args.no_plot else f" and {out}/diagnostics.png"))
    else:
        print(json.dumps(report["metrics"], sort_keys=True))
    return 0
