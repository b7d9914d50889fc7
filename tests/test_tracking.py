"""MLflow tracking against a real ``mlflow server`` on 127.0.0.1 (one per session) and a local sqlite store."""

import json
import socket
import time

import numpy as np
import pytest

from active_finetuning.errors import InputError
from active_finetuning.tracking import ping, resolve_tracking_uri, start_run


def test_tracking_uri_comes_from_the_argument_then_the_environment_then_sqlite(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert resolve_tracking_uri("http://127.0.0.1:1") == "http://127.0.0.1:1"
    assert resolve_tracking_uri() == "http://127.0.0.1:5999"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert resolve_tracking_uri(local_dir=tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    for refused in ("file:./mlruns", "./mlruns"):
        with pytest.raises(InputError, match="file store"):
            resolve_tracking_uri(refused)


def test_an_unreachable_server_fails_fast_with_a_message_naming_it():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nothing listens there
    uri = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    with pytest.raises(InputError, match=f"{uri}.*could not be reached after 3 attempts"):
        ping(uri, attempts=3, backoff=0.1)
    assert time.monotonic() - started < 5
    with pytest.raises(InputError, match="could not be reached"):
        with start_run(tracking_uri=uri):
            pass


def test_a_run_logs_params_step_metrics_figures_and_artifacts(mlflow_server, tmp_path):
    from mlflow import MlflowClient

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    (tmp_path / "model" / "model.safetensors").write_bytes(b"weights")
    with start_run("tracking-test", run_name="parent", tracking_uri=mlflow_server) as parent:
        with start_run("tracking-test", run_name="child", tracking_uri=mlflow_server,
                       parent_run_id=parent.run_id, tags={"method": "activeft"}) as run:
            run.log_params({"method": "activeft", "recipe": {"lr": 0.01, "crop_scale": (0.08, 1.0)}})
            for epoch in range(1, 4):
                run.log_metrics({"train_loss": 1.0 / epoch, "note": "skipped", "nested": {"acc": 0.1 * epoch}},
                                step=epoch)
            run.log_confusion_matrix(["a", "b"], np.array([[3, 1], [0, 4]]))
            run.log_artifact(str(tmp_path / "model"), "model")
    client = MlflowClient(tracking_uri=mlflow_server)
    child = client.get_run(run.run_id)
    assert child.info.status == "FINISHED" and child.data.tags["mlflow.parentRunId"] == parent.run_id
    assert child.data.params == {"method": "activeft", "recipe.lr": "0.01", "recipe.crop_scale": "[0.08, 1.0]"}
    history = client.get_metric_history(run.run_id, "train_loss")
    assert [(m.step, m.value) for m in history] == [(1, 1.0), (2, 0.5), (3, pytest.approx(1 / 3))]
    assert client.get_metric_history(run.run_id, "nested.acc")[-1].value == pytest.approx(0.3)
    names = {a.path for a in client.list_artifacts(run.run_id)}
    assert {"confusion_matrix.png", "confusion_matrix.json", "model"} <= names
    assert {a.path for a in client.list_artifacts(run.run_id, "model")} == {"model/config.json",
                                                                            "model/model.safetensors"}
    matrix = json.loads(open(client.download_artifacts(run.run_id, "confusion_matrix.json", str(tmp_path))).read())
    assert matrix == {"categories": ["a", "b"], "matrix": [[3, 1], [0, 4]]}


def test_a_failing_block_marks_the_run_failed(mlflow_server):
    from mlflow import MlflowClient

    with pytest.raises(RuntimeError):
        with start_run("tracking-test", tracking_uri=mlflow_server) as run:
            raise RuntimeError("boom")
    assert MlflowClient(tracking_uri=mlflow_server).get_run(run.run_id).info.status == "FAILED"


def test_finetune_logs_each_epoch_and_the_model(mlflow_server, tmp_path):
    from mlflow import MlflowClient

    from active_finetuning.labels import Labels
    from active_finetuning.training.finetune import finetune
    from tests.training.conftest import CLASSES, colour_images

    train = colour_images(24, 0, "train")
    labels = Labels(train.sample_ids, train.labels, CLASSES)
    with start_run("tracking-test", run_name="finetune", tracking_uri=mlflow_server) as run:
        finetune(train, labels, model="test_efficientnet", out=str(tmp_path / "m"), run=run, progress=False,
                 epochs=2, batch_size=8, image_size=32, drop_path=0.0)
    client = MlflowClient(tracking_uri=mlflow_server)
    logged = client.get_run(run.run_id)
    assert logged.data.params["model"] == "test_efficientnet" and logged.data.params["recipe.batch_size"] == "8"
    assert [m.step for m in client.get_metric_history(run.run_id, "train_loss")] == [1, 2]
    assert all(m.value > 0 for m in client.get_metric_history(run.run_id, "images_per_second"))  # throughput
    assert logged.data.metrics["train_seconds"] > 0 and logged.data.params["loader_workers"] in ("0", "1", "2")
    assert {a.path for a in client.list_artifacts(run.run_id, "model")} == {"model/config.json",
                                                                            "model/model.safetensors"}


def test_without_a_uri_a_local_sqlite_store_is_used(monkeypatch, tmp_path):
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    with start_run("local", run_name="probe", local_dir=tmp_path) as run:
        run.log_metrics({"top1": 0.5})
        run.log_dict({"x": 1}, "x.json")
    assert (tmp_path / "mlflow.db").exists() and list((tmp_path / "mlartifacts").rglob("x.json"))
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    assert client.get_run(run.run_id).data.metrics == {"top1": 0.5}


def test_a_run_kfp_created_for_the_task_is_logged_into_not_duplicated(mlflow_server, tmp_path, monkeypatch):
    """KEP-12862: with MLFLOW_RUN_ID set (KFP made the task's run), the study and its cells log into
    the tasks' own runs, open no run of their own, and leave ending them to KFP. Without it, the
    study's parent and child runs are opened as before (the end-to-end test)."""
    from mlflow import MlflowClient

    from active_finetuning.data.artifacts import FeatureTable, write_selection
    from active_finetuning.selection import select
    from active_finetuning.study.cells import log_cell, result_summary, start_study
    from active_finetuning.training.evaluate import classification_metrics
    from tests.conftest import gaussian_mixture

    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.create_experiment("kfp-managed")
    pipeline_run = client.create_run(experiment, run_name="pipeline")
    start_task = client.create_run(experiment, tags={"mlflow.parentRunId": pipeline_run.info.run_id})
    cell_task = client.create_run(experiment, tags={"mlflow.parentRunId": pipeline_run.info.run_id})

    monkeypatch.setenv("MLFLOW_RUN_ID", start_task.info.run_id)
    ref = start_study("kfp-managed", {"methods": ["random"], "seeds": [0]}, tracking_uri=mlflow_server)
    assert ref.run_id == start_task.info.run_id
    features, labels = gaussian_mixture(60, 4, 3, seed=0)
    write_selection(select(FeatureTable.from_array(features, labels=labels), 6, "random", seed=0),
                    str(tmp_path / "s.parquet"))
    summary = result_summary({"kind": "evaluate", **classification_metrics([0, 1, 1], [0, 1, 0])})
    monkeypatch.setenv("MLFLOW_RUN_ID", cell_task.info.run_id)
    row = log_cell(ref, {"method": "random", "budget": "6", "seed": 0}, str(tmp_path / "s.parquet"), summary, {})
    assert row["child_run_id"] == cell_task.info.run_id

    runs = {run.info.run_id: run for run in client.search_runs([experiment])}
    assert set(runs) == {pipeline_run.info.run_id, start_task.info.run_id, cell_task.info.run_id}
    assert runs[start_task.info.run_id].data.params["methods"] == '["random"]'
    assert runs[start_task.info.run_id].data.tags["study"] == "budget"
    cell = runs[cell_task.info.run_id]
    assert cell.data.tags["method"] == "random" and cell.data.metrics["accuracy"] == pytest.approx(2 / 3)
    assert cell.data.tags["mlflow.parentRunId"] == pipeline_run.info.run_id  # KFP's hierarchy kept
    assert {run.info.status for run in runs.values()} == {"RUNNING"}  # KFP ends them
