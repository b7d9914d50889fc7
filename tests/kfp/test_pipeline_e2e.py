"""The whole budget-study pipeline end to end under ``kfp.local``, each step a subprocess (and, opt-in with
``make test-image``, each step a container of the built image through DockerRunner): real PNG digits
in a GCS emulator bucket, a tiny timm model with weights from the bucket, two methods × two
budgets, a real ``mlflow server`` on 127.0.0.1. Takes about two minutes on two cores."""

import io
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.image_support import IMAGE as IMAGE_UNDER_TEST
from tests.image_support import needs_image

ROOT = Path(__file__).resolve().parents[2]
METHODS = ["kcenter", "activeft"]
BUDGETS = ["8", "25%"]  # 25% of a 48-image pool: 12


@pytest.fixture
def study_bucket(gcs_bucket, tmp_path):
    """Pool images as PNG files in class folders, a test manifest with PNG bytes, weights: all in the bucket."""
    import timm
    from safetensors.torch import save_file

    from active_finetuning.data import storage
    from active_finetuning.data.demo import mnist_manifests
    from active_finetuning.data.manifest import write_manifest

    pool, test = mnist_manifests(pool_size=48, test_size=40, seed=1)
    for i, sample_id in enumerate(pool.sample_ids):
        storage.write_bytes(f"{gcs_bucket}/pool/{pool.labels[i]}/{sample_id.split('/')[-1]}", pool.load_bytes(i))
    write_manifest(test, f"{gcs_bucket}/test.parquet")
    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=0)
    save_file(model.state_dict(), str(tmp_path / "weights.safetensors"))
    storage.upload_file(tmp_path / "weights.safetensors", f"{gcs_bucket}/weights/test_efficientnet.safetensors")
    return gcs_bucket


SECRET = "planted-secret-7f3a9c"


@pytest.mark.parametrize("in_containers", [False, pytest.param(True, marks=[pytest.mark.image, needs_image])],
                         ids=["subprocesses", "containers"])
def test_budget_study_pipeline_end_to_end(study_bucket, mlflow_server, tmp_path, monkeypatch, capfd, request,
                                          in_containers):
    from mlflow import MlflowClient

    from active_finetuning.data import storage
    from active_finetuning.data.artifacts import read_selection
    from active_finetuning.kfp.orchestration import run_locally

    parameters = {
        "manifest_uri": f"{study_bucket}/pool", "test_manifest_uri": f"{study_bucket}/test.parquet",
        "model_name": "test_efficientnet", "weights_uri": f"{study_bucket}/weights/test_efficientnet.safetensors",
        "methods": METHODS, "budgets": BUDGETS, "seeds": [0], "evaluation": "probe", "num_shards": 2,
        "image_size": 32, "batch_size": 16, "mlflow_experiment": "e2e-study", "mlflow_tracking_uri": mlflow_server,
        "method_params": {"activeft": {"iterations": 20}}, "results_uri": f"{study_bucket}/results",
    }
    # secrets a cluster's environment holds: none may reach an artifact, a log or a tracked value
    monkeypatch.setenv("KF_PIPELINES_TOKEN", SECRET)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", SECRET)
    monkeypatch.setenv("STUDY_API_KEY", SECRET)
    if in_containers:  # each step in a container of the built image, through Docker's or podman's API
        request.getfixturevalue("container_api")
        from active_finetuning.kfp.image import IMAGE

        assert IMAGE == IMAGE_UNDER_TEST, "make test-image names the image in ACTIVE_FINETUNING_IMAGE too"
    result = run_locally(parameters, workdir=tmp_path / "run", quiet=True, in_containers=in_containers)

    # quiet: one line per finished step on the terminal, the steps' own logs in the run's log file
    terminal = capfd.readouterr()
    steps = [line for line in terminal.out.splitlines() if line.startswith("  [")]
    assert len(steps) >= 25 and all(line.endswith(": success") for line in steps), terminal.out[-2000:]
    assert "executor_output" not in terminal.out + terminal.err
    assert result.log == tmp_path / "run" / "pipeline.log" and "Wrote executor output file" in result.log.read_text()

    # the report: the same table in the pipeline output, in the bucket, and on the parent run
    assert "| kcenter |" in result.markdown and "| activeft |" in result.markdown
    assert "| method | 8 | 25% (12) |" in result.markdown
    assert storage.read_bytes(f"{study_bucket}/results/accuracy_by_budget.md").decode() == result.markdown
    assert storage.read_bytes(f"{study_bucket}/results/accuracy_vs_budget.png")[:4] == b"\x89PNG"
    cells = pq.read_table(io.BytesIO(storage.read_bytes(f"{study_bucket}/results/cells.parquet"))).to_pylist()
    assert sorted((c["method"], c["budget_count"]) for c in cells) == sorted(
        (m, n) for m in METHODS for n in (8, 12))

    # the KFP artifacts exist and parse
    selections = sorted(result.pipeline_root.glob("*/for-loop-*/select/selection"))
    assert len(selections) == 4
    for path in selections:
        selection = read_selection(str(path))
        assert len(selection) in (8, 12) and selection.metadata["method"] in METHODS
    page = next(result.pipeline_root.glob("*/report/page")).read_text()  # the KFP run page shows it inline
    assert "<td>kcenter</td>" in page and "data:image/png;base64," in page
    reports = sorted(result.pipeline_root.glob("*/for-loop-*/diagnose/report"))
    plots = sorted(result.pipeline_root.glob("*/for-loop-*/diagnose/plot"))
    assert len(reports) == len(plots) == 4 and all(p.read_bytes()[:4] == b"\x89PNG" for p in plots)
    merged = next(result.pipeline_root.glob("*/merge-features/features"))
    table = pq.read_table(merged)
    assert table.num_rows == 48 and table.schema.field("feature").type.list_size > 0

    # MLflow: one parent, one child per cell, with tags, params, metrics and artifacts
    client = MlflowClient(tracking_uri=mlflow_server)
    assert result.tracking_uri == mlflow_server and result.parent_run_id
    parent = client.get_run(result.parent_run_id)
    assert parent.data.params["methods"] == '["kcenter", "activeft"]'
    assert parent.data.params["model_name"] == "test_efficientnet"
    assert {f"accuracy_mean/{m}/{n}" for m in METHODS for n in (8, 12)} <= set(parent.data.metrics)
    for method in METHODS:  # a line per method in the chart view: the budget is the step
        history = client.get_metric_history(parent.info.run_id, f"accuracy_by_budget/{method}")
        assert sorted(point.step for point in history) == [8, 12]
    parent_files = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"accuracy_by_budget.md", "accuracy_vs_budget.png", "accuracy_by_budget.json"} <= parent_files
    experiment = client.get_experiment_by_name("e2e-study")
    children = client.search_runs([experiment.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted((c.data.tags["method"], c.data.tags["budget"]) for c in children) == sorted(
        (m, b) for m in METHODS for b in BUDGETS)
    identities = {c.data.tags["features_identity"] for c in children}
    assert len(identities) == 1 and len(identities.pop()) == 24
    for child in children:
        tags, params, metrics = child.data.tags, child.data.params, child.data.metrics
        assert tags["seed"] == "0" and tags["kfp_run_id"] == parent.data.tags["kfp_run_id"]
        assert params["method"] == tags["method"] and params["evaluation"] == "probe"
        assert params["probe.C"] == "0.5"
        if tags["method"] == "activeft":
            assert params["selection.iterations"] == "20" and params["selection.temperature"] == "0.07"
        assert 0 <= metrics["accuracy"] <= 1 and metrics["accuracy"] == metrics["linear_probe.top1"]
        assert "knn.top1" in metrics
        # label-free diagnostics of the selection over the pool (unit features: distances in [0, 2])
        assert 0 <= metrics["diagnostics.coverage_p50"] <= metrics["diagnostics.coverage_p90"] <= 2
        assert 0 < metrics["diagnostics.pseudo_class_covered_share"] <= 1
        datasets = {d.dataset.name: d for d in child.inputs.dataset_inputs}  # MLflow groups runs by these
        assert datasets["features"].dataset.digest == tags["features_identity"][:36]
        assert f"selection-{tags['method']}-{tags['budget']}-seed0" in datasets
        files = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"selection.parquet", "selection_pca.png", "confusion_matrix.png"} <= files
        local = client.download_artifacts(child.info.run_id, "selection.parquet", str(tmp_path / child.info.run_id))
        assert len(read_selection(local)) == int(tags["budget_count"])
    accuracies = {(c.data.tags["method"], int(c.data.tags["budget_count"])): c.data.metrics["accuracy"]
                  for c in children}
    for cell in cells:
        assert cell["accuracy"] == pytest.approx(accuracies[(cell["method"], cell["budget_count"])])
    assert np.isfinite(list(accuracies.values())).all()
    # no planted secret anywhere: artifacts, executor records, the bucket's report, MLflow, compiled specs
    written = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
    assert written and not [str(p) for p in written if SECRET.encode() in p.read_bytes()]
    for name in storage.list_prefix(f"{study_bucket}/results"):
        assert SECRET.encode() not in storage.read_bytes(name)
    for run in [parent, *children]:
        assert SECRET not in str(run.data.params) + str(run.data.tags)
    specs = (ROOT / "src" / "active_finetuning" / "kfp" / "pipelines").glob("*.yaml")
    assert not [spec for spec in specs if SECRET in spec.read_text()]
