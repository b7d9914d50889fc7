"""``active-finetuning manifest SRC --out M``: a manifest from an image folder tree, a CSV/JSONL list or a Parquet file."""

from __future__ import annotations

import argparse


# checked before any work by cli.main: where this command writes, and what it must not overwrite
OUTPUTS = {"out": "file"}
INPUTS = ("source",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="SRC",
                        help="image folder (local or gs://; class sub-folders become labels), a .csv/.jsonl list "
                             "(columns uri or path, optional sample_id and label) or a Parquet manifest "
                             "(also Hugging Face-style with image bytes)")
    parser.add_argument("--out", required=True, help="manifest artifact (Parquet) URI to write")


def run(args: argparse.Namespace) -> int:
    from ..data.manifest import build_manifest, write_manifest

    manifest = build_manifest(args.source)
    write_manifest(manifest, args.out)
    kind = "image bytes" if manifest.images is not None else "uris"
    line = f"{len(manifest)} images ({kind})"
    if manifest.labels is not None:
        line += f", {len(set(manifest.labels.tolist()))} labels"
    if manifest.classes is not None:
        line += f" of {len(manifest.classes)} classes: {', '.join(manifest.classes[:10])}"
        line += " …" if len(manifest.classes) > 10 else ""
    print(line)
    print(f"wrote {args.out}")
    return 0
