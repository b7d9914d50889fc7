"""``active-finetuning select``: features in, selection artifact out."""

from __future__ import annotations

import argparse
import sys

from ._runtime import ReadAhead, apply_threads

# checked before any work by cli.main: where this command writes, and what it must not overwrite
OUTPUTS = {"out": "file", "param_graph_cache": "folder"}
INPUTS = ("features", "labeled")

_read_ahead: ReadAhead | None = None


def prefetch(argv: list[str]) -> None:
    """Start reading the features file before the parser imports the selectors (and torch): each
    takes 1–2 s for 50,000 × 1,280 features, and pyarrow decodes without holding the GIL, so on two
    CPUs the two overlap. ``run`` checks that it asks for the same file; errors surface there."""
    global _read_ahead
    from ..data.artifacts import read_table

    peek = argparse.ArgumentParser(add_help=False)
    peek.add_argument("--features")
    known, _ = peek.parse_known_args(argv)
    if known.features:
        _read_ahead = ReadAhead(read_table, known.features, "features")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..selection.registry import get_selector, list_selectors

    parser.add_argument("--features", required=True, help="features artifact (Parquet) URI")
    parser.add_argument("--budget", required=True, help="sample count (500) or percentage of the pool (1%%)")
    parser.add_argument("--out", required=True, help="selection artifact (Parquet) URI to write")
    parser.add_argument("--method", default="activeft", choices=list_selectors())
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--labeled", help="artifact with a sample_id column: ids already annotated")
    parser.add_argument("--threads", type=int, help="torch threads (default: the CPUs this process may use: affinity and cgroup quota)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    group = parser.add_argument_group("method parameters (each method accepts its own; see `methods`)")
    flags: dict[str, list[str]] = {}
    for method in list_selectors():
        for declared in get_selector(method).params_class.declarations():
            flags.setdefault(declared["name"], []).append(
                f"{method}: {declared['help'] or declared['allowed']} (default {declared['default']!r})")
    for name, helps in flags.items():
        group.add_argument(f"--{name.replace('_', '-')}", dest=f"param_{name}", default=None, nargs="?",
                           const="true", metavar="VALUE", help="; ".join(helps).replace("%", "%%"))


def run(args: argparse.Namespace) -> int:
    from ..data.artifacts import read_features, read_sample_ids, write_selection
    from ..selection import select

    apply_threads(args)
    params = {k[len("param_"):]: v for k, v in vars(args).items() if k.startswith("param_") and v is not None}
    ahead = _read_ahead if _read_ahead is not None and _read_ahead.args[0] == args.features else None
    features = read_features(args.features, table=ahead.result() if ahead else None)
    labeled = read_sample_ids(args.labeled, "labeled set") if args.labeled else None
    selection = select(features, args.budget, args.method, seed=args.seed, labeled=labeled,
                       progress=not args.no_progress, **params)
    write_selection(selection, args.out)
    print(summary(selection, features), file=sys.stdout)
    print(f"wrote {args.out}")
    return 0


def summary(selection, features) -> str:
    import numpy as np

    meta = selection.metadata
    lines = [
        f"method {meta['method']}: {len(selection)} of {meta['pool_size']} samples "
        f"({100 * len(selection) / meta['pool_size']:.2f}%), seed {meta['seed']}, {selection.seconds:.1f} s",
    ]
    roles, counts = np.unique(selection.role.astype(str), return_counts=True)
    lines.append("roles: " + ", ".join(f"{r} {c}" for r, c in zip(roles, counts)))
    if features.labels is not None:
        picked = features.labels[selection.indices]
        classes = len(np.unique(features.labels))
        lines.append(f"classes covered: {len(np.unique(picked))} of {classes} (labels are not used to select)")
    if "final_loss" in meta.get("info", {}):
        lines.append(f"final loss {meta['info']['final_loss']:.6f}")
    lines.append("first picks: " + ", ".join(map(str, selection.sample_ids[:5])))
    return "\n".join(lines)
