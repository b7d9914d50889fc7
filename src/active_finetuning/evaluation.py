"""Evaluation: classification metrics, a saved model on a test manifest, and the fast feature probe.

* :func:`classification_metrics` — top-1, top-5, per-class accuracy, macro-F1 and the confusion
  matrix, in a JSON-ready dict whose ``confusion_matrix`` has the ``categories``/``matrix`` shape
  of KFP's ``ClassificationMetrics.log_confusion_matrix``.
* :func:`evaluate` — a finetuned model (``training.finetune`` output) scored on a test manifest.
* :func:`probe` — no finetuning: a logistic-regression probe and a kNN classifier trained on the
  selected samples' features, scored on test features (BiLAF's paper reports both, §5.2 Table 10).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from . import storage
from .errors import InputError

METRICS_FORMAT = "active-finetuning/metrics"


# ----------------------------------------------------------------------------------------------
# metrics


def classification_metrics(y_true, y_pred=None, scores=None, classes: Sequence[str] | None = None) -> dict[str, Any]:
    """Metrics of a classifier: give predicted labels, or class ``scores`` (N × C) to also get top-5."""
    y_true = np.asarray(y_true, dtype=np.int64)
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64)
        if scores.ndim != 2 or len(scores) != len(y_true):
            raise InputError(f"scores must be an array of shape ({len(y_true)}, classes), got {scores.shape}")
        y_pred = scores.argmax(axis=1)
    if y_pred is None:
        raise InputError("classification_metrics needs y_pred or scores")
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if len(y_true) == 0:
        raise InputError("cannot score an empty test set (0 labeled samples)")
    num_classes = len(classes) if classes is not None else int(max(y_true.max(), y_pred.max())) + 1
    if scores is not None:
        num_classes = max(num_classes, scores.shape[1])
    if y_true.min() < 0 or y_true.max() >= num_classes:
        raise InputError(f"test labels must lie in 0..{num_classes - 1}, found {y_true.min()}..{y_true.max()}")
    names = list(classes) if classes is not None else [str(c) for c in range(num_classes)]
    names += [str(c) for c in range(len(names), num_classes)]

    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    hits = np.diag(confusion)
    present = support > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(present, hits / np.maximum(support, 1), np.nan)
        precision = np.where(predicted > 0, hits / np.maximum(predicted, 1), 0.0)
        f1 = np.where(precision + np.nan_to_num(recall) > 0,
                      2 * precision * np.nan_to_num(recall) / (precision + np.nan_to_num(recall)), 0.0)
    result = {
        "samples": int(len(y_true)),
        "top1": float((y_pred == y_true).mean()),
        # macro over the classes present in the test set, as scikit-learn does with labels=present
        "macro_f1": float(f1[present].mean()),
        "per_class_accuracy": {names[c]: (None if not present[c] else float(recall[c])) for c in range(num_classes)},
        "confusion_matrix": {"categories": names, "matrix": confusion.tolist()},
    }
    if scores is not None:
        k = min(5, scores.shape[1])
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        result["top5"] = float((top == y_true[:, None]).any(axis=1).mean())  # top-C when C < 5
    return result


def write_metrics(metrics: dict[str, Any], uri: str) -> None:
    """Write a metrics dict as JSON, atomically."""
    payload = {"format": METRICS_FORMAT, **metrics}
    with storage.atomic_output(uri) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")


def read_metrics(uri: str) -> dict[str, Any]:
    with storage.open_input(uri) as handle:
        try:
            return json.loads(handle.read())
        except json.JSONDecodeError as err:
            raise InputError(f"metrics {uri!r} is not valid JSON: {err}") from err


def publish_result(result: dict[str, Any], report_uri: str, metrics, confusion) -> str:
    """Hand an evaluation result (:func:`probe` / :func:`evaluate`) on from a pipeline step.

    Writes every metric to ``report_uri``, logs the numbers (per-class accuracies left out) to
    ``metrics`` and the confusion matrix to ``confusion`` (KFP ``Metrics`` and
    ``ClassificationMetrics`` outputs), and returns the study's summary as JSON
    (:func:`~active_finetuning.study.result_summary`).
    """
    from .study import result_summary

    write_metrics(result, report_uri)
    summary = result_summary(result)
    for name, value in summary["metrics"].items():
        if "per_class_accuracy" not in name:
            metrics.log_metric(name, value)
    matrix = summary["confusion_matrix"]
    confusion.log_confusion_matrix(matrix["categories"], matrix["matrix"])
    return json.dumps(summary)


def summary_line(name: str, metrics: dict[str, Any]) -> str:
    parts = [f"{name}: top-1 {100 * metrics['top1']:.2f}%"]
    if "top5" in metrics:
        parts.append(f"top-5 {100 * metrics['top5']:.2f}%")
    parts.append(f"macro-F1 {100 * metrics['macro_f1']:.2f}")
    return ", ".join(parts) + f" ({metrics['samples']} test samples)"


# ----------------------------------------------------------------------------------------------
# the fast probe


@dataclass(frozen=True)
class ProbeParams:
    """Linear probe and kNN settings (recorded in the metrics artifact)."""

    C: float = 0.5  # inverse L2 strength of the logistic regression on standardised features
    max_iter: int = 1000
    k: int = 20  # kNN neighbours; weighted vote exp(cos/T) on L2-normalised features, as DINO's kNN
    temperature: float = 0.07

    def __post_init__(self) -> None:
        if not self.C > 0:
            raise InputError(f"probe parameter C must be > 0, got {self.C}")
        if self.max_iter < 1:
            raise InputError(f"probe parameter max_iter must be >= 1, got {self.max_iter}")
        if self.k < 1:
            raise InputError(f"probe parameter k must be >= 1, got {self.k}")
        if not self.temperature > 0:
            raise InputError(f"probe parameter temperature must be > 0, got {self.temperature}")


def check_labeled_set(labels: np.ndarray, what: str = "labeled set") -> None:
    """A classifier needs at least two samples of at least two classes."""
    if len(labels) == 0:
        raise InputError(f"the {what} is empty; label at least two samples of two classes")
    distinct = np.unique(labels)
    if len(distinct) < 2:
        raise InputError(
            f"the {what} has a single class ({int(distinct[0])}) in {len(labels)} samples; a classifier "
            "needs at least two classes — raise the budget or check the labels"
        )


def linear_probe(train_x, train_y, test_x, num_classes: int, params: ProbeParams = ProbeParams()) -> np.ndarray:
    """Class scores (test × num_classes) of a logistic regression on standardised features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x)
    model = LogisticRegression(C=params.C, max_iter=params.max_iter)
    model.fit(scaler.transform(train_x), train_y)
    proba = model.predict_proba(scaler.transform(test_x))
    scores = np.full((len(test_x), num_classes), -np.inf)
    scores[:, model.classes_] = proba  # classes absent from the labeled set can never be predicted
    return scores


def knn_scores(train_x, train_y, test_x, num_classes: int, params: ProbeParams = ProbeParams(),
               chunk: int = 4096) -> np.ndarray:
    """Weighted kNN votes (test × num_classes) by cosine similarity, chunked over the test set."""
    import torch

    train = torch.nn.functional.normalize(torch.as_tensor(np.asarray(train_x, dtype=np.float32)), dim=1)
    labels = torch.as_tensor(np.asarray(train_y, dtype=np.int64))
    k = min(params.k, len(train))
    out = np.zeros((len(test_x), num_classes), dtype=np.float64)
    for start in range(0, len(test_x), chunk):
        block = torch.as_tensor(np.asarray(test_x[start:start + chunk], dtype=np.float32))
        sims = torch.nn.functional.normalize(block, dim=1) @ train.T
        top, idx = sims.topk(k, dim=1)
        votes = torch.zeros(len(block), num_classes, dtype=torch.float64)
        votes.scatter_add_(1, labels[idx], (top.double() / params.temperature).exp())
        out[start:start + len(block)] = votes.numpy()
    return out


def probe(train, selection, test, labels=None, params: ProbeParams | None = None,
          classes: Sequence[str] | None = None) -> dict[str, Any]:
    """Train a linear probe and a kNN classifier on the selected samples' features; score both on ``test``.

    ``train``/``test`` are :class:`~active_finetuning.artifacts.FeatureTable`; ``selection`` a
    :class:`~active_finetuning.artifacts.Selection` or a list of sample ids; ``labels`` a
    :class:`~active_finetuning.labels.Labels` (default: oracle labels from ``train``'s label column).
    """
    from .artifacts import rows_of

    params = params or ProbeParams()
    selected_ids = list(getattr(selection, "sample_ids", selection))
    if not selected_ids:
        raise InputError("the selection is empty; select at least two samples")
    rows = rows_of(train, selected_ids, what="selection")
    if labels is None:
        if train.labels is None:
            raise InputError("the train features have no 'label' column; pass a labels artifact (--labels)")
        train_y = train.labels[rows]
        label_source = "oracle (train features' label column)"
    else:
        by_id = dict(zip(labels.sample_ids.tolist(), labels.labels.tolist()))
        missing = [sid for sid in selected_ids if sid not in by_id]
        if missing:
            raise InputError(
                f"the labels lack {len(missing)} selected samples (first: {missing[0]!r}); label every "
                "selected sample or use oracle labels"
            )
        train_y = np.asarray([by_id[sid] for sid in selected_ids], dtype=np.int64)
        label_source = "labels artifact"
    if test.labels is None:
        raise InputError("the test features have no 'label' column; the probe needs ground truth to score")
    check_labeled_set(train_y)
    classes = classes or train.metadata.get("classes") or test.metadata.get("classes")
    num_classes = max(int(train_y.max()), int(test.labels.max())) + 1
    if classes is not None:
        if num_classes > len(classes):
            raise InputError(f"labels go up to {num_classes - 1} but only {len(classes)} class names are known")
        num_classes = len(classes)
    if train.dim != test.dim:
        raise InputError(
            f"train features have dimension {train.dim} but test features {test.dim}; extract both with "
            "the same model"
        )
    train_x = train.features[rows].astype(np.float32)
    test_x = test.features.astype(np.float32)
    linear = classification_metrics(test.labels, scores=linear_probe(train_x, train_y, test_x, num_classes, params),
                                    classes=classes)
    knn = classification_metrics(test.labels, scores=knn_scores(train_x, train_y, test_x, num_classes, params),
                                 classes=classes)
    return {
        "kind": "probe",
        "labeled": int(len(rows)),
        "labeled_classes": int(len(np.unique(train_y))),
        "label_source": label_source,
        "params": asdict(params),
        "selection": dict(getattr(selection, "metadata", {}) or {}),
        "linear_probe": linear,
        "knn": knn,
    }


# ----------------------------------------------------------------------------------------------
# a finetuned model on a test manifest


def evaluate(model_uri: str, manifest, batch_size: int = 128, device: str | None = None,
             num_workers: int = 0, progress: bool = True) -> dict[str, Any]:
    """Score a saved model (``training.finetune`` output) on a test manifest with ground-truth labels."""
    import torch

    from .training import eval_transform, load_model, predict

    if manifest.labels is None:
        raise InputError("the test manifest has no 'label' column; evaluation needs ground truth")
    model, config = load_model(model_uri)
    classes = config["classes"]
    manifest_classes = getattr(manifest, "classes", None)
    if manifest_classes is not None and list(manifest_classes) != list(classes):
        raise InputError(
            f"the test manifest's classes {list(manifest_classes)[:5]}… differ from the model's "
            f"{list(classes)[:5]}… ({len(manifest_classes)} vs {len(classes)}); evaluate on a manifest with "
            "the classes the model was trained on"
        )
    if int(manifest.labels.max()) >= len(classes) or int(manifest.labels.min()) < 0:
        raise InputError(
            f"the test manifest has labels up to {int(manifest.labels.max())} but the model knows "
            f"{len(classes)} classes"
        )
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    transform = eval_transform(config["data_config"])
    logits = predict(model, manifest, transform, batch_size=batch_size, device=device,
                     num_workers=num_workers, progress=progress)
    metrics = classification_metrics(manifest.labels, scores=logits, classes=classes)
    return {"kind": "evaluate", "model": config["model"], "model_uri": model_uri,
            "selection": config.get("selection"), **metrics}
