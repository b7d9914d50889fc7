"""Linear probe and kNN on the CIFAR-10 fixture features for selection methods × budgets × seeds.

For every (method, budget, seed) it selects from the train features (a selection file already in
``--selections`` is reused), trains the two classifiers of :func:`active_finetuning.training.evaluate.probe`
on the selected samples with oracle labels, and scores them on the 10,000 test features. Prints
mean ± sample standard deviation over seeds (BiLAF's paper, Table 10, reports both classifiers).

    python -m experiments.probe_study --json outputs/probe-study.json
    python -m experiments.probe_study --methods random kmeans --budgets 250 500 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from experiments.common import DATA



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features-train", default=str(DATA / "features-train.parquet"))
    parser.add_argument("--features-test", default=str(DATA / "features-test.parquet"))
    parser.add_argument("--methods", nargs="+", default=["random", "activeft"])
    parser.add_argument("--budgets", nargs="+", type=int, default=[250, 500, 1000])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--selections", default="outputs/probe-study", help="folder caching the selections")
    parser.add_argument("--reuse", nargs="*", default=[],
                        help="read-only folders of selections named <method>-b<budget>-s<seed>.parquet (e.g. "
                             "budget_study.py's cache) used before selecting anew; same inputs, same selection")
    parser.add_argument("--cached-only", action="store_true",
                        help="score only cells whose selection is cached; list the others as missing")
    parser.add_argument("--json", help="write every run and the summary here")
    args = parser.parse_args()

    from active_finetuning.data.artifacts import read_features, read_selection, write_selection
    from active_finetuning.training.probe import probe
    from active_finetuning.selection import select

    train = read_features(args.features_train)
    test = read_features(args.features_test)
    cache = Path(args.selections)
    identity = train.identity()
    runs, missing = [], []
    for method in args.methods:
        for budget in args.budgets:
            for seed in args.seeds:
                name = f"{method}-b{budget}-s{seed}.parquet"
                found = [Path(d) / name for d in [cache, *args.reuse] if (Path(d) / name).exists()]
                started = time.perf_counter()
                if found:
                    path = found[0]
                    selection, seconds = read_selection(str(path), pool=train), recorded_seconds(path)
                    check_parameters(selection, method, budget, seed, identity, path)
                elif args.cached_only:
                    missing.append(name)
                    continue
                else:
                    path = cache / name
                    selection = select(train, budget, method, seed=seed, progress=False)
                    seconds = time.perf_counter() - started
                    write_selection(selection, str(path))
                metrics = probe(train, selection, test)
                run = {"method": method, "budget": budget, "seed": seed, "select_seconds": seconds,
                       "linear_probe": metrics["linear_probe"]["top1"], "knn": metrics["knn"]["top1"],
                       "classes_covered": metrics["labeled_classes"]}
                runs.append(run)
                print(json.dumps(run), flush=True)
    summary = summarise(runs)
    print(table(summary))
    if missing:
        print(f"not cached, not scored: {', '.join(missing)}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"runs": runs, "summary": summary, "missing": missing}, indent=2) + "\n")


def recorded_seconds(path: Path) -> float | None:
    """The selection wall time stored beside a cached selection (``<name>.json``), if any."""
    sidecar = path.with_suffix(".json")
    if sidecar.exists():
        return json.loads(sidecar.read_text()).get("seconds")
    return None


def check_parameters(selection, method: str, budget: int, seed: int, identity: str, path: Path) -> None:
    """A reused selection must be the one this study would make: same method, budget, seed, features."""
    meta = selection.metadata
    found = (meta.get("method"), meta.get("budget"), meta.get("seed"), meta.get("features_identity"))
    if found != (method, budget, seed, identity):
        raise SystemExit(f"{path} holds (method, budget, seed, features) {found}; expected "
                         f"{(method, budget, seed, identity)}")


def summarise(runs: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["method"], run["budget"]), []).append(run)
    rows = []
    for (method, budget), members in groups.items():
        row = {"method": method, "budget": budget, "seeds": len(members)}
        for key in ("linear_probe", "knn"):
            values = 100 * np.asarray([m[key] for m in members])
            row[key] = [round(float(values.mean()), 2), round(float(values.std(ddof=1)) if len(values) > 1 else 0.0, 2)]
        seconds = [m["select_seconds"] for m in members if m["select_seconds"] is not None]
        row["select_seconds_median"] = round(float(np.median(seconds)), 1) if seconds else None
        rows.append(row)
    return rows


def table(summary: list[dict]) -> str:
    lines = ["| method | budget | linear probe top-1 % | kNN top-1 % | seeds | selection s (median) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for row in summary:
        lines.append(f"| {row['method']} | {row['budget']} | {row['linear_probe'][0]:.1f} ± {row['linear_probe'][1]:.1f} "
                     f"| {row['knn'][0]:.1f} ± {row['knn'][1]:.1f} | {row['seeds']} | {row['select_seconds_median']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
