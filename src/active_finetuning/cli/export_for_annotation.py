"""``active-finetuning export-for-annotation``: the selected images as annotation tasks, in pick order."""

from __future__ import annotations

import argparse


# checked before any work by cli.main: where this command writes, and what it must not overwrite
OUTPUTS = {"out": "file"}
INPUTS = ("selection", "manifest")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--selection", required=True, help="selection artifact (Parquet)")
    parser.add_argument("--manifest", required=True, help="manifest of the pool (Parquet)")
    parser.add_argument("--format", default="label-studio", choices=["label-studio", "csv"],
                        help="Label Studio task import (JSON) or CSV (default label-studio)")
    parser.add_argument("--out", required=True, help="tasks file to write")
    parser.add_argument("--signed-urls", action="store_true",
                        help="give gs:// images as V4 signed HTTPS URLs (needs credentials that can sign)")
    parser.add_argument("--expiry-hours", type=float, default=168.0, help="signed URL lifetime (default 168 h)")
    parser.add_argument("--config-out", help="also write a Label Studio labeling config (XML) with the class names")
    parser.add_argument("--label-studio-project", type=int, metavar="ID",
                        help="also push the tasks into this Label Studio project (those it lacks; the API key from "
                             "LABEL_STUDIO_API_KEY)")
    parser.add_argument("--label-studio-url", help="the Label Studio server (default: LABEL_STUDIO_URL)")


def run(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from ..data import storage
    from ..data.artifacts import read_selection
    from ..data.manifest import read_manifest
    from ..errors import InputError
    from ..labels import export_for_annotation, label_studio_config

    if not 0 < args.expiry_hours <= 168:
        raise InputError(f"--expiry-hours must be in (0, 168] (GCS V4 signed URLs last at most 7 days), "
                         f"got {args.expiry_hours}")
    server = None
    if args.label_studio_project is not None:  # before any work: a bad flag, URL or key writes nothing
        from ..labelstudio import LabelStudio

        if args.format != "label-studio":
            raise InputError("--label-studio-project pushes Label Studio tasks: drop --format csv")
        server = LabelStudio(args.label_studio_url)
    selection = read_selection(args.selection)
    manifest = read_manifest(args.manifest)
    tasks = export_for_annotation(selection, manifest, args.out, format=args.format, signed_urls=args.signed_urls,
                                  expiry=timedelta(hours=args.expiry_hours))
    if args.config_out:
        storage.write_bytes(args.config_out, label_studio_config(manifest.classes).encode())
        print(f"wrote {args.config_out}")
    print(f"wrote {len(tasks)} tasks to {args.out} ({args.format})")
    if server is not None:
        pushed, present = server.push(args.label_studio_project, tasks)
        print(f"pushed {pushed} tasks to project {args.label_studio_project} at {server.url} ({present} already there)")
    return 0
