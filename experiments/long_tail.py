"""Selection on a long-tailed pool: which methods leave whole classes unlabeled?

    python -m experiments.long_tail --json outputs/long-tail.json
    python -m experiments.long_tail --json outputs/long-tail.json --finetune-seeds 0 --out outputs/long_tail

CIFAR-10-LT is built the standard way (Cui et al., CVPR 2019) from the training features of the
CIFAR-10 fixture: class c keeps its first ``5000 · (1/100)^(c/9)`` samples (imbalance ratio 100:
5,000 down to 50, 12,406 in all). Every method selects 1% and 2% of that pool, without labels; the
selection is scored by the evaluation layer's linear probe on the balanced 10,000 test features.
Reported per method and budget (mean over seeds): classes with no pick at all, the rarest class's
picks, balanced accuracy (mean per-class recall: the test set is balanced) and macro-F1.

With ``--finetune-seeds``, the same picks (the cells of those seeds) are also labeled from the ground truth
and finetune ``tf_efficientnet_lite0`` with the finetuning study's recipe (``--recipe``), scored on the
10,000 test images: the papers' consumer beside the probe. Each finetuned cell is cached under ``--out``.
``--class-weight balanced`` gives both consumers scikit-learn's balanced class weights (the probe's
logistic regression and the finetune's cross-entropy): each class weighs as much as the others.

    python -m experiments.long_tail --json outputs/long-tail-balanced.json --finetune-seeds 0 --class-weight balanced
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from experiments.common import DATA

METHODS = ["random", "kmeans", "typiclust", "activeft", "bilaf", "maxherding"]


def long_tail(train, ratio: float = 100.0, largest: int = 5000):
    """The first ``largest · ratio^(-c / (C − 1))`` samples of every class c, in pool order."""
    from active_finetuning.data.artifacts import FeatureTable

    classes = int(train.labels.max()) + 1
    keep = []
    for c in range(classes):
        rows = np.flatnonzero(train.labels == c)
        keep.append(rows[: int(largest * ratio ** (-c / (classes - 1)))])
    rows = np.sort(np.concatenate(keep))
    return FeatureTable(train.sample_ids[rows], train.features[rows], train.labels[rows], train.metadata)


def finetuned(picked, key: str, seed: int, args) -> dict:
    """Finetune on ``picked`` (oracle labels) with the study's recipe; the test scores, cached by ``key``."""
    from active_finetuning.data.manifest import read_manifest
    from active_finetuning.labels import oracle_labels
    from active_finetuning.training.evaluate import evaluate
    from active_finetuning.training.finetune import finetune
    from experiments.finetune_study import CANDIDATES, MODEL, WEIGHTS

    out = Path(args.out)
    weighting = "" if args.class_weight is None else f"-{args.class_weight}"
    cached = out / "cells" / f"{key}-{args.recipe}{weighting}.json"
    if cached.exists():
        return json.loads(cached.read_text())
    manifest, test = read_manifest(args.images), read_manifest(args.test_images)
    labels = oracle_labels(picked, manifest)
    recipe = {**CANDIDATES[args.recipe], "seed": seed, "class_weight": args.class_weight}
    model_dir = str(out / "models" / (key + weighting))
    started = time.perf_counter()
    finetune(manifest, labels, model=MODEL, weights=WEIGHTS, out=model_dir, progress=True, **recipe)
    seconds = time.perf_counter() - started
    scores = evaluate(model_dir, test, progress=False)
    recalls = [r for r in scores["per_class_accuracy"].values() if r is not None]
    result = {"top1": scores["top1"], "macro_f1": scores["macro_f1"], "balanced_accuracy": float(np.mean(recalls)),
              "per_class_accuracy": scores["per_class_accuracy"], "finetune_seconds": round(seconds, 1),
              "recipe": args.recipe, "class_weight": args.class_weight}
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(result, indent=1))
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", default=str(DATA / "features-train.parquet"))
    parser.add_argument("--test", default=str(DATA / "features-test.parquet"))
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--budgets", nargs="+", default=["1%", "2%"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--json", help="write every cell's figures here")
    parser.add_argument("--finetune-seeds", nargs="*", type=int, default=[],
                        help="also finetune on the picks of these seeds (slow: minutes per cell on a CPU)")
    parser.add_argument("--images", default=str(DATA / "images-train.parquet"))
    parser.add_argument("--test-images", default=str(DATA / "images-test.parquet"))
    parser.add_argument("--recipe", default="lr0.04-crop0.35-96", help="a recipe of experiments.finetune_study")
    parser.add_argument("--out", default="outputs/long_tail", help="finetuned models and cells")
    parser.add_argument("--class-weight", choices=["balanced"], default=None,
                        help="class weights of the probe and the finetune's loss (default: none)")
    args = parser.parse_args(argv)

    from active_finetuning.data.artifacts import read_features
    from active_finetuning.selection import select
    from active_finetuning.training.probe import ProbeParams, probe

    train, test = read_features(args.train), read_features(args.test)
    pool = long_tail(train)
    counts = np.bincount(pool.labels)
    print(f"CIFAR-10-LT pool: {len(pool)} samples, per class {counts.tolist()}")
    cells = []
    for method in args.methods:
        for budget in args.budgets:
            for seed in args.seeds:
                params = {"core_params": {"iterations": 300}} if method == "bilaf" else {}
                picked = select(pool, budget, method, seed=seed, **params)
                per_class = np.bincount(pool.labels[picked.indices], minlength=len(counts))
                result = probe(pool, picked, test, params=ProbeParams(class_weight=args.class_weight))
                scores = result["linear_probe"]
                recalls = [r for r in scores["per_class_accuracy"].values() if r is not None]
                cells.append({"method": method, "budget": budget, "seed": seed, "picks": int(len(picked)),
                              "per_class": per_class.tolist(), "empty_classes": int((per_class == 0).sum()),
                              "rarest_class_picks": int(per_class[-1]),
                              "balanced_accuracy": float(np.mean(recalls)),  # mean per-class recall
                              "macro_f1": float(scores["macro_f1"]), "seconds": round(picked.seconds, 1)})
                if seed in args.finetune_seeds:
                    cells[-1]["finetune"] = finetuned(picked, f"{method}-{budget}-s{seed}", seed, args)
                print(json.dumps(cells[-1]), flush=True)
    print("\n| method | budget | classes with no pick | picks of the rarest class | balanced accuracy (%) | macro-F1 (%) |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for method in args.methods:
        for budget in args.budgets:
            mine = [c for c in cells if c["method"] == method and c["budget"] == budget]
            mean = {k: float(np.mean([c[k] for c in mine])) for k in
                    ("empty_classes", "rarest_class_picks", "balanced_accuracy", "macro_f1")}
            print(f"| {method} | {budget} ({mine[0]['picks']}) | {mean['empty_classes']:.1f} | "
                  f"{mean['rarest_class_picks']:.1f} | {100 * mean['balanced_accuracy']:.1f} | "
                  f"{100 * mean['macro_f1']:.1f} |")
    tuned = [c for c in cells if "finetune" in c]
    if tuned:
        print("\n| method | budget | seed | classes with no pick | probe balanced acc. (%) | probe macro-F1 (%) | "
              "finetuned balanced acc. (%) | finetuned macro-F1 (%) | finetuned top-1 (%) |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for c in tuned:
            f = c["finetune"]
            print(f"| {c['method']} | {c['budget']} ({c['picks']}) | {c['seed']} | {c['empty_classes']} | "
                  f"{100 * c['balanced_accuracy']:.1f} | {100 * c['macro_f1']:.1f} | "
                  f"{100 * f['balanced_accuracy']:.1f} | {100 * f['macro_f1']:.1f} | {100 * f['top1']:.1f} |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(cells, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
