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
    with pytest.raises(InputError, match=r"http://127\.0\.0\.1:9.*could not be reached after 4 attempts"):
        start_study("e", {"methods": ["random"]}, tracking_uri="http://127.0.0.1:9")
    # google-api-core's backoff is "full jitter" (each sleep uniform in [0, 0.5·2^k] s), so the wall time
    # of three sleeps has no fixed floor: the attempts are counted instead, and the sleeps are not zero
    assert time.monotonic() - start > 0.01, "it sleeps between attempts"


def test_eight_cells_logging_at_once_to_one_mlflow_server(mlflow_server, tmp_path):
    """Load: the pipeline's 8 parallel cells log their child runs to one real server at the same time;
    every run arrives whole, none twice."""
    from concurrent.futures import ThreadPoolExecutor

    from mlflow import MlflowClient

    from active_finetuning.data.artifacts import FeatureTable
    from active_finetuning.selection import select
    from active_finetuning.data.artifacts import write_selection
    from active_finetuning.study.cells import log_cell, result_summary, start_study
    from active_finetuning.training.evaluate import classification_metrics
    from tests.conftest import gaussian_mixture

    features, labels = gaussian_mixture(200, 8, 4, seed=2)
    pool = FeatureTable.from_array(features, labels=labels)
    ref = start_study("load-8", {"methods": ["random"]}, tracking_uri=mlflow_server)
    cells = [{"method": "random", "budget": str(10 + i), "seed": i} for i in range(8)]
    for cell in cells:
        write_selection(select(pool, int(cell["budget"]), "random", seed=cell["seed"]),
                        str(tmp_path / f"s{cell['seed']}.parquet"))
    summary = result_summary({"kind": "evaluate", **classification_metrics([0, 1, 1], [0, 1, 0])})

    def log(cell):
        return log_cell(ref, cell, str(tmp_path / f"s{cell['seed']}.parquet"), summary, {"evaluation": "probe"})

    with ThreadPoolExecutor(8) as workers:
        rows = list(workers.map(log, cells))
    client = MlflowClient(tracking_uri=mlflow_server)
    children = client.search_runs([client.get_experiment_by_name("load-8").experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{ref.run_id}'")
    assert sorted(int(c.data.tags["seed"]) for c in children) == list(range(8))
    assert {row["child_run_id"] for row in rows} == {c.info.run_id for c in children}
    for child in children:
        assert child.data.metrics["accuracy"] == pytest.approx(2 / 3) and child.info.status == "FINISHED"
        assert {a.path for a in client.list_artifacts(child.info.run_id)} == {
            "selection.parquet", "confusion_matrix.json", "confusion_matrix.png"}


def test_the_tracking_server_stopped_mid_study_then_restarted(tmp_path):
    """Fault: the MLflow server goes away between the study's start and a cell's logging, and comes
    back. The cell's step fails naming the server; its retry logs the cell once; a retry after a
    success (its answer lost) and a retry after an attempt that died half-way leave one run each."""
    from mlflow import MlflowClient

    from active_finetuning.data.artifacts import FeatureTable, write_selection
    from active_finetuning.errors import InputError
    from active_finetuning.selection import select
    from active_finetuning.study.cells import log_cell, result_summary, start_study
    from active_finetuning.training.evaluate import classification_metrics
    from tests.conftest import gaussian_mixture
    from tests.mlflow_fixtures import running_mlflow_server

    features, labels = gaussian_mixture(100, 8, 3, seed=3)
    write_selection(select(FeatureTable.from_array(features, labels=labels), 9, "random", seed=0),
                    str(tmp_path / "s.parquet"))
    summary = result_summary({"kind": "evaluate", **classification_metrics([0, 1, 1], [0, 1, 0])})
    with running_mlflow_server(tmp_path / "server") as (uri, port):
        ref = start_study("fault", {"methods": ["random"]}, tracking_uri=uri)
    with pytest.raises(InputError, match=f"{uri}.*could not be reached"):
        log_cell(ref, {"method": "random", "budget": "9", "seed": 0}, str(tmp_path / "s.parquet"), summary, {})
    with running_mlflow_server(tmp_path / "server", port) as (uri, _):
        client = MlflowClient(tracking_uri=uri)
        first = log_cell(ref, {"method": "random", "budget": "9", "seed": 0}, str(tmp_path / "s.parquet"), summary, {})
        again = log_cell(ref, {"method": "random", "budget": "9", "seed": 0}, str(tmp_path / "s.parquet"), summary, {})
        assert again == first
        experiment = client.get_experiment_by_name("fault").experiment_id
        half = client.create_run(experiment, tags={"mlflow.parentRunId": ref.run_id, "cell": "random|9|1"})
        second = log_cell(ref, {"method": "random", "budget": "9", "seed": 1}, str(tmp_path / "s.parquet"), summary, {})
        children = client.search_runs([experiment], filter_string=f"tags.mlflow.parentRunId = '{ref.run_id}'")
        assert sorted(c.info.run_id for c in children) == sorted([first["child_run_id"], second["child_run_id"]])
        assert half.info.run_id not in {c.info.run_id for c in children}
        assert all(c.info.status == "FINISHED" for c in children)


def _record_features(tracking_uri: str, seed: int) -> str:
    from active_finetuning.tracking import start_run

    with start_run("datasets-race", run_name=f"cell-{seed}", tracking_uri=tracking_uri) as run:
        run.log_dataset("features", f"{seed // 8:0>24}", {"pool_size": 100}, context="pool")
        return run.run_id


def test_cells_registering_the_same_features_at_once_all_record_them(mlflow_server):
    """Eight cells (separate processes, as the pipeline's parallel steps are) record the same features
    dataset at once: the server's get-or-create races on its unique constraint; every cell still
    records it."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server)
    # One pool for the three attempts: its processes start (and import mlflow) once, then each attempt's eight
    # cells start together.
    with ProcessPoolExecutor(8, mp_context=multiprocessing.get_context("spawn")) as workers:
        attempts = [list(workers.map(partial(_record_features, mlflow_server), range(8 * attempt, 8 * attempt + 8)))
                    for attempt in range(3)]  # a fresh digest each time: a new race
    for digest_runs in attempts:
        for run_id in digest_runs:
            assert [d.dataset.name for d in client.get_run(run_id).inputs.dataset_inputs] == ["features"]
