"""Options shared by the model steps ``finetune`` and ``evaluate``: the torch device, MLflow tracking
and the progress bar."""

from __future__ import annotations

import argparse


def add_model_step_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI; without "
                                               "either nothing is logged and nothing is written outside --out)")
    parser.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    parser.add_argument("--experiment", default="active-finetuning", help="MLflow experiment name")
    parser.add_argument("--run-name", help="MLflow run name")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def tracked_run(args: argparse.Namespace, default_run_name: str):
    """The MLflow run the step logs to (``--run-name``, else ``default_run_name``), or, with
    ``--no-tracking``, a context that yields ``None``."""
    import contextlib
    import os

    if args.no_tracking or not (args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")):
        return contextlib.nullcontext()
    from ..tracking import start_run

    return start_run(args.experiment, run_name=args.run_name or default_run_name, tracking_uri=args.tracking_uri)
