"""``active-finetuning compile``: the pipelines as KFP v2 YAML (upload them in the KFP UI or with `submit`)."""

from __future__ import annotations

import argparse


# checked before any work by cli.main: where this command writes, and what it must not overwrite
OUTPUTS = {"out_dir": "folder"}
INPUTS = ()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out-dir", help="folder for <pipeline>.yaml (default: the committed specs in pipelines/)")


def run(args: argparse.Namespace) -> int:
    from ..kfp.orchestration import compile_all

    for path in compile_all(args.out_dir):
        print(f"wrote {path}")
    return 0
