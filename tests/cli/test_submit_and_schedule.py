"""`submit` and `schedule` against a real HTTP server on 127.0.0.1 that answers the Kubeflow
Pipelines v2beta1 endpoints the client uses (healthz, pipeline upload and versions, experiments,
runs, recurring runs) and records what it was sent."""

import cgi
import io
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from active_finetuning.cli.main import main

API = "/apis/v2beta1"


class KfpApi(ThreadingHTTPServer):
    """The state of a tiny KFP API: pipelines, versions, experiments, runs, recurring runs."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[tuple[str, str, dict, object]] = []
        self.pipelines: dict[str, dict] = {}
        self.versions: dict[str, list[dict]] = {}
        self.experiments: dict[str, dict] = {}
        self.runs: list[dict] = []
        self.recurring_runs: list[dict] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: KfpApi

    def log_message(self, *args):  # keep pytest's output clean
        pass

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        kind = self.headers.get("Content-Type", "")
        if kind.startswith("multipart/form-data"):
            form = cgi.FieldStorage(fp=io.BytesIO(raw), headers=self.headers,
                                    environ={"REQUEST_METHOD": "POST", "CONTENT_TYPE": kind})
            return {key: form[key].value for key in form.keys()}
        return json.loads(raw or b"{}")

    def do_GET(self):
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.server.requests.append(("GET", url.path, query, None))
        state = self.server
        if url.path == f"{API}/healthz":
            return self._answer(200, {"multi_user": False})
        if url.path == f"{API}/pipelines":
            return self._answer(200, _listing("pipelines", state.pipelines.values(), query))
        if url.path.startswith(f"{API}/pipelines/") and url.path.endswith("/versions"):
            pipeline_id = url.path.split("/")[-2]
            return self._answer(200, {"pipeline_versions": state.versions.get(pipeline_id, []),
                                      "total_size": len(state.versions.get(pipeline_id, []))})
        if url.path == f"{API}/experiments":
            return self._answer(200, _listing("experiments", state.experiments.values(), query))
        return self._answer(404, {"error": f"no route {url.path}"})

    def do_POST(self):
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        body = self._body()
        self.server.requests.append(("POST", url.path, query, body))
        state = self.server
        if url.path == f"{API}/pipelines/upload":
            pipeline = {"pipeline_id": uuid.uuid4().hex, "display_name": query["name"],
                        "created_at": "2026-11-22T02:00:00Z"}
            state.pipelines[pipeline["pipeline_id"]] = pipeline
            state.versions[pipeline["pipeline_id"]] = [_version(pipeline["pipeline_id"], query["name"], body)]
            return self._answer(200, pipeline)
        if url.path == f"{API}/pipelines/upload_version":
            version = _version(query["pipelineid"], query["name"], body)
            state.versions[query["pipelineid"]].append(version)
            return self._answer(200, version)
        if url.path == f"{API}/experiments":
            experiment = {**body, "experiment_id": uuid.uuid4().hex, "created_at": "2026-11-22T02:00:00Z"}
            state.experiments[experiment["experiment_id"]] = experiment
            return self._answer(200, experiment)
        if url.path == f"{API}/runs":
            run = {**body, "run_id": uuid.uuid4().hex, "state": "PENDING"}
            state.runs.append(run)
            return self._answer(200, run)
        if url.path == f"{API}/recurringruns":
            job = {**body, "recurring_run_id": uuid.uuid4().hex, "status": "ENABLED"}
            state.recurring_runs.append(job)
            return self._answer(200, job)
        return self._answer(404, {"error": f"no route {url.path}"})


def _version(pipeline_id: str, name: str, form: dict) -> dict:
    spec = form["uploadfile"]
    return {"pipeline_id": pipeline_id, "pipeline_version_id": uuid.uuid4().hex, "display_name": name,
            "created_at": "2026-11-22T02:00:00Z",
            # the pipeline spec, then the platform (Kubernetes) spec
            "pipeline_spec": list(yaml.safe_load_all(spec.decode() if isinstance(spec, bytes) else spec))}


def _listing(key: str, items, query: dict) -> dict:
    items = list(items)
    if "filter" in query:
        predicates = json.loads(query["filter"])["predicates"]
        for predicate in predicates:
            items = [i for i in items if i.get(predicate["key"]) == predicate.get("stringValue", predicate.get("string_value"))]
    return {key: items, "total_size": len(items)} if items else {"total_size": 0}


@pytest.fixture
def cli(capsys, monkeypatch):
    """The CLI in this process (a subprocess would import kfp once per call): (exit code, stdout, stderr)."""
    monkeypatch.delenv("KF_PIPELINES_TOKEN", raising=False)

    def call(*args):
        code = main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return call


@pytest.fixture
def kfp_api():
    server = KfpApi()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({
        "pipeline": {"manifest_uri": "gs://bucket/pool.parquet", "test_manifest_uri": "gs://bucket/test.parquet",
                     "methods": ["random", "activeft"], "budgets": ["1%", 500], "seeds": [0, 1]},
        "schedule": {"cron": "0 30 1 * * *", "name": "nightly", "experiment": "studies",
                     "service_account": "active-finetuning", "pipeline_root": "gs://bucket/kfp-root"},
    }))
    return path


def test_submit_uploads_a_version_and_starts_a_run(cli, kfp_api, config):
    code, out, err = cli("submit", "--host", kfp_api.url, "--config", str(config), "--set", "seeds=[7]",
                         "--version", "v1")
    assert code == 0, err
    paths = [(method, path) for method, path, _, _ in kfp_api.requests]
    assert ("GET", f"{API}/healthz") in paths
    assert ("POST", f"{API}/pipelines/upload") in paths, "the first submit creates the pipeline"
    (pipeline,) = kfp_api.pipelines.values()
    assert pipeline["display_name"] == "active-finetuning"
    (uploaded,) = kfp_api.versions[pipeline["pipeline_id"]]
    spec, platform = uploaded["pipeline_spec"]
    assert spec["pipelineInfo"]["name"] == "active-finetuning"
    assert "nodeSelector" in str(platform["platforms"]["kubernetes"])
    (experiment,) = kfp_api.experiments.values()
    assert experiment["display_name"] == "studies"
    (run,) = kfp_api.runs
    assert run["experiment_id"] == experiment["experiment_id"]
    assert run["pipeline_version_reference"] == {"pipeline_id": pipeline["pipeline_id"],
                                                 "pipeline_version_id": uploaded["pipeline_version_id"]}
    params = run["runtime_config"]["parameters"]
    assert params["budgets"] == ["1%", "500"] and params["seeds"] == [7] and params["methods"] == ["random", "activeft"]
    assert run["runtime_config"]["pipeline_root"] == "gs://bucket/kfp-root"
    assert run["service_account"] == "active-finetuning"
    assert f"{kfp_api.url}/#/runs/details/{run['run_id']}" in out

    # a second submit reuses the pipeline and the experiment, adding a version
    code, out, err = cli("submit", "--host", kfp_api.url, "--config", str(config), "--version", "v2")
    assert code == 0, err
    assert len(kfp_api.pipelines) == 1 and len(kfp_api.experiments) == 1 and len(kfp_api.runs) == 2
    assert any(r[:2] == ("POST", f"{API}/pipelines/upload_version") and r[2]["name"] == "v2" for r in kfp_api.requests)
    assert [v["display_name"] for v in kfp_api.versions[pipeline["pipeline_id"]]] == ["active-finetuning", "v2"]
    assert kfp_api.runs[1]["pipeline_version_reference"]["pipeline_version_id"] == \
        kfp_api.versions[pipeline["pipeline_id"]][1]["pipeline_version_id"]


def test_schedule_creates_a_recurring_run_with_a_six_field_cron(cli, kfp_api, config):
    code, out, err = cli("schedule", "--host", kfp_api.url, "--config", str(config))
    assert code == 0, err
    (job,) = kfp_api.recurring_runs
    assert job["display_name"] == "nightly"
    assert job["trigger"]["cron_schedule"]["cron"] == "0 30 1 * * *"
    assert job["max_concurrency"] == "1" or job["max_concurrency"] == 1
    assert job["no_catchup"] is True
    assert job["runtime_config"]["parameters"]["budgets"] == ["1%", "500"]
    assert "recurring run" in out and "0 30 1 * * *" in out


def test_schedule_runs_the_nightly_labeling_loop_from_its_manifest_config(cli, kfp_api):
    from pathlib import Path

    config = Path(__file__).resolve().parents[2] / "manifests" / "labeling-loop" / "pipeline-config.yaml"
    code, out, err = cli("schedule", "--host", kfp_api.url, "--config", str(config))
    assert code == 0, err
    (pipeline,) = kfp_api.pipelines.values()
    assert pipeline["display_name"] == "active-finetuning-select-for-annotation"
    (uploaded,) = kfp_api.versions[pipeline["pipeline_id"]]
    assert uploaded["pipeline_spec"][0]["pipelineInfo"]["name"] == "active-finetuning-select-for-annotation"
    (job,) = kfp_api.recurring_runs
    assert job["display_name"] == "nightly-labeling-loop" and job["trigger"]["cron_schedule"]["cron"] == "0 0 1 * * *"
    params = job["runtime_config"]["parameters"]
    assert params["labeled_uri"].endswith("/loop/labels/") and params["label_studio_project"] == 1
    code, _, err = cli("submit", "--host", kfp_api.url, "--config", str(config), "--set", "methods=[bilaf]")
    assert code == 2 and "the select-for-annotation pipeline takes" in err


def test_bad_requests_fail_with_exit_code_2_and_send_nothing(cli, kfp_api, config):
    code, _, err = cli("schedule", "--host", kfp_api.url, "--config", str(config), "--cron", "30 1 * * *")
    assert code == 2 and "seconds first" in err
    code, _, err = cli("submit", "--host", kfp_api.url, "--config", str(config), "--set", "budget=1%")
    assert code == 2 and "unknown parameter(s) ['budget']" in err
    assert kfp_api.requests == []


def test_an_unreachable_host_is_named(cli, config):
    code, _, err = cli("submit", "--host", "http://127.0.0.1:9", "--config", str(config))
    assert code == 2 and "http://127.0.0.1:9" in err
