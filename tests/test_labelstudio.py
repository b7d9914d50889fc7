"""The annotation round trip against a real Label Studio server: a project with the exported labeling
config, the selection's tasks pushed (twice: the second push adds nothing), annotated through the API
as an annotator would, pulled back and imported as labels."""

import json
import time

import numpy as np
import pytest
import requests

from active_finetuning.cli.main import main
from active_finetuning.data.artifacts import Selection, write_selection
from active_finetuning.data.manifest import build_manifest, write_manifest
from active_finetuning.errors import InputError
from active_finetuning.labels import label_studio_config, read_labels, task_ref
from active_finetuning.labelstudio import KEY_ENV, LabelStudio

CLASSES = ["cat", "dog", "frog"]


@pytest.fixture
def pool(tmp_path):
    from PIL import Image

    for i in range(9):
        folder = tmp_path / "pool" / CLASSES[i % 3]
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (30 * i, 80 * (i % 3), 0)).save(folder / f"{i}.png")
    manifest = build_manifest(str(tmp_path / "pool"))
    write_manifest(manifest, str(tmp_path / "manifest.parquet"))
    rows = np.asarray([7, 2, 4, 0])
    write_selection(Selection(rows, manifest.sample_ids[rows], np.asarray(["pick"] * 4, dtype=object)),
                    str(tmp_path / "selection.parquet"))
    return tmp_path, manifest, rows


def test_push_annotate_pull_import(label_studio, pool, monkeypatch, capsys):
    url, key = label_studio
    folder, manifest, rows = pool
    monkeypatch.setenv(KEY_ENV, key)
    server = LabelStudio(url)
    project = server.create_project("pool", label_studio_config(manifest.classes))
    common = ["--selection", str(folder / "selection.parquet"), "--manifest", str(folder / "manifest.parquet"),
              "--out", str(folder / "tasks.json"), "--label-studio-url", url, "--label-studio-project", str(project)]
    assert main(["export-for-annotation", *common]) == 0
    assert f"pushed 4 tasks to project {project}" in capsys.readouterr().out
    assert main(["export-for-annotation", *common]) == 0  # a retried step: nothing twice
    assert "pushed 0 tasks" in (out := capsys.readouterr().out) and "(4 already there)" in out
    refs = {task_ref(s) for s in manifest.sample_ids[rows]}
    for page_size in (1, 3, 4, 500):  # page by page, the last one partial, full or the only one
        assert server.task_refs(project, page_size=page_size) == refs

    headers = {"Authorization": f"Token {key}"}
    listed = requests.get(f"{url}/api/tasks", params={"project": project, "page_size": 100}, headers=headers,
                          timeout=30).json()["tasks"]
    assert len(listed) == 4
    assert not any(name in json.dumps(t["data"]) for t in listed for name in CLASSES)  # no answer shown
    by_ref = {task_ref(s): i for i, s in enumerate(manifest.sample_ids.tolist())}
    for task in listed[:3]:  # an annotator labels three of the four
        truth = manifest.classes[manifest.labels[by_ref[task["data"]["ref"]]]]
        answer = {"result": [{"from_name": "label", "to_name": "image", "type": "choices",
                              "value": {"choices": [truth]}}]}
        response = requests.post(f"{url}/api/tasks/{task['id']}/annotations/", json=answer, headers=headers,
                                 timeout=30)
        assert response.status_code == 201, response.text

    pulled = ["import-labels", str(folder / "export.json"), "--manifest", str(folder / "manifest.parquet"),
              "--selection", str(folder / "selection.parquet"), "--out", str(folder / "labels.parquet"),
              "--label-studio-url", url, "--label-studio-project", str(project)]
    assert main(pulled) == 2  # one selected image is not annotated yet
    assert "1 selected samples have no label" in capsys.readouterr().err and not (folder / "labels.parquet").exists()
    assert main([*pulled, "--allow-partial"]) == 0
    assert "pulled 3 annotated tasks" in capsys.readouterr().out
    labels = read_labels(str(folder / "labels.parquet"))
    assert len(labels) == 3 and set(labels.sample_ids) <= set(manifest.sample_ids[rows])
    truth = dict(zip(manifest.sample_ids.tolist(), manifest.labels.tolist()))
    assert all(truth[s] == label for s, label in zip(labels.sample_ids, labels.labels))


def test_a_wrong_key_or_project_is_a_clear_error_that_never_shows_the_key(label_studio, monkeypatch):
    url, key = label_studio
    monkeypatch.setenv(KEY_ENV, "not-the-key-0123456789")
    with pytest.raises(InputError, match="refused the API key .HTTP 401") as caught:
        LabelStudio(url).export(1)
    assert "not-the-key" not in str(caught.value)
    monkeypatch.setenv(KEY_ENV, key)
    with pytest.raises(InputError, match="HTTP 404.*check the project id"):
        LabelStudio(url).export(987654)
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(InputError, match=f"set {KEY_ENV}"):
        LabelStudio(url)
    started = time.monotonic()
    with pytest.raises(InputError, match="cannot reach Label Studio at http://127.0.0.1:9 after 3 s of retries"):
        LabelStudio("http://127.0.0.1:9", api_key="x" * 20, retry_timeout=3).export(1)
    assert time.monotonic() - started < 30  # retried for about retry_timeout, not the default minute
    for bad in (-1, float("inf"), float("nan")):
        with pytest.raises(InputError, match="retry_timeout must be a finite number of seconds >= 0"):
            LabelStudio("http://127.0.0.1:9", api_key="x" * 20, retry_timeout=bad)


def test_a_push_that_cannot_happen_fails_before_any_file_is_written(pool, monkeypatch, capsys):
    folder, _, _ = pool
    common = ["--selection", str(folder / "selection.parquet"), "--manifest", str(folder / "manifest.parquet"),
              "--out", str(folder / "tasks.csv"), "--label-studio-project", "1", "--label-studio-url",
              "http://127.0.0.1:9"]
    assert main(["export-for-annotation", *common, "--format", "csv"]) == 2
    assert "drop --format csv" in capsys.readouterr().err
    monkeypatch.delenv(KEY_ENV, raising=False)
    assert main(["export-for-annotation", *common]) == 2
    assert f"set {KEY_ENV}" in capsys.readouterr().err
    assert not (folder / "tasks.csv").exists()
