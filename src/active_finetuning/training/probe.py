"""The fast probe: no finetuning, a logistic-regression probe and a kNN classifier trained on the
selected samples' features and scored on test features (BiLAF's paper reports both)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, Sequence

import numpy as np

from ..errors import InputError
from ..labels import check_labeled_set
from ..params import Interval, Params, parameter
from .evaluate import classification_metrics


@dataclass(frozen=True)
class ProbeParams(Params):
    """Linear probe and kNN settings (recorded in the metrics artifact)."""

    C: float = parameter(0.5, Interval(float, 0, closed="neither"),
                         "inverse L2 strength of the logistic regression on standardised features")
    max_iter: int = parameter(1000, Interval(int, 1), "logistic regression iterations at most")
    k: int = parameter(20, Interval(int, 1), "kNN neighbours (a vote weighted by exp(cos/T), as DINO's kNN)")
    temperature: float = parameter(0.07, Interval(float, 0, closed="neither"), "T of the kNN vote")
    class_weight: Literal["balanced"] | None = parameter(
        None, help="the logistic regression's class weights: None, or scikit-learn's 'balanced' (long-tailed labels)")


def fit_linear_probe(train_x, train_y, params: ProbeParams = ProbeParams()):
    """(scaler, model): a logistic regression fitted on standardised features (the probe's, and the
    starting head of LP-FT finetuning)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x)
    model = LogisticRegression(C=params.C, max_iter=params.max_iter, class_weight=params.class_weight)
    return scaler, model.fit(scaler.transform(train_x), train_y)


def linear_probe(train_x, train_y, test_x, num_classes: int, params: ProbeParams = ProbeParams()) -> np.ndarray:
    """Class scores (test × num_classes) of a logistic regression on standardised features."""
    scaler, model = fit_linear_probe(train_x, train_y, params)
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

    ``train``/``test`` are :class:`~active_finetuning.data.artifacts.FeatureTable`; ``selection`` a
    :class:`~active_finetuning.data.artifacts.Selection` or a list of sample ids; ``labels`` a
    :class:`~active_finetuning.labels.Labels` (default: oracle labels from ``train``'s label column).
    """
    from ..data.artifacts import rows_of

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
