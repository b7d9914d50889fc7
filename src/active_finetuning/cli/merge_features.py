"""``active-finetuning merge-features SHARD… --out F``: concatenate features shards in shard order."""

from __future__ import annotations

import argparse


# checked before any work by cli.main: where this command writes, and what it must not overwrite
OUTPUTS = {"out": "file"}
INPUTS = ("shards",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shards", nargs="+", metavar="SHARD",
                        help="features shard URIs (from extract --shard i/n), or one folder / gs:// prefix holding them")
    parser.add_argument("--out", required=True, help="merged features artifact (Parquet) URI to write")


def run(args: argparse.Namespace) -> int:
    from ..data import storage
    from ..errors import InputError
    from ..features.extraction import merge_features

    shards = list(args.shards)
    if len(shards) == 1 and not shards[0].endswith(".parquet"):
        shards = [u for u in storage.list_prefix(shards[0]) if u.endswith(".parquet")
                  and not u.endswith(".skipped.parquet")]
        if not shards:
            raise InputError(f"no .parquet shards under {args.shards[0]!r}")
    merged = merge_features(shards, args.out)
    print(f"merged {merged['merged_shards']} shards, {merged['rows']} rows")
    print(f"wrote {args.out}")
    return 0
