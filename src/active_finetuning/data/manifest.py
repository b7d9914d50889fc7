"""The manifest artifact (docs/design.md, "Artifacts"): which images make the pool.

Columns: ``sample_id`` (unique string), the image as ``uri`` (local path, ``file://`` or ``gs://``)
and/or ``image`` (encoded bytes), optional ``label`` (int64). Schema metadata ``active_finetuning``
(JSON) may hold ``classes`` (label names, index = label).

:func:`read_manifest` also reads Hugging Face-style Parquet as it is: ``image`` as binary or as a
``{bytes, path}`` struct, class names from the ``huggingface`` ClassLabel metadata or a ``classes``
key. :func:`build_manifest` makes one from an image folder tree (class sub-folders become labels)
or from a CSV/JSONL list.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InputError
from . import storage
from .artifacts import (
    METADATA_KEY,
    metadata_of,
    read_table,
    rows_of,
    with_metadata,
    write_table,
)
from .images import IMAGE_SUFFIXES

LIST_SUFFIXES = (".csv", ".jsonl", ".ndjson")


@dataclass
class Manifest:
    """A pool of images: row ``i`` is ``sample_ids[i]``, its image from ``images[i]`` or ``uris[i]``."""

    sample_ids: np.ndarray  # object array of str
    uris: np.ndarray | None = None  # object array of str (None entries where bytes are given)
    images: pa.Array | None = None  # binary array of encoded images (null where a uri is given)
    labels: np.ndarray | None = None  # int64
    classes: list[str] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # the URI it was read from, for messages

    def __post_init__(self) -> None:
        self.sample_ids = np.asarray(self.sample_ids, dtype=object)
        if self.uris is not None:
            self.uris = np.asarray(self.uris, dtype=object)
        if self.labels is not None:
            self.labels = np.asarray(self.labels, dtype=np.int64)
        validate_manifest(self)

    def __len__(self) -> int:
        return len(self.sample_ids)

    def load_bytes(self, i: int) -> bytes:
        """The encoded image of row ``i`` (from the ``image`` column, else read from its ``uri``)."""
        if self.images is not None:
            value = self.images[i]
            if value.is_valid:
                return value.as_py()
        uri = None if self.uris is None else self.uris[i]
        if uri is None:
            raise InputError(f"sample_id {self.sample_ids[i]!r} has neither image bytes nor a uri")
        try:
            return storage.read_bytes(uri)
        except InputError as err:
            raise InputError(f"image of sample_id {self.sample_ids[i]!r} cannot be read: {err}") from None

    def subset(self, sample_ids) -> "Manifest":
        """The rows of ``sample_ids``, in that order; an unknown id is an :class:`InputError`."""
        position = {sid: i for i, sid in enumerate(self.sample_ids.tolist())}
        wanted = list(sample_ids)
        missing = [sid for sid in wanted if sid not in position]
        if missing:
            raise InputError(f"{len(missing)} sample ids are not in manifest {self.source or '(in memory)'} "
                             f"(first: {missing[0]!r}); use ids from the same pool")
        return self.take(np.asarray([position[sid] for sid in wanted], dtype=np.int64))

    def take(self, rows) -> "Manifest":
        rows = np.asarray(rows, dtype=np.int64)
        return Manifest(
            self.sample_ids[rows],
            None if self.uris is None else self.uris[rows],
            None if self.images is None else self.images.take(pa.array(rows)),
            None if self.labels is None else self.labels[rows],
            self.classes, dict(self.metadata), self.source,
        )

    def to_table(self) -> pa.Table:
        columns: dict[str, Any] = {"sample_id": pa.array(self.sample_ids.tolist(), type=pa.string())}
        if self.uris is not None:
            columns["uri"] = pa.array(self.uris.tolist(), type=pa.string())
        if self.images is not None:
            columns["image"] = self.images.cast(pa.binary()) if self.images.type != pa.large_binary() else self.images
        if self.labels is not None:
            columns["label"] = pa.array(self.labels, type=pa.int64())
        metadata = dict(self.metadata)
        if self.classes is not None:
            metadata["classes"] = list(self.classes)
        return with_metadata(pa.table(columns), metadata)


def validate_manifest(manifest: Manifest) -> None:
    n = len(manifest.sample_ids)
    where = f"manifest {manifest.source!r}" if manifest.source else "manifest"
    if n == 0:
        raise InputError(f"{where} is empty (0 rows); it needs at least one image")
    if any(not isinstance(s, str) or not s for s in manifest.sample_ids):
        raise InputError(f"column 'sample_id' of {where} must hold non-empty strings")
    unique, counts = np.unique(manifest.sample_ids.astype(str), return_counts=True)
    if len(unique) != n:
        dup = unique[counts > 1]
        raise InputError(f"column 'sample_id' of {where} has {len(dup)} duplicated ids (first: {str(dup[0])!r}); "
                         "sample ids must be unique — de-duplicate the manifest")
    if manifest.uris is None and manifest.images is None:
        raise InputError(f"{where} has neither a 'uri' nor an 'image' column; give one of them")
    has_bytes = (np.zeros(n, bool) if manifest.images is None
                 else manifest.images.is_valid().to_numpy(zero_copy_only=False))
    has_uri = np.zeros(n, bool) if manifest.uris is None else np.asarray([u is not None for u in manifest.uris])
    neither = np.flatnonzero(~(has_bytes | has_uri))
    if len(neither):
        raise InputError(f"{where}: {len(neither)} rows have neither image bytes nor a uri (first: sample_id "
                         f"{manifest.sample_ids[neither[0]]!r})")
    if manifest.uris is not None:
        for sid, uri in zip(manifest.sample_ids, manifest.uris):
            if uri is not None:
                storage.check_scheme(uri, f"uri of sample_id {sid!r}:")
    if manifest.labels is not None:
        if len(manifest.labels) != n:
            raise InputError(f"column 'label' of {where} has {len(manifest.labels)} values for {n} rows")
        if (manifest.labels < 0).any():
            first = int(np.flatnonzero(manifest.labels < 0)[0])
            raise InputError(f"column 'label' of {where} has negative labels (first: sample_id "
                             f"{manifest.sample_ids[first]!r}); labels are class indices 0..K-1")
        if manifest.classes is not None and manifest.labels.max(initial=-1) >= len(manifest.classes):
            raise InputError(f"column 'label' of {where} has label {int(manifest.labels.max())} but only "
                             f"{len(manifest.classes)} classes are named")


# ----------------------------------------------------------------------------------------------
# reading


def read_manifest(uri: str) -> Manifest:
    """Read and validate a manifest Parquet file (ours or Hugging Face-style)."""
    return manifest_from_table(read_table(uri, "manifest"), source=str(uri))


def manifest_from_table(table: pa.Table, source: str = "") -> Manifest:
    names = table.column_names
    where = f"manifest {source!r}" if source else "manifest"
    images = uris = None
    struct_paths = None
    if "image" in names:
        images, struct_paths = _image_column(table.column("image"), where)
    if "uri" in names:
        uris = _string_list(table.column("uri"), "uri", where, allow_null=images is not None)
    elif struct_paths is not None and images is not None and images.null_count:
        uris = struct_paths  # {bytes: null, path: ...} rows point at files
    if "sample_id" in names:
        sample_ids = _string_list(table.column("sample_id"), "sample_id", where, allow_null=False)
    elif struct_paths is not None and all(p for p in struct_paths):
        sample_ids = struct_paths
    elif uris is not None and all(u for u in uris):
        sample_ids = uris
    else:
        raise InputError(f"{where} has no 'sample_id' column (columns: {names}); add one (unique strings)")
    if uris is not None and source:
        base = storage.parent(source)
        uris = [None if u is None else storage.resolve_relative(u, base) for u in uris]
    stored = metadata_of(table.schema)
    labels, classes = _labels(table, where)
    if classes is None:
        classes = _class_names(table.schema, stored)
    metadata = {k: v for k, v in stored.items() if k != "classes"}
    return Manifest(np.asarray(sample_ids, dtype=object), None if uris is None else np.asarray(uris, dtype=object),
                    images, labels, classes, metadata, source)


def _image_column(column: pa.ChunkedArray, where: str):
    column = column.combine_chunks()
    kind = column.type
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return column, None
    if pa.types.is_struct(kind) and kind.get_field_index("bytes") >= 0:
        images = column.field("bytes")
        if column.null_count:  # a null struct means no bytes either
            images = pc.if_else(column.is_valid(), images, pa.scalar(None, images.type))
        paths = None
        if kind.get_field_index("path") >= 0:
            paths = column.field("path").to_pylist()
        return images, paths
    raise InputError(f"column 'image' of {where} must be binary (encoded bytes) or a {{bytes, path}} struct, "
                     f"got {kind}")


def _string_list(column: pa.ChunkedArray, name: str, where: str, allow_null: bool) -> list:
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise InputError(f"column {name!r} of {where} must hold strings, got {column.type}")
    if column.null_count and not allow_null:
        raise InputError(f"column {name!r} of {where} has {column.null_count} null values")
    return column.to_pylist()


def _labels(table: pa.Table, where: str):
    if "label" not in table.column_names:
        return None, None
    column = table.column("label")
    if column.null_count:
        raise InputError(f"column 'label' of {where} has {column.null_count} null values; give every row a "
                         "label or drop the column")
    if pa.types.is_integer(column.type):
        return column.to_numpy().astype(np.int64), None
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return _index_labels(column.to_pylist())
    if pa.types.is_dictionary(column.type):
        return _index_labels([str(v) for v in column.to_pylist()])
    raise InputError(f"column 'label' of {where} must be integers or class names, got {column.type}")


def _index_labels(names: list[str]):
    classes = sorted(set(names))
    index = {c: i for i, c in enumerate(classes)}
    return np.asarray([index[n] for n in names], dtype=np.int64), classes


def _class_names(schema: pa.Schema, stored: dict) -> list[str] | None:
    if isinstance(stored.get("classes"), list):
        return [str(c) for c in stored["classes"]]
    raw = schema.metadata or {}
    if b"classes" in raw:
        return raw[b"classes"].decode().split(",")
    if b"huggingface" in raw:
        try:
            features = json.loads(raw[b"huggingface"]).get("info", {}).get("features", {})
            names = features.get("label", {}).get("names")
            if isinstance(names, list):
                return [str(n) for n in names]
        except (ValueError, AttributeError):
            return None
    return None


# ----------------------------------------------------------------------------------------------
# building


def build_manifest(source: str) -> Manifest:
    """A manifest from an image folder tree (local or ``gs://``), a CSV/JSONL list, or a Parquet manifest."""
    storage.check_scheme(source, "source")
    lowered = source.lower()
    if lowered.endswith(".parquet"):
        return read_manifest(source)
    if lowered.endswith(LIST_SUFFIXES):
        return _from_list(source)
    return _from_folder(source)


def _from_folder(root: str) -> Manifest:
    if storage.scheme_of(root) == "":
        root = os.path.abspath(root)
    files = [u for u in storage.list_prefix(root) if u.lower().endswith(IMAGE_SUFFIXES)]
    if not files:
        raise InputError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) under {root!r}; give a folder of "
                         "images, with one sub-folder per class for labels")
    prefix = root.rstrip("/") + "/"
    if storage.scheme_of(root) == "file":
        prefix = storage.local_path(root).as_uri().rstrip("/") + "/"
    relative = [_relative(u, root, prefix) for u in files]
    labels = classes = None
    if all("/" in r for r in relative):  # every image sits in a class sub-folder
        labels, classes = _index_labels([r.split("/", 1)[0] for r in relative])
    return Manifest(np.asarray(relative, dtype=object), np.asarray(files, dtype=object), None, labels, classes,
                    {"source": "folder"}, root)


def _relative(uri: str, root: str, prefix: str) -> str:
    if storage.scheme_of(root) == "":
        return os.path.relpath(uri, root).replace(os.sep, "/")
    return uri[len(prefix):]


def _from_list(source: str) -> Manifest:
    text = storage.read_bytes(source).decode("utf-8-sig")
    if source.lower().endswith(".csv"):
        rows = list(csv.DictReader(io.StringIO(text)))
    else:
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise InputError(f"line {number} of {source!r} is not JSON: {err}") from None
    if not rows:
        raise InputError(f"{source!r} lists no images")
    key = "uri" if "uri" in rows[0] else "path" if "path" in rows[0] else None
    if key is None:
        raise InputError(f"{source!r} needs a 'uri' (or 'path') column naming each image; found {list(rows[0])}")
    base = storage.parent(os.path.abspath(source) if storage.scheme_of(source) == "" else source)
    uris, ids, raw_labels = [], [], []
    for number, row in enumerate(rows, start=1):
        ref = row.get(key)
        if not ref:
            raise InputError(f"row {number} of {source!r} has an empty {key!r}")
        uris.append(storage.resolve_relative(str(ref), base))
        ids.append(str(row.get("sample_id") or ref))
        raw_labels.append(row.get("label"))
    labels = classes = None
    if any(v not in (None, "") for v in raw_labels):
        if any(v in (None, "") for v in raw_labels):
            raise InputError(f"{source!r}: some rows have a label and some do not; label all rows or none")
        if all(isinstance(v, int) or (isinstance(v, str) and v.lstrip("-").isdigit()) for v in raw_labels):
            labels = np.asarray([int(v) for v in raw_labels], dtype=np.int64)
        else:
            labels, classes = _index_labels([str(v) for v in raw_labels])
    return Manifest(np.asarray(ids, dtype=object), np.asarray(uris, dtype=object), None, labels, classes,
                    {"source": "list"}, source)


def write_manifest(manifest: Manifest, uri: str) -> None:
    write_table(manifest.to_table(), uri)


__all__ = ["Manifest", "read_manifest", "build_manifest", "write_manifest", "manifest_from_table", "METADATA_KEY"]


def manifest_rows(manifest, sample_ids: Sequence[str], what: str) -> np.ndarray:
    """The manifest rows of ``sample_ids`` (named ``what`` in errors), in their order."""
    return rows_of(manifest, sample_ids, what, where="the manifest",
                   fix="use the manifest the selection was made from")
