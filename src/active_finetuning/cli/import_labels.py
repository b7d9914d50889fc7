"""``active-finetuning import-labels``: an annotation export turned into the labels artifact."""

from __future__ import annotations

import argparse


# checked before any work by cli.main: where this command writes, and what it must not overwrite
OUTPUTS = {"out": "file"}
INPUTS = ("annotations", "manifest", "selection")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("annotations", help="Label Studio export (JSON-min or JSON) or CSV with sample_id,label; "
                                            "with --label-studio-project, where the pulled export is written")
    parser.add_argument("--manifest", required=True, help="manifest of the pool (its 'classes' map names to indices)")
    parser.add_argument("--selection", help="selection artifact: labels must belong to it (recommended)")
    parser.add_argument("--format", default="auto", choices=["auto", "label-studio", "csv"])
    parser.add_argument("--field", default="label", help="the Choices name of the labeling config (default label)")
    parser.add_argument("--label-format", default="auto", choices=["auto", "index", "name"],
                        help="labels are class indices or class names; auto refuses a file where a number could "
                             "be either (class folders named 1, 2, 10)")
    parser.add_argument("--allow-partial", action="store_true",
                        help="accept an export that labels only part of the selection")
    parser.add_argument("--out", required=True, help="labels artifact (Parquet) to write")
    parser.add_argument("--label-studio-project", type=int, metavar="ID",
                        help="pull the annotated tasks of this Label Studio project first (those of --selection, if given; "
                             "the API key from LABEL_STUDIO_API_KEY)")
    parser.add_argument("--label-studio-url", help="the Label Studio server (default: LABEL_STUDIO_URL)")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..data.artifacts import read_selection
    from ..data.manifest import read_manifest
    from ..labels import import_labels, write_labels

    manifest = read_manifest(args.manifest)
    selection = read_selection(args.selection) if args.selection else None
    if args.label_studio_project is not None:
        from ..labelstudio import LabelStudio

        server = LabelStudio(args.label_studio_url)
        count = server.save_export(args.label_studio_project, args.annotations,
                                   selection.sample_ids if selection is not None else None)
        print(f"pulled {count} annotated tasks of project {args.label_studio_project} at {server.url} "
              f"into {args.annotations}")
    labels = import_labels(args.annotations, manifest, selection=selection, format=args.format,
                           field_name=args.field, allow_partial=args.allow_partial,
                           label_format=args.label_format)
    write_labels(labels, args.out)
    print(f"{len(labels)} labels of {len(np.unique(labels.labels))} classes; wrote {args.out}")
    return 0
