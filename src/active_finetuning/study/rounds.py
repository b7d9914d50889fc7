"""One round of the labeling loop in MLflow: what was labeled, how the model trained on it scores.

A run per round in the loop's experiment, tagged with the selection's method, budget and seed and the
features' identity. Params: the round's size, the size of the labeled set so far, the model and the
recipe. Metrics: the evaluation's (``top1``, ``macro_f1``, …) and the labeled-set sizes, so the chart
view draws accuracy against the labels bought, one point per night. Dataset inputs: the features
(the pool, by identity), the selection and the labels, by content digest.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any, Mapping

from ..data import storage


def log_round(experiment: str, tracking_uri: str | None, selection_uri: str, labels_uri: str,
              summary: Mapping[str, Any], params: Mapping[str, Any], labeled_total: int | None = None) -> str:
    """Log one round (``summary``: :func:`.cells.result_summary` of the evaluation; ``labeled_total``:
    the labeled set after it, every round's, default this round's); return the run id."""
    from ..data.artifacts import read_selection
    from ..labels import read_labels
    from ..tracking import start_run

    with tempfile.TemporaryDirectory() as tmp:  # KFP artifact files have no extension: named copies
        paths = {}
        for name, uri in (("selection", selection_uri), ("labels", labels_uri)):
            paths[name] = Path(tmp) / f"{name}.parquet"
            paths[name].write_bytes(storage.read_bytes(uri))
        selection, labels = read_selection(str(paths["selection"])), read_labels(str(paths["labels"]))
        meta = selection.metadata
        labeled = len(labels) if labeled_total is None else labeled_total
        tags = {"method": meta.get("method", ""), "budget": meta.get("budget", len(selection)),
                "seed": meta.get("seed", ""), "features_identity": meta.get("features_identity", ""),
                "labels_identity": labels.identity()}
        with start_run(experiment=experiment, run_name=f"round-{labels.identity()[:8]}", tracking_uri=tracking_uri,
                       tags=tags) as run:
            run.log_params({"round_labels": len(labels), "labeled_total": labeled, "selection": meta.get("params", {}),
                            **params})
            run.log_metrics({"accuracy": summary["accuracy"], **summary.get("metrics", {}),
                             "round_labels": len(labels), "labeled_total": labeled})
            confusion = summary.get("confusion_matrix")
            if confusion:
                run.log_confusion_matrix(confusion["categories"], confusion["matrix"])
            if meta.get("features_identity"):
                run.log_dataset("features", meta["features_identity"], {"pool_size": meta.get("pool_size")},
                                context="pool")
            for name, path in paths.items():
                run.log_dataset(f"{name}-{labels.identity()[:8]}", hashlib.sha256(path.read_bytes()).hexdigest(),
                                {"kind": name, "rows": len(selection) if name == "selection" else len(labels)},
                                context=name)
                run.log_artifact(str(path))
            run.log_dict(json.loads(json.dumps(summary, default=str)), "evaluation.json")
    return run.run_id
