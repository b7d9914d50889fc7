"""Labels in and out: annotation export, labels import, and oracle labels for studies.

The **labels** artifact (docs/design.md, "Artifacts") is a Parquet table ``sample_id`` (string),
``label`` (int64), with schema metadata ``active_finetuning`` holding the class names, the source
and the selection's identity.

* :func:`export_for_annotation` — the selected images, in pick order, as a Label Studio task import
  (JSON, image URLs: ``gs://`` as is or signed) or a plain CSV.
* :func:`import_labels` — a Label Studio export (JSON-min, or the full JSON) or a CSV
  ``sample_id,label`` (class index or class name) turned into the labels artifact.
* :func:`oracle_labels` — the selection joined with the manifest's ground truth, as if annotated.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from .data import storage
from .data.artifacts import (
    check_unique_ids,
    metadata_of,
    read_table,
    with_metadata,
    write_table,
)
from .data.manifest import manifest_rows
from .errors import InputError

EXPORT_FORMATS = ("label-studio", "csv")
IMPORT_FORMATS = ("auto", "label-studio", "csv")


@dataclass
class Labels:
    """Annotated samples: ``labels[i]`` (a class index) belongs to ``sample_ids[i]``."""

    sample_ids: np.ndarray  # object array of str
    labels: np.ndarray  # int64
    classes: list[str] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sample_ids = np.asarray(self.sample_ids, dtype=object)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if len(self.sample_ids) != len(self.labels):
            raise InputError(f"labels: {len(self.sample_ids)} sample ids but {len(self.labels)} labels")
        if len(self.sample_ids) == 0:
            raise InputError("the labeled set is empty; annotate at least one selected sample")
        check_unique_ids(self.sample_ids)
        if self.labels.min() < 0:
            raise InputError(f"column 'label' has negative class indices (min {self.labels.min()})")
        if self.classes is not None and self.labels.max() >= len(self.classes):
            bad = self.sample_ids[int(np.argmax(self.labels))]
            raise InputError(
                f"column 'label' has class index {self.labels.max()} (sample_id {bad!r}) but only "
                f"{len(self.classes)} classes are known: {list(self.classes)}"
            )

    def __len__(self) -> int:
        return len(self.sample_ids)

    def to_table(self) -> pa.Table:
        table = pa.table({
            "sample_id": pa.array(self.sample_ids.tolist(), type=pa.string()),
            "label": pa.array(self.labels, type=pa.int64()),
        })
        return with_metadata(table, {**self.metadata, "classes": self.classes})

    def identity(self) -> str:
        import hashlib

        digest = hashlib.blake2b(digest_size=12)
        digest.update("\x1f".join(self.sample_ids.tolist()).encode())
        digest.update(self.labels.tobytes())
        return digest.hexdigest()


def write_labels(labels: Labels, uri: str) -> None:
    write_table(labels.to_table(), uri)


def read_labels(uri: str) -> Labels:
    """Read and validate a labels artifact."""
    table = read_table(uri, "labels")
    for column in ("sample_id", "label"):
        if column not in table.column_names:
            raise InputError(f"labels {uri!r} has no {column!r} column (columns: {table.column_names})")
    column = table.column("label")
    if not pa.types.is_integer(column.type):
        raise InputError(f"column 'label' of labels {uri!r} must hold integers, got {column.type}")
    if column.null_count:
        raise InputError(f"column 'label' of labels {uri!r} has {column.null_count} missing labels")
    metadata = metadata_of(table.schema)
    classes = metadata.pop("classes", None)
    return Labels(np.asarray(table.column("sample_id").to_pylist(), dtype=object),
                  column.to_numpy().astype(np.int64), classes, metadata)


def _selection_metadata(selection) -> dict[str, Any]:
    meta = getattr(selection, "metadata", None) or {}
    keys = ("method", "budget", "seed", "features_identity")
    return {"selection": {k: meta[k] for k in keys if k in meta}}


# ----------------------------------------------------------------------------------------------
# oracle mode


def oracle_labels(selection, manifest) -> Labels:
    """The selected samples with the manifest's ground-truth labels, as if annotated (for studies)."""
    sample_ids = list(selection.sample_ids)
    if not sample_ids:
        raise InputError("the selection is empty; nothing to label")
    if manifest.labels is None:
        raise InputError("the manifest has no 'label' column; oracle labels need ground truth in the manifest")
    rows = manifest_rows(manifest, sample_ids, "the selection")
    return Labels(np.asarray(sample_ids, dtype=object), np.asarray(manifest.labels)[rows],
                  manifest.classes, {"source": "oracle", **_selection_metadata(selection)})


# ----------------------------------------------------------------------------------------------
# annotation export


def image_url(uri: str, signed: bool = False, expiry: timedelta = timedelta(days=7), credentials=None) -> str:
    """The URL an annotation tool loads ``uri`` from: ``gs://`` as is, or a V4 signed HTTPS URL."""
    if not signed:
        return uri
    if storage.scheme_of(uri) != "gs":
        raise InputError(f"signed URLs need gs:// image URIs, got {uri!r}; export without --signed-urls")
    from google.cloud import storage as gcs

    bucket, _, name = uri[len("gs://"):].partition("/")
    if not bucket or not name:
        raise InputError(f"{uri!r} is not a gs://bucket/object URI")
    from google.auth.exceptions import GoogleAuthError

    try:
        client = gcs.Client(credentials=credentials, project="-") if credentials is not None else gcs.Client()
        credentials = credentials or client._credentials
        extra = {}
        if not hasattr(credentials, "sign_bytes") and hasattr(credentials, "service_account_email"):
            # Workload Identity / metadata-server credentials hold no key: sign through the IAM API
            import google.auth.transport.requests

            credentials.refresh(google.auth.transport.requests.Request())
            extra = {"service_account_email": credentials.service_account_email, "access_token": credentials.token}
        blob = client.bucket(bucket).blob(name)
        return blob.generate_signed_url(version="v4", expiration=expiry, method="GET", credentials=credentials,
                                        **extra)
    except (AttributeError, GoogleAuthError) as err:  # credentials that cannot sign
        raise InputError(
            f"cannot sign a URL for {uri!r}: the credentials in the environment cannot sign ({err}); use a "
            "service account key or export gs:// URIs without --signed-urls"
        ) from err


def _data_url(data: bytes) -> str:
    kind = "image/png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "image/jpeg" if data[:2] == b"\xff\xd8" else \
        "image/webp" if data[8:12] == b"WEBP" else "application/octet-stream"
    return f"data:{kind};base64,{base64.b64encode(data).decode()}"


def task_ref(sample_id: str) -> str:
    """The opaque id a Label Studio task carries instead of the sample id, which can give the answer
    away (``frog/2997.png``): a 64-bit BLAKE2b digest of the id. Import maps it back through the manifest."""
    import hashlib

    return hashlib.blake2b(str(sample_id).encode(), digest_size=8, person=b"af-task-ref").hexdigest()


def annotation_tasks(selection, manifest, signed_urls: bool = False, expiry: timedelta = timedelta(days=7),
                     credentials=None) -> list[dict[str, Any]]:
    """One task per selected sample, in pick order: the image (``gs://`` or ``http(s)`` as they are
    or signed; image bytes and local files as ``data:`` URLs, which Label Studio shows without any
    storage set-up), the opaque ``ref``, the pick ``rank`` and ``role``; no sample id."""
    sample_ids = list(selection.sample_ids)
    if not sample_ids:
        raise InputError("the selection is empty; nothing to annotate")
    rows = manifest_rows(manifest, sample_ids, "the selection")
    uris = getattr(manifest, "uris", None)
    roles = list(getattr(selection, "role", ["pick"] * len(sample_ids)))
    tasks = []
    for rank, (sid, row, role) in enumerate(zip(sample_ids, rows, roles)):
        uri = str(uris[row]) if uris is not None and uris[row] else None
        if uri is not None and storage.scheme_of(uri) in ("gs", "http", "https"):
            url = image_url(uri, signed_urls, expiry, credentials)
        elif signed_urls:
            raise InputError("signed URLs need gs:// images; this manifest holds image bytes or local files: "
                             "export without --signed-urls")
        else:
            url = _data_url(manifest.load_bytes(int(row)))
        tasks.append({"data": {"image": url, "ref": task_ref(sid), "rank": rank, "role": str(role)}})
    return tasks


def label_studio_config(classes: Sequence[str] | None, field_name: str = "label") -> str:
    """A Label Studio labeling config for image classification whose export :func:`import_labels` reads."""
    choices = "\n".join(f'    <Choice value="{name}"/>' for name in (classes or []))
    return (f'<View>\n  <Image name="image" value="$image"/>\n'
            f'  <Choices name="{field_name}" toName="image" choice="single" required="true">\n{choices}\n'
            "  </Choices>\n</View>\n")


def export_for_annotation(selection, manifest, out: str, format: str = "label-studio",
                          signed_urls: bool = False, expiry: timedelta = timedelta(days=7),
                          credentials=None) -> list[dict[str, Any]]:
    """Write the annotation tasks of ``selection`` to ``out`` (Label Studio JSON or CSV), atomically."""
    if format not in EXPORT_FORMATS:
        raise InputError(f"format must be one of {EXPORT_FORMATS}, got {format!r}")
    tasks = annotation_tasks(selection, manifest, signed_urls, expiry, credentials)
    with storage.atomic_output(out) as tmp:
        if format == "label-studio":
            tmp.write_text(json.dumps(tasks, indent=1) + "\n")
        else:
            with open(tmp, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=["rank", "sample_id", "role", "image"])
                writer.writeheader()
                for sid, task in zip(selection.sample_ids, tasks):  # the team's own file: it names the ids
                    writer.writerow({"rank": task["data"]["rank"], "sample_id": str(sid),
                                     "role": task["data"]["role"], "image": task["data"]["image"]})
    return tasks


# ----------------------------------------------------------------------------------------------
# labels import


def _read_text(uri: str) -> str:
    with storage.open_input(uri) as handle:
        data = handle.read()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise InputError(f"annotations {uri!r} are not UTF-8 text: {err}") from err


def _label_studio_pairs(items: list, field_name: str, uri: str, manifest) -> list[tuple[str, Any]]:
    """(sample_id, label value or None) from a Label Studio JSON-min or full JSON export; a task's
    opaque ``ref`` is mapped back to its sample id through the manifest."""
    refs: dict[str, str] | None = None
    pairs = []
    for number, item in enumerate(items):
        if not isinstance(item, dict):
            raise InputError(f"annotations {uri!r}: item {number} is not a JSON object")
        data = item.get("data", item)  # full export nests the task data; JSON-min flattens it
        if not isinstance(data, dict):
            raise InputError(f"annotations {uri!r}: item {number} has 'data' of type {type(data).__name__}, not an "
                             "object; import a Label Studio export of tasks made by export-for-annotation")
        sid = data.get("sample_id")
        if sid is None and "ref" in data:
            if refs is None:
                refs = {task_ref(s): s for s in manifest.sample_ids.tolist()}
            sid = refs.get(str(data["ref"]))
            if sid is None:
                raise InputError(f"annotations {uri!r}: item {number} has ref {data['ref']!r}, which is no sample "
                                 "of this manifest; import against the manifest the tasks were exported from")
        if sid is None:
            raise InputError(
                f"annotations {uri!r}: item {number} has neither 'ref' nor 'sample_id'; import tasks made by "
                "export-for-annotation"
            )
        if "annotations" in item:
            value = None
            for annotation in _list_of_objects(item["annotations"], f"item {number} 'annotations'", uri):
                if annotation.get("was_cancelled"):
                    continue
                for result in _list_of_objects(annotation.get("result", []), f"item {number} 'result'", uri):
                    if result.get("from_name") == field_name:
                        chosen = result.get("value", {})
                        value = chosen.get("choices") if isinstance(chosen, dict) else chosen
            pairs.append((str(sid), value))
        else:
            pairs.append((str(sid), item.get(field_name)))
    return pairs


def _list_of_objects(value: Any, where: str, uri: str) -> list:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise InputError(f"annotations {uri!r}: {where} must be a list of objects, got {json.dumps(value)[:60]}; "
                         "import the JSON export of Label Studio unchanged")
    return value


def _csv_pairs(text: str, uri: str) -> list[tuple[str, Any]]:
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or not {"sample_id", "label"} <= set(reader.fieldnames):
        raise InputError(
            f"annotations {uri!r} need a header with 'sample_id' and 'label' columns, got {reader.fieldnames}"
        )
    return [(row["sample_id"], row["label"]) for row in reader]


LABEL_FORMATS = ("auto", "index", "name")


def _class_index(value: Any, classes: Sequence[str] | None, label_format: str) -> tuple[int | None, str]:
    """(class index, problem) of one annotation value: an index, a class name, or Label Studio's
    choices (names). ``problem`` is "" or one of "missing", "several", "unknown", "ambiguous": an
    integer that is also the *name* of another class (folders named 1, 2, 10) is never guessed."""
    if isinstance(value, dict):
        value = value.get("choices")
    if isinstance(value, list):
        if len(value) != 1:
            return None, ("several" if value else "missing")
        value, label_format = value[0], "name"  # a Label Studio choice is a class name
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None, "missing"
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return None, "unknown"
    text = str(value).strip()
    by_name = list(classes).index(text) if classes is not None and text in classes else None
    number = int(text) if text.lstrip("-").isdigit() else None
    if label_format == "name" or number is None:
        return (by_name, "") if by_name is not None else (None, "unknown")
    known = number >= 0 and (classes is None or number < len(classes))
    if label_format == "index":
        return (number, "") if known else (None, "unknown")
    if by_name is not None and by_name != number:
        return None, "ambiguous"
    return (number, "") if known else (None, "unknown")


def import_labels(annotations_uri: str, manifest, selection=None, format: str = "auto",
                  field_name: str = "label", allow_partial: bool = False, label_format: str = "auto") -> Labels:
    """Labels from an annotation export, checked against the manifest (and the selection, if given).

    Class names map to indices through the manifest's ``classes``. Errors name the offending ids:
    ids not in the manifest, ids not selected, unknown class names, samples without a label, and
    (unless ``allow_partial``) selected samples missing from the export.
    """
    if format not in IMPORT_FORMATS:
        raise InputError(f"format must be one of {IMPORT_FORMATS}, got {format!r}")
    if label_format not in LABEL_FORMATS:
        raise InputError(f"label_format must be one of {LABEL_FORMATS}, got {label_format!r}")
    text = _read_text(annotations_uri)
    if format == "auto":
        format = "label-studio" if text.lstrip()[:1] in ("[", "{") else "csv"
    if format == "label-studio":
        try:
            items = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(f"annotations {annotations_uri!r} are not valid JSON: {err}") from err
        if not isinstance(items, list):
            raise InputError(f"annotations {annotations_uri!r} must be a JSON list of tasks (a Label Studio export)")
        pairs = _label_studio_pairs(items, field_name, annotations_uri, manifest)
    else:
        pairs = _csv_pairs(text, annotations_uri)
    if not pairs:
        raise InputError(f"annotations {annotations_uri!r} hold no labels; the labeled set is empty")

    classes = manifest.classes
    sample_ids = [sid for sid, _ in pairs]
    duplicated = [sid for sid, count in Counter(sample_ids).items() if count > 1]
    if duplicated:
        raise InputError(f"annotations label {len(duplicated)} samples twice (first: {duplicated[0]!r}); keep one label per sample")
    manifest_rows(manifest, sample_ids, f"annotations {annotations_uri!r}")
    if selection is not None:
        selected = set(selection.sample_ids)
        extra = [sid for sid in sample_ids if sid not in selected]
        if extra:
            raise InputError(
                f"annotations label {len(extra)} samples that were not selected (first: "
                f"{', '.join(map(repr, extra[:3]))}); import labels for the selection they were exported from"
            )
    read = [_class_index(value, classes, label_format) for _, value in pairs]
    indices = [index for index, _ in read]

    def having(problem: str) -> list[tuple[str, Any]]:
        return [(sid, value) for (sid, value), (_, found) in zip(pairs, read) if found == problem]

    if missing := having("missing"):
        raise InputError(
            f"{len(missing)} samples have no label (first: {', '.join(repr(sid) for sid, _ in missing[:3])}); "
            "finish the annotation or remove them from the export"
        )
    if several := having("several"):
        raise InputError(f"{len(several)} samples have several choices (first: {several[0][0]!r}); "
                         "pick one class per image")
    if ambiguous := having("ambiguous"):
        sid, value = ambiguous[0]
        number = int(str(value).strip())
        raise InputError(
            f"{len(ambiguous)} labels could be class indices or class names (first: sample_id {sid!r} labeled "
            f"{value!r}: class index {number} is class {classes[number]!r}, but a class is named {str(value)!r}); "
            "say which with label_format='index' or 'name' (--label-format)"
        )
    if bad := having("unknown"):
        hint = f"known classes: {list(classes)}" if classes is not None else \
            "the manifest has no 'classes' list, so labels must be class indices"
        raise InputError(
            f"{len(bad)} labels name unknown classes (first: sample_id {bad[0][0]!r} labeled "
            f"{bad[0][1]!r}); {hint}"
        )
    if selection is not None and not allow_partial:
        labeled = set(sample_ids)
        unlabeled = [sid for sid in selection.sample_ids if sid not in labeled]
        if unlabeled:
            raise InputError(
                f"{len(unlabeled)} selected samples have no label (first: {unlabeled[0]!r}); finish the "
                "annotation, or pass allow_partial (--allow-partial) to train on the labeled part"
            )
    metadata = {"source": f"import:{format}", "annotations": annotations_uri}
    if selection is not None:
        metadata.update(_selection_metadata(selection))
    return Labels(np.asarray(sample_ids, dtype=object), np.asarray(indices, dtype=np.int64), classes, metadata)


def check_labeled_set(labels: np.ndarray, what: str = "labeled set") -> None:
    """A classifier needs at least two samples of at least two classes."""
    if len(labels) == 0:
        raise InputError(f"the {what} is empty; label at least two samples of two classes")
    distinct = np.unique(labels)
    if len(distinct) < 2:
        raise InputError(
            f"the {what} has a single class ({int(distinct[0])}) in {len(labels)} samples; a classifier "
            "needs at least two classes — raise the budget or check the labels"
        )
