"""``active-finetuning run --config C``: the whole pipeline on this machine with ``kfp.local``.

Each step runs as a subprocess of this environment (the same components a cluster runs in the
project image), or with ``--in-containers`` in a container of that image through a Docker-compatible
API (Docker, or podman's ``podman system service``; ``DOCKER_HOST`` says where). Embedded defaults: the outputs under ``--workdir`` (a local folder as the bucket)
and a local MLflow store (sqlite) unless ``MLFLOW_TRACKING_URI`` or the config names a server.
"""

from __future__ import annotations

import argparse


# checked before any work by cli.main: where this command writes, and what it must not overwrite
OUTPUTS = {"workdir": "folder"}
INPUTS = ("config",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML configuration; section 'pipeline' holds the parameters")
    parser.add_argument("--set", action="append", metavar="NAME=VALUE", dest="overrides",
                        help="a pipeline parameter (YAML value), e.g. --set seeds='[0, 1]'; repeatable")
    parser.add_argument("--workdir", default="outputs/pipeline",
                        help="local outputs: KFP artifacts, results, MLflow store (default outputs/pipeline)")
    parser.add_argument("--verbose", action="store_true",
                        help="print the steps' own logs instead of one line each (they go to <workdir>/pipeline.log)")
    parser.add_argument("--in-containers", action="store_true",
                        help="run each step in the project's image (ACTIVE_FINETUNING_IMAGE overrides which) "
                             "through Docker or podman's API, as a cluster would; inputs must be remote or "
                             "under --workdir")


def run(args: argparse.Namespace) -> int:
    from ..kfp.config import PipelineConfig, load_config, parse_overrides
    from ..kfp.orchestration import run_locally

    config = load_config(args.config) if args.config else PipelineConfig()
    result = run_locally({**config.parameters, **parse_overrides(args.overrides)}, args.workdir,
                         quiet=not args.verbose, in_containers=args.in_containers)
    print()
    print(result.markdown)
    print(where_to_compare(result))
    return 0


def where_to_compare(result) -> str:
    lines = [f"MLflow: experiment {result.experiment!r} at {result.tracking_uri}"]
    if result.parent_run_id:
        lines.append(f"  parent run {result.parent_run_id}: one child run per method × budget × seed; "
                     "the table and plot are its artifacts (accuracy_by_budget.md, accuracy_vs_budget.png)")
    if result.tracking_uri.startswith("sqlite:"):
        lines.append(f"  browse: mlflow ui --backend-store-uri {result.tracking_uri}")
    lines.append(f"KFP outputs: {result.pipeline_root}")
    if result.log:
        lines.append(f"step logs: {result.log}")
    return "\n".join(lines)
