import base64
import csv
import io
import json
import re
from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import numpy as np
import pyarrow as pa
import pytest

from active_finetuning.cli.main import main
from active_finetuning.data.artifacts import Selection, write_selection
from active_finetuning.data.manifest import Manifest, write_manifest
from active_finetuning.errors import InputError
from active_finetuning.labels import (
    Labels,
    export_for_annotation,
    import_labels,
    task_ref,
    label_studio_config,
    oracle_labels,
    read_labels,
    write_labels,
)
from tests.conftest import run_cli

CLASSES = ["cat", "dog", "frog"]


def _manifest(with_bytes=False):
    ids = np.asarray([f"img/{i:03d}.png" for i in range(12)], dtype=object)
    labels = np.arange(12) % 3
    if with_bytes:
        images = pa.array([b"\x89PNG\r\n\x1a\n" + bytes([i]) * 5 for i in range(12)], type=pa.binary())
        return Manifest(ids, None, images, labels, CLASSES)
    uris = np.asarray([f"gs://pool-bucket/images/{i:03d}.png" for i in range(12)], dtype=object)
    return Manifest(ids, uris, None, labels, CLASSES)


def _selection(rows):
    ids = np.asarray([f"img/{i:03d}.png" for i in rows], dtype=object)
    return Selection(np.asarray(rows), ids, np.asarray(["core"] + ["boundary"] * (len(rows) - 1), dtype=object),
                     metadata={"method": "bilaf", "budget": len(rows), "seed": 4, "features_identity": "abc"})


@pytest.fixture
def files(tmp_path):
    write_manifest(_manifest(), str(tmp_path / "manifest.parquet"))
    write_selection(_selection([7, 2, 9, 4]), str(tmp_path / "selection.parquet"))
    return tmp_path


def test_label_studio_export_keeps_pick_order_and_gs_uris(tmp_path):
    tasks = export_for_annotation(_selection([7, 2, 9]), _manifest(), str(tmp_path / "tasks.json"))
    written = json.loads((tmp_path / "tasks.json").read_text())
    assert written == tasks
    assert [t["data"]["ref"] for t in written] == [task_ref(f"img/{i:03d}.png") for i in (7, 2, 9)]
    assert not any("sample_id" in t["data"] or "img/" in t["data"]["ref"] for t in written)  # never the answer
    assert [t["data"]["image"] for t in written] == [f"gs://pool-bucket/images/{i:03d}.png" for i in (7, 2, 9)]
    assert [t["data"]["rank"] for t in written] == [0, 1, 2] and written[0]["data"]["role"] == "core"


def test_csv_export_and_data_urls_for_manifests_holding_bytes(tmp_path):
    manifest = _manifest(with_bytes=True)
    export_for_annotation(_selection([5, 1]), manifest, str(tmp_path / "tasks.csv"), format="csv")
    rows = list(csv.DictReader(io.StringIO((tmp_path / "tasks.csv").read_text())))
    assert [r["sample_id"] for r in rows] == ["img/005.png", "img/001.png"] and rows[1]["rank"] == "1"
    kind, payload = rows[0]["image"].split(",", 1)
    assert kind == "data:image/png;base64" and base64.b64decode(payload) == manifest.load_bytes(5)


def test_local_image_files_go_as_data_urls_and_import_maps_refs_back(tmp_path):
    from PIL import Image

    from active_finetuning.data.manifest import build_manifest

    for i, name in enumerate(("cat", "dog", "frog")):
        (tmp_path / "pool" / name).mkdir(parents=True)
        Image.new("RGB", (4, 4), (i * 80, 0, 0)).save(tmp_path / "pool" / name / f"{i}.png")
    manifest = build_manifest(str(tmp_path / "pool"))
    selection = Selection(np.asarray([2, 0]), manifest.sample_ids[[2, 0]], np.asarray(["pick", "pick"], dtype=object))
    tasks = export_for_annotation(selection, manifest, str(tmp_path / "tasks.json"))
    assert all(t["data"]["image"].startswith("data:image/png;base64,") for t in tasks)  # no local path
    assert "frog" not in json.dumps(tasks)  # the class folder is not shown to annotators
    export = [{"id": n, "data": task["data"], "annotations": [{"result": [
        {"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [answer]}}]}]}
        for n, (task, answer) in enumerate(zip(tasks, ("frog", "cat")))]
    (tmp_path / "export.json").write_text(json.dumps(export))
    labels = import_labels(str(tmp_path / "export.json"), manifest, selection)
    assert labels.sample_ids.tolist() == manifest.sample_ids[[2, 0]].tolist() and labels.labels.tolist() == [2, 0]
    export[0]["data"]["ref"] = "0123456789abcdef"
    (tmp_path / "export.json").write_text(json.dumps(export))
    with pytest.raises(InputError, match="ref '0123456789abcdef', which is no sample of this manifest"):
        import_labels(str(tmp_path / "export.json"), manifest, selection)


def test_signed_urls_are_v4_signatures_of_the_gs_object(tmp_path, monkeypatch):
    # Signing is local; without this an emulator started by earlier tests would set the URL's host.
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from google.oauth2 import service_account

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    credentials = service_account.Credentials.from_service_account_info({
        "type": "service_account", "client_email": "labeler@project.iam.gserviceaccount.com",
        "private_key": pem, "private_key_id": "1", "token_uri": "https://oauth2.googleapis.com/token",
        "project_id": "project"})
    tasks = export_for_annotation(_selection([3]), _manifest(), str(tmp_path / "t.json"), signed_urls=True,
                                  expiry=timedelta(hours=2), credentials=credentials)
    url = urlparse(tasks[0]["data"]["image"])
    query = parse_qs(url.query)
    assert url.scheme == "https" and url.path == "/pool-bucket/images/003.png"
    assert query["X-Goog-Algorithm"] == ["GOOG4-RSA-SHA256"] and query["X-Goog-Expires"] == ["7200"]
    assert query["X-Goog-Credential"][0].startswith("labeler@project.iam.gserviceaccount.com/")
    assert len(query["X-Goog-Signature"][0]) == 512  # hex of a 2048-bit RSA signature
    with pytest.raises(InputError, match="image bytes"):
        export_for_annotation(_selection([3]), _manifest(with_bytes=True), str(tmp_path / "u.json"),
                              signed_urls=True, credentials=credentials)
    assert not (tmp_path / "u.json").exists()


def test_credentials_that_cannot_sign_are_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")  # anonymous credentials, no key
    with pytest.raises(InputError, match="cannot sign a URL for 'gs://pool-bucket/images/003.png'"):
        export_for_annotation(_selection([3]), _manifest(), str(tmp_path / "t.json"), signed_urls=True)
    assert not (tmp_path / "t.json").exists()


def test_label_studio_config_names_every_class():
    config = label_studio_config(CLASSES)
    assert all(f'<Choice value="{c}"/>' in config for c in CLASSES) and '<Choices name="label"' in config


def _json_min(pairs):
    return [{"image": f"gs://pool-bucket/images/{sid[4:]}", "sample_id": sid, "id": n, "label": value,
             "annotator": 1, "lead_time": 3.2} for n, (sid, value) in enumerate(pairs)]


def test_json_min_import_maps_class_names_and_round_trips(files):
    (files / "export.json").write_text(json.dumps(_json_min(
        [("img/007.png", "dog"), ("img/002.png", "frog"), ("img/009.png", "cat"), ("img/004.png", "dog")])))
    result = run_cli("import-labels", str(files / "export.json"), "--manifest", str(files / "manifest.parquet"),
                     "--selection", str(files / "selection.parquet"), "--out", str(files / "labels.parquet"))
    assert result.returncode == 0, result.stderr
    labels = read_labels(str(files / "labels.parquet"))
    assert labels.sample_ids.tolist() == ["img/007.png", "img/002.png", "img/009.png", "img/004.png"]
    assert labels.labels.tolist() == [1, 2, 0, 1] and labels.classes == CLASSES
    assert labels.metadata["selection"] == {"method": "bilaf", "budget": 4, "seed": 4, "features_identity": "abc"}


def test_full_json_export_and_csv_with_indices_or_names(tmp_path):
    manifest = _manifest()
    full = [{"id": 1, "data": {"image": "gs://x", "sample_id": "img/001.png"},
             "annotations": [{"was_cancelled": True, "result": [
                 {"from_name": "label", "type": "choices", "value": {"choices": ["cat"]}}]},
                             {"result": [{"from_name": "label", "type": "choices", "value": {"choices": ["frog"]}}]}]}]
    (tmp_path / "full.json").write_text(json.dumps(full))
    assert import_labels(str(tmp_path / "full.json"), manifest).labels.tolist() == [2]
    (tmp_path / "l.csv").write_text("sample_id,label\nimg/000.png,2\nimg/001.png,dog\n")
    labels = import_labels(str(tmp_path / "l.csv"), manifest)
    assert labels.labels.tolist() == [2, 1] and labels.metadata["source"] == "import:csv"


@pytest.mark.parametrize("rows, message", [
    ([("img/007.png", "dog"), ("img/999.png", "cat")], "not in the manifest .*'img/999.png'"),
    ([("img/007.png", "dog"), ("img/003.png", "cat")], "not selected .*'img/003.png'"),
    ([("img/007.png", "dog"), ("img/002.png", "horse")], "unknown classes .*'img/002.png' labeled 'horse'"),
    ([("img/007.png", "dog"), ("img/002.png", None)], "have no label .*'img/002.png'"),
    ([("img/007.png", "dog"), ("img/007.png", "cat")], "twice .*'img/007.png'"),
    ([("img/007.png", "dog"), ("img/002.png", "cat")], "2 selected samples have no label"),
    ([], "hold no labels"),
    ([("img/007.png", ["dog", "cat"])], "several choices"),
])
def test_bad_annotations_exit_2_name_the_ids_and_write_nothing(files, rows, message, capsys):
    (files / "export.json").write_text(json.dumps(_json_min(rows)))
    out = files / "labels.parquet"
    code = main(["import-labels", str(files / "export.json"), "--manifest", str(files / "manifest.parquet"),
                 "--selection", str(files / "selection.parquet"), "--out", str(out)])
    stderr = capsys.readouterr().err
    assert code == 2 and re.search(message, stderr), stderr
    assert not out.exists() and not list(files.glob(".*.tmp"))


def test_partial_annotation_is_accepted_when_asked(tmp_path):
    (tmp_path / "e.json").write_text(json.dumps(_json_min([("img/007.png", "dog")])))
    labels = import_labels(str(tmp_path / "e.json"), _manifest(), _selection([7, 2]), allow_partial=True)
    assert labels.sample_ids.tolist() == ["img/007.png"]


def test_oracle_labels_join_the_selection_with_ground_truth(files):
    labels = oracle_labels(_selection([7, 2, 9]), _manifest())
    assert labels.labels.tolist() == [1, 2, 0] and labels.metadata["source"] == "oracle"
    result = run_cli("oracle-labels", "--selection", str(files / "selection.parquet"), "--manifest",
                     str(files / "manifest.parquet"), "--out", str(files / "oracle.parquet"))
    assert result.returncode == 0, result.stderr
    assert read_labels(str(files / "oracle.parquet")).labels.tolist() == [1, 2, 0, 1]
    no_truth = Manifest(_manifest().sample_ids, _manifest().uris)
    with pytest.raises(InputError, match="no 'label' column"):
        oracle_labels(_selection([1, 2]), no_truth)
    with pytest.raises(InputError, match="not in the manifest"):
        oracle_labels(Selection(np.zeros(1), np.asarray(["zzz"], dtype=object), np.asarray(["pick"])), _manifest())


def test_labels_artifact_validates_on_read_and_write(tmp_path):
    with pytest.raises(InputError, match="empty"):
        Labels(np.asarray([], dtype=object), np.asarray([], dtype=np.int64))
    with pytest.raises(InputError, match="class index 5"):
        Labels(np.asarray(["a"], dtype=object), [5], classes=CLASSES)
    write_labels(Labels(np.asarray(["a", "b"], dtype=object), [0, 2], CLASSES, {"source": "x"}), str(tmp_path / "l.pq"))
    back = read_labels(str(tmp_path / "l.pq"))
    assert back.classes == CLASSES and back.metadata == {"source": "x"} and back.labels.tolist() == [0, 2]


def _numeric_folders(tmp_path):
    """A pool in class folders named 1, 2 and 10 (classes sort as '1', '10', '2')."""
    from active_finetuning.data.manifest import build_manifest

    for folder in ("1", "2", "10"):
        for i in range(2):
            path = tmp_path / "pool" / folder / f"{folder}-{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(_png(int(folder) * 10))
    return build_manifest(str(tmp_path / "pool"))


def _png(value):
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (value, value, value)).save(buffer, "PNG")
    return buffer.getvalue()


def test_numbers_that_are_also_class_names_are_never_guessed(tmp_path):
    manifest = _numeric_folders(tmp_path)
    assert manifest.classes == ["1", "10", "2"]
    rows = [(sid, int(label)) for sid, label in zip(manifest.sample_ids, manifest.labels)]  # the manifest's indices
    export = tmp_path / "indices.csv"
    export.write_text("sample_id,label\n" + "".join(f"{sid},{label}\n" for sid, label in rows))
    with pytest.raises(InputError, match=r"could be class indices or class names.*class index 1 is class '10'.*"
                                         r"label_format='index' or 'name'"):
        import_labels(str(export), manifest)
    as_indices = import_labels(str(export), manifest, label_format="index")
    assert as_indices.labels.tolist() == [label for _, label in rows]  # stored 0,0,1,1,2,2, as written
    names = tmp_path / "names.csv"
    names.write_text("sample_id,label\n" + "".join(f"{sid},{manifest.classes[label]}\n" for sid, label in rows))
    with pytest.raises(InputError, match="could be class indices or class names"):
        import_labels(str(names), manifest)  # the names are numbers too: said, never guessed
    assert import_labels(str(names), manifest, label_format="name").labels.tolist() == [label for _, label in rows]
    with pytest.raises(InputError, match="unknown classes"):
        import_labels(str(export), manifest, label_format="name")  # "0" names no class
