"""``active-finetuning compile``: the budget-study pipeline as KFP v2 YAML."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", help="YAML file to write (default: the committed spec in the package's pipelines/)")


def run(args: argparse.Namespace) -> int:
    from ..orchestration import compile_pipeline

    path = compile_pipeline(args.out)
    print(f"wrote {path}")
    return 0
