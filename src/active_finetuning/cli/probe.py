"""``active-finetuning probe``: a linear probe and a kNN classifier on the selected samples' features."""

from __future__ import annotations

import argparse


# checked before any work by cli.main: where this command writes, and what it must not overwrite
OUTPUTS = {"out": "file"}
INPUTS = ("features_train", "selection", "features_test", "labels")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..training.probe import ProbeParams
    from ._params import add_parameter_flags

    parser.add_argument("--features-train", required=True, help="features artifact of the pool (Parquet)")
    parser.add_argument("--selection", required=True, help="selection artifact (Parquet)")
    parser.add_argument("--features-test", required=True, help="features artifact of the test set, with labels")
    parser.add_argument("--labels", help="labels artifact; default: oracle labels from the train features' label column")
    parser.add_argument("--out", help="metrics JSON to write")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI); "
                                               "without either nothing is logged")
    parser.add_argument("--experiment", default="active-finetuning", help="MLflow experiment name")
    add_parameter_flags(parser.add_argument_group("probe parameters"), ProbeParams, "probe_")


def run(args: argparse.Namespace) -> int:
    import os

    from ..data.artifacts import read_features, read_selection
    from ..labels import read_labels
    from ..training.evaluate import summary_line, write_metrics
    from ..training.probe import ProbeParams, probe
    from ._params import parameter_values

    params = ProbeParams.from_values(**parameter_values(args, "probe_"))
    train = read_features(args.features_train)
    selection = read_selection(args.selection, pool=train)
    test = read_features(args.features_test)
    labels = read_labels(args.labels) if args.labels else None
    metrics = probe(train, selection, test, labels=labels, params=params,
                    classes=labels.classes if labels is not None else None)
    print(f"{metrics['labeled']} labeled samples of {metrics['labeled_classes']} classes ({metrics['label_source']})")
    print(summary_line("linear probe", metrics["linear_probe"]))
    print(summary_line(f"kNN (k={params.k})", metrics["knn"]))
    if args.out:
        write_metrics(metrics, args.out)
        print(f"wrote {args.out}")
    if args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"):
        from ..tracking import start_run

        with start_run(args.experiment, run_name="probe", tracking_uri=args.tracking_uri) as tracked:
            tracked.log_params({"kind": "probe", "labeled": metrics["labeled"], "probe": metrics["params"],
                                "selection": metrics["selection"]})
            for name in ("linear_probe", "knn"):
                tracked.log_metrics({f"{name}.{k}": metrics[name][k] for k in ("top1", "top5", "macro_f1")})
                matrix = metrics[name]["confusion_matrix"]
                tracked.log_confusion_matrix(matrix["categories"], matrix["matrix"], f"{name}_confusion_matrix.png")
    return 0
