"""``active-finetuning submit --host H``: upload the pipeline as a new version and start a run."""

from __future__ import annotations

import argparse

from ._kfp_cluster import add_cluster_arguments, settings_and_parameters


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_cluster_arguments(parser)
    parser.add_argument("--run-name", help="the run's name (default: budget-study-<UTC time>)")


def run(args: argparse.Namespace) -> int:
    from ..kfp.orchestration import submit

    settings, parameters, _ = settings_and_parameters(args)
    result = submit(settings, parameters, run_name=args.run_name)
    print(f"pipeline {settings.pipeline_name!r} version {result['version_id']} uploaded")
    print(f"run {result['run_id']} started in experiment {settings.experiment!r}: {result['url']}")
    return 0
