"""``active-finetuning oracle-labels``: the selection labeled from the manifest's ground truth (studies)."""

from __future__ import annotations

import argparse


# checked before any work by cli.main: where this command writes, and what it must not overwrite
OUTPUTS = {"out": "file"}
INPUTS = ("selection", "manifest")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--selection", required=True, help="selection artifact (Parquet)")
    parser.add_argument("--manifest", required=True,
                        help="manifest, or a features artifact, with a ground-truth 'label' column")
    parser.add_argument("--out", required=True, help="labels artifact (Parquet) to write")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..data.artifacts import read_selection
    from ..labels import oracle_labels, write_labels

    selection = read_selection(args.selection)
    labels = oracle_labels(selection, _ground_truth(args.manifest))
    write_labels(labels, args.out)
    print(f"{len(labels)} oracle labels of {len(np.unique(labels.labels))} classes; wrote {args.out}")
    return 0


def _ground_truth(uri: str):
    """A manifest; a features artifact (which carries sample ids and labels too) also serves."""
    from ..data.artifacts import features_from_table, read_table
    from ..data.manifest import manifest_from_table

    table = read_table(uri, "manifest")
    if "feature" in table.column_names and "image" not in table.column_names and "uri" not in table.column_names:
        features = features_from_table(table, source=f"features {uri!r}")
        return _LabelSource(features.sample_ids, features.labels, features.metadata.get("classes"))
    return manifest_from_table(table, source=uri)


class _LabelSource:
    def __init__(self, sample_ids, labels, classes):
        self.sample_ids, self.labels, self.classes = sample_ids, labels, classes
