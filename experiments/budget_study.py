"""Budget study: every selector × budget × seed on pool features, scored by a probe and kNN.

    python -m experiments.budget_study select --methods random,kmeans --budgets 250,500 --seeds 0,1,2
    python -m experiments.budget_study evaluate
    python -m experiments.budget_study report --plot experiments/budget_study.png

``select`` caches one selection artifact per (method, budget, seed) under ``--cache`` (default
``outputs/budget_study``) with its wall time beside it, and skips what is cached, so the grid can run
in pieces and in the background. ``evaluate`` scores every cached selection: a logistic-regression
probe on standardised features and a cosine kNN classifier, both trained on the selected samples with
their ground-truth labels (oracle annotation) and scored on the test features (the evaluation
layer's ``linear_probe``: logistic regression, C = 0.5, on standardised features; ``knn_scores``:
20 neighbours by cosine, votes weighted by exp(cos / 0.07)). ``report`` prints the
mean ± std table (Markdown) and draws accuracy against budget.

Paths default to the CIFAR-10 fixture beside the checkout (``../shared/data/cifar10``).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from experiments.common import DATA, ROOT, probe_scores  # the evaluation layer's probe and kNN

METHODS = ("random", "kmeans", "kcenter", "typiclust", "probcover", "probcover-val", "activeft", "bilaf",
           "bilaf-all-cores", "bilaf-2pct", "bilaf-paper")
PROBCOVER_VALIDATED_DELTA = 0.8


def _key(method: str, budget: int, seed: int) -> str:
    return f"{method}-b{budget}-s{seed}"


def command_select(args) -> None:
    import torch

    from active_finetuning.data.artifacts import read_features, write_selection
    from active_finetuning.selection import select

    torch.set_num_threads(args.threads)
    pool = read_features(args.train)
    out = Path(args.cache) / "selections"
    for budget in args.budgets:
        for seed in args.seeds:
            for method in args.methods:
                key = _key(method, budget, seed)
                path = out / f"{key}.parquet"
                if path.exists():
                    continue
                reused = [Path(d) / path.name for d in args.reuse if (Path(d) / path.name).exists()]
                if reused:  # the same selection made elsewhere (same name = method, budget, seed)
                    _check_reused(reused[0], method, budget, seed, pool)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(reused[0], path)
                    (out / f"{key}.json").write_text(json.dumps({"seconds": None, "reused": True}))
                    print(f"{key}: reused", flush=True)
                    continue
                name, params, core_seconds = method_params(method, budget, seed, len(pool), out, args.cache)
                selection = select(pool, budget, name, seed=seed, progress=args.progress, **params)
                write_selection(selection, str(path))
                # reused cores without a time (made elsewhere): the total is unknown, keep the stage's own
                total = None if core_seconds is None else selection.seconds + core_seconds
                (out / f"{key}.json").write_text(json.dumps({"seconds": total, "stage_seconds": selection.seconds,
                                                             "threads": args.threads,
                                                             "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}))
                print(f"{key}: {selection.seconds:.1f} s", flush=True)


def _check_reused(path: Path, method: str, budget: int, seed: int, pool) -> None:
    from active_finetuning.data.artifacts import read_selection

    meta = read_selection(str(path)).metadata
    same = (meta.get("method"), meta.get("budget"), meta.get("seed"), meta.get("features_identity"))
    if same != (method, budget, seed, pool.identity()):
        raise SystemExit(f"{path} is not {method} budget {budget} seed {seed} on these features: {same}")


def method_params(method: str, budget: int, seed: int, pool_size: int, selections: Path, cache: str):
    """(registered name, parameters, seconds already spent on reused cores, None if unknown) of a study method.

    Defaults everywhere, except: ProbCover keeps its ball graph between runs on the same pool;
    BiLAF's ActiveFT cores are read from the cached ActiveFT selection of the same size and seed
    when there is one (the rows BiLAF would compute itself: same method, pool, count and seed), and
    their time is added to BiLAF's. ``bilaf`` is the default (the paper's 0.5% of the pool, at most
    half the budget); ``bilaf-paper`` is BiLAF with the paper's CIFAR10 K = 0.1% of the pool;
    ``bilaf-all-cores`` spends the whole budget on cores (K = B, the default until 2026-11-30);
    ``bilaf-2pct`` the default before that, K = min(B, ⌈2% of the pool⌉); ``probcover-val`` is
    ProbCover with the δ chosen on the validation split instead of the purity heuristic.
    """
    from active_finetuning.selection.core_count import resolve_num_cores

    if method == "probcover":
        return "probcover", {"graph_cache": str(Path(cache) / "graphs")}, 0.0
    if method == "probcover-val":  # δ chosen on the validation split (probcover_delta_validation.py)
        return "probcover", {"graph_cache": str(Path(cache) / "graphs"), "delta": PROBCOVER_VALIDATED_DELTA}, 0.0
    if method.startswith("bilaf"):
        cores = {"bilaf": resolve_num_cores(None, pool_size, budget), "bilaf-all-cores": budget,
                 "bilaf-2pct": min(budget, math.ceil(pool_size * 0.02)),
                 "bilaf-paper": max(1, int(pool_size * 0.001))}[method]
        params = {"num_cores": cores}
        cached = selections / f"{_key('activeft', cores, seed)}.parquet"
        if cached.exists():
            timing = json.loads(cached.with_suffix(".json").read_text())
            return "bilaf", {"cores": str(cached)}, timing["seconds"]
        return "bilaf", params, 0.0
    return method, {}, 0.0


def command_evaluate(args) -> None:
    from active_finetuning.data.artifacts import read_features, read_selection

    train = read_features(args.train)
    test = read_features(args.test)
    results_path = Path(args.cache) / "scores.json"
    scores = json.loads(results_path.read_text()) if results_path.exists() else {}
    for path in sorted((Path(args.cache) / "selections").glob("*.parquet")):
        key = path.stem
        if key in scores:
            continue
        selection = read_selection(str(path), pool=train)
        accuracy = {metric: value for metric, value in probe_scores(train, selection, test).items() if metric != "seconds"}
        timing = json.loads(path.with_suffix(".json").read_text())
        scores[key] = {**accuracy, "seconds": timing["seconds"], "threads": timing.get("threads")}
        results_path.write_text(json.dumps(scores, indent=1, sort_keys=True))
        print(key, {k: round(v, 4) for k, v in accuracy.items()}, flush=True)


def load_scores(cache: str) -> dict:
    path = Path(cache) / "scores.json"
    return json.loads(path.read_text()) if path.exists() else {}


def times(scores: dict) -> dict:
    """{(method, budget): (mean seconds, timed runs)}; reused selections have no time."""
    grouped: dict = {}
    for key, value in scores.items():
        method, budget, _ = key.rsplit("-", 2)
        if value["seconds"] is not None:
            grouped.setdefault((method, int(budget[1:])), []).append(value["seconds"])
    return {group: (float(np.mean(values)), len(values)) for group, values in grouped.items()}


def accuracy_rows(scores: dict, metric: str, budgets) -> list[dict]:
    """One row per selection, as the library's study report takes them."""
    rows = []
    for key, value in scores.items():
        method, budget, seed = key.rsplit("-", 2)
        if int(budget[1:]) in budgets:
            rows.append({"method": method, "budget": budget[1:], "budget_count": int(budget[1:]),
                         "seed": int(seed[1:]), "accuracy": value[metric]})
    return rows


def command_report(args) -> None:
    """The tables and plot of the library's study report (mean ± std over seeds), and the times."""
    import matplotlib.pyplot as plt

    from active_finetuning.study.report import accuracy_figure, accuracy_table, markdown_table

    scores = load_scores(args.cache)
    tables = {}
    for metric, title in (("probe", "linear probe"), ("knn", "weighted 20-NN")):
        tables[metric] = accuracy_table(accuracy_rows(scores, metric, set(args.budgets)))
        print(f"\n{title}\n\n{markdown_table(tables[metric])}")
    timed = times(scores)
    budgets = sorted(tables["probe"]["budget_count"].unique())
    print("selection time (s), mean over the timed runs (n = runs with a time)\n")
    print("| method | " + " | ".join(str(b) for b in budgets) + " |")
    print("| --- |" + " --- |" * len(budgets))
    for method in sorted(tables["probe"]["method"].unique()):
        cells = [f"{timed[method, b][0]:.0f}" + ("" if timed[method, b][1] == 3 else f" (n={timed[method, b][1]})")
                 if (method, b) in timed else "–" for b in budgets]
        print(f"| {method} | " + " | ".join(cells) + " |")
    if args.plot:
        figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        accuracy_figure(tables["probe"], axis=axes[0], title="linear probe")
        accuracy_figure(tables["knn"], axis=axes[1], title="20-NN")
        figure.tight_layout()
        figure.savefig(args.plot, dpi=110)
        plt.close(figure)
        print(f"\nplot: {args.plot}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=("select", "evaluate", "report"))
    parser.add_argument("--train", default=str(DATA / "features-train.parquet"))
    parser.add_argument("--test", default=str(DATA / "features-test.parquet"))
    parser.add_argument("--cache", default=str(ROOT / "outputs" / "budget_study"))
    parser.add_argument("--methods", default=",".join(METHODS), type=lambda s: s.split(","))
    parser.add_argument("--budgets", default="250,500,1000,2500", type=lambda s: [int(b) for b in s.split(",")])
    parser.add_argument("--seeds", default="0,1,2", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--threads", type=int, default=1, help="torch threads for selection (default 1)")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--reuse", nargs="*", default=[],
                        help="folders of selections named <method>-b<budget>-s<seed>.parquet to reuse (select stage)")
    parser.add_argument("--plot", help="PNG path for the accuracy-vs-budget plot (report stage)")
    args = parser.parse_args(argv)
    {"select": command_select, "evaluate": command_evaluate, "report": command_report}[args.stage](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
