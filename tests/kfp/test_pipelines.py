"""The compiled budget-study pipeline: fresh, and with the tasks, edges, parameters and cluster
placement a reviewer expects (KFP v2 SDKs have dropped accelerator/node-selector fields before)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = ROOT / "src" / "active_finetuning" / "kfp" / "pipelines"
COMPILED = PIPELINES / "active_finetuning_pipeline.yaml"


@pytest.fixture(scope="module")
def documents():
    spec, platform = list(yaml.safe_load_all(COMPILED.read_text()))
    return spec, platform


def _dag_tasks(spec) -> dict[str, dict]:
    """Every task of the pipeline, nested DAGs included, by task name."""
    tasks = dict(spec["root"]["dag"]["tasks"])
    for name, component in spec["components"].items():
        tasks.update(component.get("dag", {}).get("tasks", {}))
    return tasks


def test_compiled_yaml_is_fresh(tmp_path, monkeypatch):
    from active_finetuning.kfp.orchestration import compile_all
    from active_finetuning.kfp.pipelines import COMPILED

    monkeypatch.delenv("ACTIVE_FINETUNING_IMAGE", raising=False)
    for fresh in compile_all(tmp_path):
        committed = COMPILED[fresh.stem]
        assert committed == PIPELINES / fresh.name and committed.exists(), f"{fresh.name} is not committed"
        assert fresh.read_text() == committed.read_text(), (
            f"{committed.relative_to(ROOT)} is stale: run `active-finetuning compile` and commit it")


def test_annotation_loop_pipelines(tmp_path):
    spec = yaml.safe_load_all((PIPELINES / "select_for_annotation_pipeline.yaml").read_text())
    spec = next(spec)
    assert spec["root"]["dag"]["outputs"]["artifacts"]["Output"]
    tasks = _dag_tasks(spec)
    assert {"export-for-annotation", "select", "merge-features"} <= set(tasks)
    spec = next(yaml.safe_load_all((PIPELINES / "train_on_annotations_pipeline.yaml").read_text()))
    tasks = _dag_tasks(spec)
    assert {"importer", "import-labels", "finetune", "evaluate"} <= set(tasks)
    assert tasks["import-labels"]["inputs"]["artifacts"]["selection"]["taskOutputArtifact"]["producerTask"] == "importer"
    assert set(spec["root"]["inputDefinitions"]["parameters"]) >= {"selection_uri", "annotations_uri"}


def test_pipeline_parameters(documents):
    spec, _ = documents
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert {"manifest_uri", "test_manifest_uri", "model_name", "weights_uri", "methods", "budgets", "seeds",
            "evaluation", "mlflow_experiment", "mlflow_tracking_uri", "num_shards"} <= set(params)
    assert params["methods"]["parameterType"] == "LIST"
    assert params["evaluation"]["defaultValue"] == "probe"
    assert "defaultValue" not in params["manifest_uri"], "the pool is required"
    assert spec["pipelineInfo"]["name"] == "active-finetuning"


def test_tasks_and_edges(documents):
    spec, _ = documents
    tasks = _dag_tasks(spec)
    component_of = {name: task["componentRef"]["name"].removeprefix("comp-") for name, task in tasks.items()}
    steps = set(component_of.values())
    assert {"build-manifest", "plan-shards", "extract-features", "merge-features", "plan-grid", "start-study",
            "select", "oracle-labels", "probe", "finetune", "evaluate", "track-cell", "report"} <= steps

    def upstream(task_name: str) -> set[str]:
        task = tasks[task_name]
        names = set(task.get("dependentTasks", []))
        for inputs in task.get("inputs", {}).values():
            for value in inputs.values():
                producer = value.get("taskOutputArtifact", value.get("taskOutputParameter", {})).get("producerTask")
                if producer:
                    names.add(producer)
                # across a loop or condition boundary: "pipelinechannel--<producer task>-<output>"
                channel = value.get("componentInputArtifact", value.get("componentInputParameter", ""))
                if channel.startswith("pipelinechannel--"):
                    rest = channel.removeprefix("pipelinechannel--")
                    matches = [t for t in tasks if rest.startswith(t + "-")]
                    if matches:
                        names.add(max(matches, key=len))
        return {component_of.get(n, n) for n in names}

    by_component = {}
    for name, component in component_of.items():
        by_component.setdefault(component, []).append(name)
    assert "merge-features" in upstream(by_component["select"][0])
    assert "select" in upstream(by_component["oracle-labels"][0])
    assert {"oracle-labels", "select"} <= upstream(by_component["probe"][0])
    assert "finetune" in upstream(by_component["evaluate"][0])
    assert "start-study" in upstream(by_component["track-cell"][0])
    merge = tasks[by_component["merge-features"][0]]
    collected = merge["inputs"]["artifacts"]["shards"]["taskOutputArtifact"]
    assert collected["producerTask"].startswith("for-loop"), "merge collects every shard of the fan-out"
    report = tasks[by_component["report"][0]]
    assert report["inputs"]["parameters"]["rows"]["taskOutputParameter"]["producerTask"].startswith("for-loop")


def test_loops_iterate_over_shards_and_cells(documents):
    spec, _ = documents
    loops = {name: task for name, task in _dag_tasks(spec).items() if "parameterIterator" in task}
    items = sorted(t["parameterIterator"]["items"]["inputParameter"] for t in loops.values())
    assert len(loops) == 2 and all(i.startswith("pipelinechannel--plan-") for i in items)
    cells = next(t for t in loops.values() if "grid" in t["parameterIterator"]["items"]["inputParameter"])
    assert cells["iteratorPolicy"]["parallelismLimit"] >= 1


def test_evaluation_branches_on_the_parameter(documents):
    spec, _ = documents
    conditions = [t["triggerPolicy"]["condition"] for t in _dag_tasks(spec).values() if "triggerPolicy" in t]
    assert any("evaluation" in c and "'probe'" in c for c in conditions)
    assert any(c.startswith("!(") for c in conditions), "the finetune branch is the else of the probe branch"


def _executors(spec) -> dict[str, dict]:
    executors = spec["deploymentSpec"]["executors"]
    return {name.removeprefix("exec-"): body["container"] for name, body in executors.items()}


def test_every_step_runs_the_project_image_with_nothing_installed(documents):
    from active_finetuning.kfp.image import REPOSITORY

    spec, _ = documents
    for name, container in _executors(spec).items():
        assert container["image"].startswith(REPOSITORY + ":"), name
        script = " ".join(container["command"] + container.get("args", []))
        assert "pip install" not in script, f"{name} installs packages at run time"
        assert "from active_finetuning" in script, f"{name} does not call the library"


def test_resources_on_every_task_and_gpus_on_extract_and_finetune(documents):
    spec, _ = documents
    for name, container in _executors(spec).items():
        resources = container["resources"]
        assert resources["resourceCpuRequest"] and resources["resourceMemoryRequest"], name
        gpu = resources.get("accelerator")
        if name.startswith(("extract-features", "finetune")):
            assert gpu["resourceType"] == "nvidia.com/gpu" and gpu["resourceCount"] == "1", name
        else:
            assert gpu is None, f"{name} should not hold a GPU"


def test_node_selector_and_tolerations_on_the_gpu_tasks(documents):
    from active_finetuning.kfp.placement import GPU

    spec, platform = documents
    configs = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    gpu_steps = {n for n in configs}
    assert gpu_steps == {n for n in spec["deploymentSpec"]["executors"]
                         if n.startswith(("exec-extract-features", "exec-finetune"))}
    for name, config in configs.items():
        assert config["nodeSelector"]["labels"] == GPU["node_selector"], name
        assert config["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_caching_and_retries(documents):
    spec, _ = documents
    tasks = _dag_tasks(spec)
    for name, task in tasks.items():
        component = task["componentRef"]["name"].removeprefix("comp-")
        if component.startswith("for-loop") or component.startswith("condition"):
            continue
        cached = task.get("cachingOptions", {}).get("enableCache", False)
        side_effects = component.rstrip("-0123456789") in {"start-study", "track-cell", "report", "build-manifest"}
        assert cached is (not side_effects), f"{name}: caching {cached}"
        if component.startswith(("extract-features", "finetune")):
            assert task["retryPolicy"]["maxRetryCount"] >= 2, name
            assert task["retryPolicy"]["backoffDuration"]


@pytest.mark.parametrize("name", ["active_finetuning_pipeline", "select_for_annotation_pipeline",
                                  "train_on_annotations_pipeline"])
def test_every_compiled_spec_parses_strictly_as_kfp_protobuf_messages(name):
    """The pipeline spec (and the Kubernetes platform spec beside it) as KFP's backend reads them:
    protobuf messages, unknown fields refused; a planted unknown field is caught."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    documents = [d for d in yaml.safe_load_all((PIPELINES / f"{name}.yaml").read_text()) if d]
    json_format.ParseDict(documents[0], pipeline_spec_pb2.PipelineSpec(), ignore_unknown_fields=False)
    for platform in documents[1:]:
        json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec(), ignore_unknown_fields=False)
    planted = {**documents[0], "root": {**documents[0]["root"], "dagg": {}}}
    with pytest.raises(json_format.ParseError, match="dagg"):
        json_format.ParseDict(planted, pipeline_spec_pb2.PipelineSpec(), ignore_unknown_fields=False)
