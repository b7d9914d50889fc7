"""Evaluation: classification metrics, and a finetuned model scored on a test manifest.

* :func:`classification_metrics` — top-1, top-5, per-class accuracy, macro-F1 and the confusion
  matrix, in a JSON-ready dict whose ``confusion_matrix`` has the ``categories``/``matrix`` shape
  of KFP's ``ClassificationMetrics.log_confusion_matrix``.
* :func:`evaluate` — a finetuned model (``training.finetune`` output) scored on a test manifest.

The fast probe on features is :mod:`.probe` (BiLAF's paper reports both, docs/methods.md §5.2).
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np

from ..data import storage
from ..errors import InputError

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

    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

    every = np.arange(num_classes)
    confusion = confusion_matrix(y_true, y_pred, labels=every)
    present = np.unique(y_true)  # macro-F1 over the classes the test set holds
    recall = recall_score(y_true, y_pred, labels=present, average=None, zero_division=0)
    per_class = dict.fromkeys(names)  # None for a class the test set lacks: unknown, not 0
    per_class.update({names[c]: float(r) for c, r in zip(present, recall)})
    result = {
        "samples": int(len(y_true)),
        "top1": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "per_class_accuracy": per_class,
        "confusion_matrix": {"categories": names, "matrix": confusion.tolist()},
    }
    if scores is not None:  # top-C when there are fewer than 5 classes
        # by hand: a class absent from the training labels scores -inf, which scikit-learn refuses
        k = min(5, scores.shape[1])
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        result["top5"] = float((top == y_true[:, None]).any(axis=1).mean())
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


def summary_line(name: str, metrics: dict[str, Any]) -> str:
    parts = [f"{name}: top-1 {100 * metrics['top1']:.2f}%"]
    if "top5" in metrics:
        parts.append(f"top-5 {100 * metrics['top5']:.2f}%")
    parts.append(f"macro-F1 {100 * metrics['macro_f1']:.2f}")
    return ", ".join(parts) + f" ({metrics['samples']} test samples)"


# ----------------------------------------------------------------------------------------------
# the fast probe


# ----------------------------------------------------------------------------------------------
# a finetuned model on a test manifest


def evaluate(model_uri: str, manifest, batch_size: int = 128, device: str | None = None,
             num_workers: int = 0, progress: bool = True) -> dict[str, Any]:
    """Score a saved model (``training.finetune`` output) on a test manifest with ground-truth labels."""
    import torch

    from .model import eval_transform, load_model, predict

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
