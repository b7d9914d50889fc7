"""Classification metrics against scikit-learn."""


import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, f1_score, top_k_accuracy_score

from active_finetuning.training.evaluate import classification_metrics


def test_metrics_agree_with_scikit_learn():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 7, 500)
    scores = rng.standard_normal((500, 7)) + 2.0 * np.eye(7)[y_true]
    metrics = classification_metrics(y_true, scores=scores, classes=[f"c{i}" for i in range(7)])
    y_pred = scores.argmax(1)
    assert metrics["top1"] == pytest.approx((y_pred == y_true).mean())
    assert metrics["top5"] == pytest.approx(top_k_accuracy_score(y_true, scores, k=5))
    assert metrics["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert metrics["confusion_matrix"]["matrix"] == confusion_matrix(y_true, y_pred).tolist()
    assert metrics["confusion_matrix"]["categories"] == [f"c{i}" for i in range(7)]
    per_class = confusion_matrix(y_true, y_pred).diagonal() / np.bincount(y_true)
    assert list(metrics["per_class_accuracy"].values()) == pytest.approx(per_class.tolist())


def test_metrics_of_classes_missing_from_the_test_set_are_none_not_zero():
    metrics = classification_metrics([0, 0, 1], y_pred=[0, 1, 1], classes=["a", "b", "c"])
    assert metrics["per_class_accuracy"] == {"a": 0.5, "b": 1.0, "c": None}
    assert metrics["macro_f1"] == pytest.approx(f1_score([0, 0, 1], [0, 1, 1], average="macro"))
    assert "top5" not in metrics
