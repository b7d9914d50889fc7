"""``active-finetuning evaluate``: a finetuned model scored on a test manifest."""

from __future__ import annotations

import argparse

from ._model_step import add_model_step_arguments, tracked_run
from ._runtime import add_image_limit, apply_image_limit

# checked before any work by cli.main: where this command writes, and what it must not overwrite
OUTPUTS = {"out": "file"}
INPUTS = ("model", "manifest")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model artifact: the --out of finetune (folder or URI)")
    parser.add_argument("--manifest", required=True, help="test manifest with ground-truth labels (Parquet)")
    parser.add_argument("--out", required=True, help="metrics JSON to write")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--num-workers", type=int, default=0, help="image decoding worker processes")
    parser.add_argument("--limit", type=int, help="score only the first N test images")
    add_model_step_arguments(parser)
    add_image_limit(parser)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..data.manifest import read_manifest
    from ..errors import InputError
    from ..training.evaluate import evaluate, summary_line, write_metrics

    apply_image_limit(args)
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}")
    manifest = read_manifest(args.manifest)
    if args.limit is not None:
        if args.limit < 1:
            raise InputError(f"--limit must be >= 1, got {args.limit}")
        manifest = manifest.take(np.arange(min(args.limit, len(manifest))))
    with tracked_run(args, "evaluate") as run:
        metrics = evaluate(args.model, manifest, batch_size=args.batch_size, device=args.device,
                           num_workers=args.num_workers, progress=not args.no_progress)
        write_metrics(metrics, args.out)
        if run is not None:
            run.log_params({"kind": "evaluate", "model": metrics["model"], "model_uri": args.model,
                            "test_manifest": args.manifest, "test_samples": metrics["samples"]})
            run.log_metrics({"test_top1": metrics["top1"], "test_top5": metrics["top5"],
                             "test_macro_f1": metrics["macro_f1"]})
            matrix = metrics["confusion_matrix"]
            run.log_confusion_matrix(matrix["categories"], matrix["matrix"])
            run.log_artifact(args.out, "metrics")
    print(summary_line("model", metrics))
    print(f"wrote {args.out}")
    return 0
