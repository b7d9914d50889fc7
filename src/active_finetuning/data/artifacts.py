"""The Parquet artifact contracts (docs/design.md, "Artifacts"): read, validate, write atomically.

* **features**: ``sample_id`` (string, unique), ``feature`` (fixed_size_list<float16|float32>[d]),
  optional ``label`` (int64); schema metadata ``active_finetuning`` (JSON: model, weights identity,
  image size, ``normalized``).
* **selection**: ``sample_id``, ``rank`` (pick order, 0-based), ``role`` (``core``, ``boundary``,
  ``pick``), optional ``score`` and ``pseudo_class``; metadata: method, budget, every parameter, seed,
  features identity, library version.

Validation names the column and what is wrong. Writes go through :mod:`.storage`, atomically.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InputError
from . import storage

METADATA_KEY = b"active_finetuning"
ROLES = ("core", "boundary", "pick")


# ----------------------------------------------------------------------------------------------
# metadata helpers


def metadata_of(schema: pa.Schema) -> dict[str, Any]:
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError as err:
        raise InputError(f"schema metadata {METADATA_KEY.decode()!r} is not valid JSON: {err}") from err


def with_metadata(table: pa.Table, metadata: dict[str, Any]) -> pa.Table:
    encoded = json.dumps(metadata, sort_keys=True, separators=(",", ":"), default=_json_default)
    existing = dict(table.schema.metadata or {})
    existing[METADATA_KEY] = encoded.encode()
    return table.replace_schema_metadata(existing)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def parquet_options(schema: pa.Schema) -> dict:
    """How every artifact is written: zstd, no statistics (deterministic bytes), and a dictionary
    only for columns that are not floating point. A dictionary of float16 features (at most 65,536
    values, so it never falls back to plain) makes them over twice as slow to read: 1.6 s against 0.7 s
    for 50,000 × 1,280 features, in a file 10% larger (``benchmarks/artifact_io.py``)."""
    return {"compression": "zstd", "write_statistics": False,
            "use_dictionary": [f.name for f in schema if not _holds_floats(f.type)]}


def _holds_floats(kind: pa.DataType) -> bool:
    while pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        kind = kind.value_type
    return pa.types.is_floating(kind)


def write_table(table: pa.Table, uri: str) -> None:
    """Write a Parquet table atomically (temporary name, then rename) with deterministic bytes."""
    with storage.atomic_output(uri) as tmp:
        pq.write_table(table, tmp, **parquet_options(table.schema))


def read_table(uri: str, what: str) -> pa.Table:
    """The whole Parquet file. ``ParquetFile.read`` rather than ``pq.read_table``: the same table,
    without importing ``pyarrow.dataset`` (and pandas with it: about a second at every start)."""
    with storage.open_arrow_input(uri) as handle:
        try:
            return pq.ParquetFile(handle).read()
        except (pa.ArrowInvalid, OSError) as err:
            raise InputError(f"{what} {uri!r} is not a readable Parquet file: {err}") from err


# ----------------------------------------------------------------------------------------------
# features


@dataclass
class FeatureTable:
    """Pool features in memory: ``features[i]`` belongs to ``sample_ids[i]``."""

    sample_ids: np.ndarray  # object array of str
    features: np.ndarray  # (N, d) float16 or float32, as stored
    labels: np.ndarray | None = None  # (N,) int64 or None
    metadata: dict[str, Any] = field(default_factory=dict)
    # (N,) object array of str: a digest of each row's encoded image (extraction writes it), so that a
    # later extraction of a grown pool re-uses the rows whose image did not change; None when unknown
    image_digests: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.sample_ids = np.asarray(self.sample_ids, dtype=object)
        self.features = np.asarray(self.features)
        validate_features(self.sample_ids, self.features, self.labels)
        if self.image_digests is not None:
            self.image_digests = np.asarray(self.image_digests, dtype=object)
            if len(self.image_digests) != len(self.sample_ids):
                raise InputError(f"column 'image_digest' has {len(self.image_digests)} values for "
                                 f"{len(self.sample_ids)} rows")

    def __len__(self) -> int:
        return len(self.sample_ids)

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    @classmethod
    def from_array(cls, features, sample_ids=None, labels=None, metadata=None) -> "FeatureTable":
        features = np.asarray(features)
        if features.ndim != 2:
            raise InputError(
                f"features must be a 2-D array (samples × dimensions), got shape {features.shape}"
            )
        if sample_ids is None:
            sample_ids = [str(i) for i in range(features.shape[0])]
        return cls(np.asarray(sample_ids, dtype=object), features, labels, dict(metadata or {}))

    def identity(self) -> str:
        """A content hash of ids and feature values: the features artifact identity."""
        digest = hashlib.blake2b(digest_size=12)
        digest.update("\x1f".join(self.sample_ids.tolist()).encode())
        digest.update(str(self.features.dtype).encode())
        digest.update(np.ascontiguousarray(self.features).reshape(-1).view(np.uint8))  # the bytes, not a copy
        return digest.hexdigest()

    def to_table(self) -> pa.Table:
        n, dim = self.features.shape
        values = pa.array(np.ascontiguousarray(self.features).reshape(-1))
        columns = {
            "sample_id": pa.array(self.sample_ids.tolist(), type=pa.string()),
            "feature": pa.FixedSizeListArray.from_arrays(values, dim),
        }
        if self.labels is not None:
            columns["label"] = pa.array(np.asarray(self.labels, dtype=np.int64))
        if self.image_digests is not None:
            columns["image_digest"] = pa.array(self.image_digests.tolist(), type=pa.string())
        return with_metadata(pa.table(columns), self.metadata)


def validate_features(sample_ids: np.ndarray, features: np.ndarray, labels=None) -> None:
    """Check the features contract on in-memory arrays; raise :class:`InputError` naming the problem."""
    n = len(sample_ids)
    if n == 0:
        raise InputError("features table is empty (0 rows); extract features for a non-empty pool")
    if features.ndim != 2 or features.shape[0] != n:
        raise InputError(
            f"column 'feature' must hold one vector per row: {n} sample ids but feature array of "
            f"shape {features.shape}"
        )
    if features.shape[1] == 0:
        raise InputError("column 'feature' holds vectors of dimension 0")
    if not np.issubdtype(features.dtype, np.floating):
        raise InputError(f"column 'feature' must be float16 or float32, got {features.dtype}")
    check_unique_ids(sample_ids)
    finite, nonzero = _finite_and_nonzero_rows(features)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise InputError(
            f"column 'feature' has {len(bad)} rows with NaN or infinite values (first: sample_id "
            f"{sample_ids[bad[0]]!r}); drop or repair them before selection"
        )
    zero = ~nonzero
    if zero.any():
        bad = np.flatnonzero(zero)
        raise InputError(
            f"column 'feature' has {len(bad)} all-zero rows (first: sample_id {sample_ids[bad[0]]!r}); "
            "an all-zero vector has no direction — drop those samples or re-extract them"
        )
    if labels is not None and len(labels) != n:
        raise InputError(f"column 'label' has {len(labels)} values for {n} rows")


# IEEE formats by size: the unsigned integer of the same width, the exponent bits, every bit but the sign.
_FLOAT_BITS = {2: (np.uint16, 0x7C00, 0x7FFF), 4: (np.uint32, 0x7F800000, 0x7FFFFFFF),
               8: (np.uint64, 0x7FF0000000000000, 0x7FFFFFFFFFFFFFFF)}


def _finite_and_nonzero_rows(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which rows hold only finite values, and which hold a value other than ±0, from the largest
    magnitude bits of each row (all exponent bits set is inf or NaN; no bit but the sign set is ±0),
    block by block: 6–30 times faster than ``np.isfinite`` and ``!= 0`` on float16, the features'
    usual storage."""
    formats = _FLOAT_BITS.get(features.dtype.itemsize)
    if formats is None or features.dtype.kind != "f":
        return np.isfinite(features).all(axis=1), np.any(features != 0, axis=1)
    unsigned, exponent, magnitude = formats
    bits = np.ascontiguousarray(features).view(unsigned)
    largest = np.empty(len(bits), dtype=unsigned)
    step = max(1, (1 << 20) // max(1, bits.shape[1]))  # blocks that stay in the CPU's cache
    for start in range(0, len(bits), step):
        np.max(bits[start : start + step] & unsigned(magnitude), axis=1, out=largest[start : start + step],
               initial=0)
    return largest < unsigned(exponent), largest > 0


def check_unique_ids(sample_ids: np.ndarray) -> None:
    """Every id a string, none repeated. Compared as Python strings: NumPy's fixed-width strings would
    drop trailing NUL characters and call ``"x"`` and ``"x\\0"`` the same id."""
    ids = list(sample_ids)
    check_string_ids(ids, "column 'sample_id'")
    counts = Counter(ids)
    if len(counts) != len(ids):
        dup = [s for s, count in counts.items() if count > 1]
        raise InputError(
            f"column 'sample_id' has {len(dup)} duplicated ids (first: {str(dup[0])!r}); sample ids must "
            "be unique — de-duplicate the manifest and re-extract"
        )


def check_string_ids(ids: list, what: str) -> None:
    """Every id a string; else an :class:`InputError` naming ``what`` and the first row that is not."""
    bad = next((row for row, s in enumerate(ids) if not isinstance(s, str)), None)
    if bad is not None:
        shown = "a null" if ids[bad] is None else f"{type(ids[bad]).__name__} {ids[bad]!r}"
        raise InputError(f"{what} must hold strings; row {bad} holds {shown}")


def features_from_table(table: pa.Table, source: str = "features") -> FeatureTable:
    """Validate a features Parquet table and turn it into a :class:`FeatureTable`."""
    for column in ("sample_id", "feature"):
        if column not in table.column_names:
            raise InputError(
                f"{source} has no {column!r} column (columns: {table.column_names}); a features "
                "artifact needs 'sample_id' and 'feature'"
            )
    ids_col = table.column("sample_id")
    if not (pa.types.is_string(ids_col.type) or pa.types.is_large_string(ids_col.type)):
        raise InputError(f"column 'sample_id' must be a string column, got {ids_col.type}")
    if ids_col.null_count:
        raise InputError(f"column 'sample_id' has {ids_col.null_count} null values")
    features = _feature_matrix(table.column("feature"))
    labels = None
    if "label" in table.column_names:
        label_col = table.column("label")
        if label_col.null_count == 0 and pa.types.is_integer(label_col.type):
            labels = label_col.to_numpy().astype(np.int64)
    digests = None
    if "image_digest" in table.column_names:
        digest_col = table.column("image_digest")
        if not pa.types.is_string(digest_col.type) or digest_col.null_count:
            raise InputError(f"column 'image_digest' must hold a string in every row, got {digest_col.type} with "
                             f"{digest_col.null_count} nulls; re-extract the features")
        digests = np.asarray(digest_col.to_pylist(), dtype=object)
    return FeatureTable(
        np.asarray(ids_col.to_pylist(), dtype=object), features, labels, metadata_of(table.schema), digests
    )


def _feature_matrix(column: pa.ChunkedArray) -> np.ndarray:
    kind = column.type
    if column.null_count:
        raise InputError(f"column 'feature' has {column.null_count} null rows")
    if pa.types.is_fixed_size_list(kind):
        value_type, dim = kind.value_type, kind.list_size
    elif pa.types.is_list(kind) or pa.types.is_large_list(kind):
        value_type, dim = kind.value_type, None
    else:
        raise InputError(f"column 'feature' must be a list of floats, got {kind}")
    if not (pa.types.is_float16(value_type) or pa.types.is_float32(value_type) or pa.types.is_float64(value_type)):
        raise InputError(f"column 'feature' must hold float16/float32 values, got {value_type}")
    n = len(column)
    if n == 0:
        raise InputError("features table is empty (0 rows); extract features for a non-empty pool")
    combined = column.combine_chunks()
    if dim is None:
        lengths = combined.value_lengths().to_numpy()
        if len(np.unique(lengths)) > 1:
            first = int(np.flatnonzero(lengths != lengths[0])[0])
            raise InputError(
                f"column 'feature' mixes dimensions: row 0 has {lengths[0]} values, row {first} has "
                f"{lengths[first]}; every feature must have the same dimension (one model, one layer)"
            )
        dim = int(lengths[0])
    values = combined.flatten().to_numpy(zero_copy_only=False)
    if values.dtype == np.float64:
        values = values.astype(np.float32)
    if values.size != n * dim:
        raise InputError(f"column 'feature' holds {values.size} values, expected {n} × {dim}")
    return values.reshape(n, dim)


def read_features(uri: str, table: pa.Table | None = None) -> FeatureTable:
    """Read and validate a features artifact (a Parquet file); ``table``: its content, if the caller
    has read it already (``read_table(uri, "features")``)."""
    table = read_table(uri, "features") if table is None else table
    features = features_from_table(table, source=f"features {uri!r}")
    del table
    # Decoding a list column takes several times the table's size in scratch buffers, which
    # Arrow's allocator would otherwise keep for the rest of the process (≈ 530 MB on CIFAR-10).
    pa.default_memory_pool().release_unused()
    return features


def write_features(features: FeatureTable, uri: str) -> None:
    write_table(features.to_table(), uri)


# ----------------------------------------------------------------------------------------------
# selection


@dataclass
class Selection:
    """A selection: pool rows in pick order, with each pick's role and optional score/pseudo-class."""

    indices: np.ndarray  # (B,) int64 row numbers in the features table, pick order
    sample_ids: np.ndarray  # (B,) str
    role: np.ndarray  # (B,) str, one of ROLES
    score: np.ndarray | None = None  # (B,) float64
    pseudo_class: np.ndarray | None = None  # (B,) int64
    metadata: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, Any] = field(default_factory=dict, repr=False)  # debug tables, not written
    seconds: float = 0.0  # selection wall time, not written (it would break byte-identity)

    def __len__(self) -> int:
        return len(self.sample_ids)

    def to_table(self) -> pa.Table:
        columns = {
            "sample_id": pa.array(list(self.sample_ids), type=pa.string()),
            "rank": pa.array(np.arange(len(self.sample_ids), dtype=np.int64)),
            "role": pa.array(list(self.role), type=pa.string()),
        }
        if self.score is not None:
            columns["score"] = pa.array(np.asarray(self.score, dtype=np.float64))
        if self.pseudo_class is not None:
            columns["pseudo_class"] = pa.array(np.asarray(self.pseudo_class, dtype=np.int64))
        return with_metadata(pa.table(columns), self.metadata)


def write_selection(selection: Selection, uri: str) -> None:
    write_table(selection.to_table(), uri)


def read_selection(uri: str, pool: FeatureTable | None = None) -> Selection:
    """Read and validate a selection artifact; with ``pool``, also map its ids to pool rows."""
    table = read_table(uri, "selection")
    for column in ("sample_id", "rank", "role"):
        if column not in table.column_names:
            raise InputError(
                f"selection {uri!r} has no {column!r} column (columns: {table.column_names})"
            )
    table = table.sort_by("rank")
    sample_ids = np.asarray(table.column("sample_id").to_pylist(), dtype=object)
    if len(sample_ids) == 0:
        raise InputError(f"selection {uri!r} is empty")
    check_unique_ids(sample_ids)
    role = np.asarray(table.column("role").to_pylist(), dtype=object)
    unknown = sorted(set(role) - set(ROLES))
    if unknown:
        raise InputError(f"column 'role' of selection {uri!r} has unknown roles {unknown}; allowed: {ROLES}")
    score = table.column("score").to_numpy() if "score" in table.column_names else None
    pseudo = table.column("pseudo_class").to_numpy() if "pseudo_class" in table.column_names else None
    indices = np.full(len(sample_ids), -1, dtype=np.int64)
    if pool is not None:
        indices = rows_of(pool, sample_ids, what=f"selection {uri!r}")
    return Selection(indices, sample_ids, role, score, pseudo, metadata_of(table.schema))


def read_sample_ids(uri: str, what: str) -> list[str]:
    """The ``sample_id`` column of any artifact (e.g. the already-labeled set)."""
    table = read_table(uri, what)
    if "sample_id" not in table.column_names:
        raise InputError(f"{what} {uri!r} has no 'sample_id' column")
    ids = table.column("sample_id").to_pylist()
    check_string_ids(ids, f"column 'sample_id' of {what} {uri!r}")
    return ids


def read_sample_id_union(uri: str, what: str) -> list[str]:
    """The sample ids of an artifact, or of every Parquet artifact under a folder or prefix (say one
    labels artifact per round of annotation), each id once, in first-seen order. A folder that does not
    exist yet, as before the first round, holds none."""
    if uri.endswith(".parquet"):
        return read_sample_ids(uri, what)
    try:
        files = [f for f in storage.list_prefix(uri) if f.endswith(".parquet")]
    except InputError:
        if storage.exists(uri):
            return read_sample_ids(uri, what)
        return []
    ids: dict[str, None] = {}
    for file in files:
        ids.update(dict.fromkeys(read_sample_ids(file, what)))
    return list(ids)


def rows_of(pool, sample_ids, what: str, where: str = "the features pool",
            fix: str = "use the features artifact the ids came from") -> np.ndarray:
    """Row numbers of ``sample_ids`` in ``pool`` (a features table, a manifest: anything with
    ``sample_ids``). Missing ids are an :class:`InputError` that names ``what`` listed them,
    ``where`` they were looked up and the ``fix``."""
    position = {sid: i for i, sid in enumerate(np.asarray(pool.sample_ids).tolist())}
    missing = [sid for sid in sample_ids if sid not in position]
    if missing:
        raise InputError(
            f"{what} names {len(missing)} sample ids that are not in {where} "
            f"(first: {', '.join(map(repr, missing[:3]))}); {fix}"
        )
    return np.asarray([position[sid] for sid in sample_ids], dtype=np.int64)
