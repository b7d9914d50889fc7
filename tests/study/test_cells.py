"""What an evaluation step hands on, and the study's runs in a real MLflow server."""

import json

import pytest


def test_result_summary_of_a_probe_and_of_an_evaluation():
    from active_finetuning.study.cells import result_summary
    from active_finetuning.training.evaluate import classification_metrics

    metrics = classification_metrics([0, 1, 1, 0], [0, 1, 0, 0], classes=["a", "b"])
    summary = result_summary({"kind": "probe", "linear_probe": metrics, "knn": metrics, "params": {"C": 0.5}})
    assert summary["accuracy"] == 0.75 and summary["metrics"]["knn.top1"] == 0.75
    assert summary["confusion_matrix"]["categories"] == ["a", "b"] and summary["params"] == {"C": 0.5}
    json.dumps(summary)
    summary = result_summary({"kind": "evaluate", **metrics})
    assert summary["accuracy"] == 0.75 and "top1" in summary["metrics"]


def test_publish_result_writes_the_report_logs_to_kfp_outputs_and_returns_the_summary(tmp_path):
    from kfp import dsl

    from active_finetuning.study.cells import publish_result
    from active_finetuning.training.evaluate import classification_metrics, read_metrics

    result = {"kind": "evaluate", **classification_metrics([0, 1, 1, 0], [0, 1, 0, 0], classes=["a", "b"])}
    metrics, confusion = dsl.Metrics(), dsl.ClassificationMetrics()
    summary = json.loads(publish_result(result, str(tmp_path / "report.json"), metrics, confusion))
    assert summary["accuracy"] == 0.75 and read_metrics(str(tmp_path / "report.json"))["top1"] == 0.75
    assert metrics.metadata["top1"] == 0.75
    assert not any("per_class_accuracy" in name for name in metrics.metadata)
    assert confusion.metadata["confusionMatrix"]["annotationSpecs"] == [{"displayName": "a"}, {"displayName": "b"}]


def test_an_unreachable_tracking_server_is_retried_then_named():
    import time

    from active_finetuning.errors import InputError
    from active_finetuning.study.cells import start_study

    start = time.monotonic()
    with pytest.raises(InputError, match=r"http://127\.0\.0\.1:9.*could not be reached after \d+ attempts"):
        start_study("e", {"methods": ["random"]}, tracking_uri="http://127.0.0.1:9")
    assert time.monotonic() - start > 1, "it retries with backoff before failing"
