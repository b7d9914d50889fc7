"""``active-finetuning evaluate``: a finetuned model scored on a test manifest."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model artifact: the --out of finetune (folder or URI)")
    parser.add_argument("--manifest", required=True, help="test manifest with ground-truth labels (Parquet)")
    parser.add_argument("--out", required=True, help="metrics JSON to write")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--num-workers", type=int, default=0, help="image decoding worker processes")
    parser.add_argument("--limit", type=int, help="score only the first N test images")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else "
                                               "sqlite:///mlflow.db in the current folder)")
    parser.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    parser.add_argument("--experiment", default="active-finetuning", help="MLflow experiment name")
    parser.add_argument("--run-name", help="MLflow run name")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    import contextlib

    import numpy as np

    from ..errors import InputError
    from ..evaluation import evaluate, summary_line, write_metrics
    from ..manifest import read_manifest

    if args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}")
    manifest = read_manifest(args.manifest)
    if args.limit is not None:
        if args.limit < 1:
            raise InputError(f"--limit must be >= 1, got {args.limit}")
        manifest = manifest.take(np.arange(min(args.limit, len(manifest))))
    tracked = contextlib.nullcontext()
    if not args.no_tracking:
        from ..tracking import start_run

        tracked = start_run(args.experiment, run_name=args.run_name or "evaluate", tracking_uri=args.tracking_uri)
    with tracked as run:
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
