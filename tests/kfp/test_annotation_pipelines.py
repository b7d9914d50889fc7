"""The annotation loop's two pipelines end to end with ``kfp.local.SubprocessRunner``: real PNG digits
in an image folder, a tiny timm model; the annotations are written from the export as a person would
(class names in a CSV). Then the pool grows and the loop runs again, as it would the next night: only
new and changed images are extracted, and only unlabeled samples are selected. Together with the
budget study's end-to-end test, every component runs under ``kfp.local`` at least once."""

import csv
import json
import warnings

import numpy as np
import pytest


@pytest.fixture
def annotation_data(tmp_path):
    import timm
    from safetensors.torch import save_file

    from active_finetuning.data.demo import mnist_manifests
    from active_finetuning.data.manifest import write_manifest

    pool, test = mnist_manifests(pool_size=40, test_size=30, seed=3)
    folder = tmp_path / "pool"
    truth = {}
    for i, sample_id in enumerate(pool.sample_ids):
        path = folder / pool.classes[pool.labels[i]] / sample_id.split("/")[-1]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pool.load_bytes(i))
        truth[path.name] = pool.classes[pool.labels[i]]
    write_manifest(test, str(tmp_path / "test.parquet"))
    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=0)
    save_file(model.state_dict(), str(tmp_path / "weights.safetensors"))
    return {"pool": str(folder), "test": str(tmp_path / "test.parquet"), "truth": truth,
            "weights": str(tmp_path / "weights.safetensors"), "more": test}


def shard_metadata(root) -> list[dict]:
    """The features metadata each extract-features task of a kfp.local run recorded."""
    records = sorted(root.glob("**/extract-features/executor_output.json"))
    return [json.loads(r.read_text())["artifacts"]["features"]["artifacts"][0]["metadata"] for r in records]


def test_select_for_annotation_then_train_on_annotations(annotation_data, tmp_path):
    from kfp import local

    from active_finetuning.data.artifacts import read_selection
    from active_finetuning.kfp.pipelines import (
        select_for_annotation_pipeline,
        train_on_annotations_pipeline,
    )

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp"),
               raise_on_error=True)
    model = {"model_name": "test_efficientnet", "weights_uri": annotation_data["weights"]}
    loop = {"features_cache_uri": str(tmp_path / "loop" / "features.parquet"),
            "labeled_uri": str(tmp_path / "loop" / "labels")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        selected = select_for_annotation_pipeline(manifest_uri=annotation_data["pool"], budget="12", method="kcenter",
                                                  num_shards=1, image_size=32, batch_size=16,
                                                  annotation_format="csv", **model, **loop)
        selection = read_selection(selected.output.path)
        assert len(selection) == 12 and selection.metadata["method"] == "kcenter"
        tasks = next((tmp_path / "kfp").glob("*/export-for-annotation/tasks"))
        with open(tasks, newline="") as handle:
            exported = list(csv.DictReader(handle))
        assert [row["sample_id"] for row in exported] == list(selection.sample_ids)  # in pick order

        annotations = tmp_path / "annotations.csv"  # what a person hands back: class names
        with open(annotations, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["sample_id", "label"])
            for row in exported:
                writer.writerow([row["sample_id"], annotation_data["truth"][row["sample_id"].split("/")[-1]]])
        trained = train_on_annotations_pipeline(
            manifest_uri=annotation_data["pool"], test_manifest_uri=annotation_data["test"],
            selection_uri=selected.output.path, annotations_uri=str(annotations), annotations_format="csv",
            recipe={"epochs": 2, "batch_size": 6, "image_size": 32, "checkpoint_seconds": 0}, batch_size=16,
            labels_folder_uri=loop["labeled_uri"], **model)
    summary = json.loads(trained.output)
    assert summary["kind"] == "evaluate" and 0 <= summary["accuracy"] <= 1
    matrix = np.asarray(summary["confusion_matrix"]["matrix"])
    assert matrix.sum() == 30  # every test image scored once
    labels = next((tmp_path / "kfp").glob("*/import-labels/labels"))
    from active_finetuning.labels import read_labels

    imported = read_labels(str(labels))
    assert sorted(imported.sample_ids) == sorted(selection.sample_ids)
    assert [m["extracted"] for m in shard_metadata(tmp_path / "kfp")] == [40]


def annotate(url: str, key: str, project: int, pool_folder: str) -> int:
    """Label every task of the project that has no annotation yet, as an annotator would (the truth
    is the image's class folder); return how many were labeled."""
    import requests

    from active_finetuning.data.manifest import build_manifest
    from active_finetuning.labels import task_ref

    manifest = build_manifest(pool_folder)
    truth = {task_ref(s): manifest.classes[label] for s, label in zip(manifest.sample_ids, manifest.labels)}
    headers = {"Authorization": f"Token {key}"}
    tasks = requests.get(f"{url}/api/tasks", params={"project": project, "page_size": 1000}, headers=headers,
                         timeout=30).json()["tasks"]
    done = 0
    for task in tasks:
        if task.get("total_annotations"):
            continue
        answer = {"result": [{"from_name": "label", "to_name": "image", "type": "choices",
                              "value": {"choices": [truth[task["data"]["ref"]]]}}]}
        response = requests.post(f"{url}/api/tasks/{task['id']}/annotations/", json=answer, headers=headers,
                                 timeout=30)
        assert response.status_code == 201, response.text
        done += 1
    return done


def test_the_nightly_loop_twice_on_a_grown_pool_with_label_studio_and_mlflow(annotation_data, tmp_path,
                                                                             label_studio, mlflow_server,
                                                                             monkeypatch):
    """Night 1 selects, pushes the tasks into a Label Studio project; they are annotated; a training
    run pulls them, finetunes, evaluates and logs the round to MLflow. The pool grows; night 2
    extracts only the new and changed images, selects only unlabeled samples and pushes them to the
    same project; the second training run logs a round with every label so far."""
    from pathlib import Path

    from kfp import local
    from mlflow import MlflowClient

    from active_finetuning.data.artifacts import read_selection
    from active_finetuning.kfp.pipelines import select_for_annotation_pipeline, train_on_annotations_pipeline
    from active_finetuning.labels import label_studio_config
    from active_finetuning.labelstudio import KEY_ENV, LabelStudio

    url, key = label_studio
    monkeypatch.setenv(KEY_ENV, key)  # the kfp.local subprocesses inherit it, as pods get the secret
    project = LabelStudio(url).create_project("nightly", label_studio_config([str(d) for d in range(10)]))
    model = {"model_name": "test_efficientnet", "weights_uri": annotation_data["weights"]}
    loop = {"features_cache_uri": str(tmp_path / "loop" / "features.parquet"),
            "labeled_uri": str(tmp_path / "loop" / "labels")}
    studio = {"label_studio_url": url, "label_studio_project": project}
    train = {"manifest_uri": annotation_data["pool"], "test_manifest_uri": annotation_data["test"],
             "recipe": {"epochs": 1, "batch_size": 6, "image_size": 32, "checkpoint_seconds": 0}, "batch_size": 16,
             "labels_folder_uri": loop["labeled_uri"], "mlflow_tracking_uri": mlflow_server,
             "mlflow_experiment": "nightly-loop", **studio, **model}
    selections = []
    for night in (1, 2):
        if night == 2:  # the pool grows by 4 images and 1 image changes
            more = annotation_data["more"]
            for i in range(4):
                Path(annotation_data["pool"], more.classes[more.labels[i]], f"new-{i}.png").write_bytes(
                    more.load_bytes(i))
            sorted(Path(annotation_data["pool"]).glob("*/*.png"))[0].write_bytes(more.load_bytes(4))
        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / f"kfp-{night}"),
                   raise_on_error=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            selected = select_for_annotation_pipeline(manifest_uri=annotation_data["pool"], budget="10",
                                                      method="kcenter", num_shards=2, image_size=32, batch_size=16,
                                                      **model, **loop, **studio)
            selections.append(read_selection(selected.output.path))
            assert annotate(url, key, project, annotation_data["pool"]) == 10  # only the night's new tasks
            train_on_annotations_pipeline(selection_uri=selected.output.path, **train)
        shards = shard_metadata(tmp_path / f"kfp-{night}")
        assert (sum(m["extracted"] for m in shards), sum(m["reused"] for m in shards)) == \
            ((40, 0) if night == 1 else (5, 39))
    assert not set(selections[0].sample_ids) & set(selections[1].sample_ids)
    assert len(LabelStudio(url).export(project)) == 20
    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("nightly-loop")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    assert [int(r.data.metrics["labeled_total"]) for r in runs] == [10, 20]
    assert all(0 <= r.data.metrics["accuracy"] <= 1 and r.data.params["round_labels"] == "10" for r in runs)
    assert {i.dataset.name for i in runs[1].inputs.dataset_inputs} >= {"features"}
