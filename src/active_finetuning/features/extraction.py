"""Feature extraction: manifest in, features artifact out (pooled pre-logits of a timm model).

Preprocessing comes from the model's data config (input size, interpolation, mean, std); by
default the whole image is resized to the input size with no center crop, as both papers extract
features (docs/methods.md §1). Every part is overridable (:class:`Preprocessing`).

A DataLoader's worker processes read, decode and resize images while the model runs. On CUDA the
model runs channels-last under autocast (bf16 where supported, else fp16), from pinned memory
with non-blocking copies. Features stream to the output file in row groups, so memory stays
bounded for large pools; ``shard=(i, n)`` extracts the i-th of n contiguous slices of the
manifest, and :func:`merge_features` concatenates the shards' files in shard order.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .. import __version__
from ..data import storage
from ..data.artifacts import (
    METADATA_KEY,
    FeatureTable,
    features_from_table,
    metadata_of,
    parquet_options,
)
from ..data.images import ManifestImages
from ..data.preprocessing import preprocessing_for
from ..data.manifest import Manifest, read_manifest
from ..errors import InputError

BAD_IMAGE_POLICIES = ("fail", "skip")
DTYPES = ("float32", "float16")
ROWS_PER_GROUP = 16384
_LISTED_IDS = 20


def parse_shard(shard) -> tuple[int, int] | None:
    """``"i/n"`` or ``(i, n)`` -> ``(i, n)`` with 0 <= i < n; None stays None."""
    if shard is None:
        return None
    if isinstance(shard, str):
        try:
            index, count = (int(v) for v in shard.split("/"))
        except ValueError:
            raise InputError(f"shard must be i/n (e.g. 0/4: the first of 4 slices), got {shard!r}") from None
    else:
        index, count = shard
    if not (count >= 1 and 0 <= index < count):
        raise InputError(f"shard {index}/{count} is out of range: i/n needs n >= 1 and 0 <= i < n")
    return int(index), int(count)


def shard_rows(n: int, shard: tuple[int, int] | None) -> np.ndarray:
    """The manifest rows of a shard: the i-th of n contiguous, near-equal slices (deterministic)."""
    if shard is None:
        return np.arange(n, dtype=np.int64)
    index, count = shard
    return np.arange(index * n // count, (index + 1) * n // count, dtype=np.int64)


@dataclass
class Extraction:
    """What :func:`extract` did: the features (in memory when no ``out`` was given) and the skipped ids."""

    count: int
    dim: int
    metadata: dict[str, Any]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (sample_id, reason)
    features: FeatureTable | None = None
    out: str | None = None
    skipped_out: str | None = None
    seconds: float = 0.0
    reused: int = 0  # rows copied from ``previous`` (unchanged images), not extracted again
    reuse_note: str = ""  # why nothing could be reused, when a previous artifact was given

    @property
    def extracted(self) -> int:
        return self.count - self.reused

    @property
    def images_per_second(self) -> float:
        """Images run through the model (and images found unreadable) per second."""
        return (self.extracted + len(self.skipped)) / self.seconds if self.seconds else 0.0


def extract(manifest: Manifest | str, model: str, weights: str | None = None, *, out: str | None = None,
            image_size=None, interpolation: str | None = None, mean=None, std=None, resize: str = "pil",
            crop_pct: float | None = None, dtype: str = "float32", batch_size: int = 64,
            workers: int | None = None, shard=None, on_bad_image: str = "fail",
            skipped_out: str | None = None, device: str | None = None, progress: bool = True,
            rows_per_group: int = ROWS_PER_GROUP, previous: str | FeatureTable | None = None) -> Extraction:
    """Extract pooled pre-logit features of ``manifest``'s images with timm model ``model``.

    With ``out`` the features artifact is written there (atomically, streamed in row groups) and
    ``Extraction.features`` is None; without it they are returned in memory. ``on_bad_image="fail"``
    raises :class:`InputError` listing every unreadable image and writes nothing;
    ``"skip"`` leaves them out and records them (``skipped_out``, default beside ``out``).

    ``previous``, a features artifact of an earlier extraction with the same model, weights and
    preprocessing, makes the extraction incremental: a row whose sample id is there with the same
    image content (digest of the encoded bytes) is copied from it; new and changed images are
    extracted. The result, in manifest order, is what a full extraction would write. A previous
    artifact of another model, weights or preprocessing is not used (``Extraction.reuse_note`` says why).
    """
    import torch

    from .models import create_model, weights_identity

    if on_bad_image not in BAD_IMAGE_POLICIES:
        raise InputError(f"on_bad_image must be one of {BAD_IMAGE_POLICIES}, got {on_bad_image!r}")
    if dtype not in DTYPES:
        raise InputError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    if workers is not None and workers < 0:
        raise InputError(f"workers must be >= 0 (0 decodes in the main process), got {workers!r}")
    if out is not None:
        storage.check_output(out, "out", [uri for uri in (manifest, previous) if isinstance(uri, str)])
    if isinstance(manifest, str):
        manifest = read_manifest(manifest)
    shard = parse_shard(shard)
    rows = shard_rows(len(manifest), shard)
    if len(rows) == 0:
        raise InputError(f"shard {shard[0]}/{shard[1]} of a {len(manifest)}-image manifest is empty; use fewer shards")
    if on_bad_image == "skip" and skipped_out is None and out is not None:
        skipped_out = skipped_report_uri(out)

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    network = create_model(model, weights=weights, num_classes=0)
    preprocessing = preprocessing_for(network, image_size, interpolation, mean, std, resize, crop_pct)
    metadata = {
        "model": model, "weights": weights, "weights_identity": weights_identity(weights),
        "image_size": preprocessing.image_size[0] if preprocessing.image_size[0] == preprocessing.image_size[1]
        else list(preprocessing.image_size),
        "preprocessing": preprocessing.as_metadata(), "normalized": False, "feature": "pooled pre-logits",
        "dtype": dtype, "manifest": manifest.source or None, "library_version": __version__,
    }
    if manifest.classes is not None:
        metadata["classes"] = list(manifest.classes)
    if shard is not None:
        metadata["shard"] = {"index": shard[0], "count": shard[1], "rows": [int(rows[0]), int(rows[-1]) + 1]}

    start = time.perf_counter()
    reuse = _Reuse.plan(previous, metadata, manifest, rows, workers)
    runner = _Runner(network, device)
    new_rows = rows[~reuse.mask]
    images = ManifestImages(manifest, new_rows, preprocessing, tolerate_bad=True, shape=preprocessing.image_size,
                            digests=True)
    writer = _FeatureWriter(out, manifest, metadata, dtype, rows_per_group)
    bad: list[tuple[str, str]] = []
    with writer:
        from ..progress import progress_bar

        loader = _loader(images, batch_size, workers, device) if len(new_rows) else []
        for inputs, positions, errors, digests in progress_bar(loader, desc="extract", enabled=progress,
                                                               total=len(loader), unit="batch"):
            failed = [j for j, e in enumerate(errors) if e]
            for j in failed:
                row = int(new_rows[int(positions[j])])
                bad.append((manifest.sample_ids[row], errors[j]))
            if bad and on_bad_image == "fail":
                continue  # keep reading to list every offending id; no more model work
            keep = np.asarray([j for j in range(len(errors)) if not errors[j]], dtype=np.int64)
            if len(keep) == 0:
                continue
            output = runner(inputs[torch.from_numpy(keep)] if len(failed) else inputs)
            reuse.interleave(writer, new_rows[positions.numpy()[keep]], output, np.asarray(digests, dtype=object)[keep])
        if not (bad and on_bad_image == "fail"):
            reuse.add_until(writer, len(reuse.rows))
        if bad and on_bad_image == "fail":
            listed = ", ".join(repr(sid) for sid, _ in bad[:_LISTED_IDS])
            more = f" and {len(bad) - _LISTED_IDS} more" if len(bad) > _LISTED_IDS else ""
            raise InputError(f"{len(bad)} images could not be read: {listed}{more}; first error: {bad[0][1]} — "
                             "fix or drop them, or pass --on-bad-image skip to leave them out")
        if writer.count == 0:
            raise InputError(f"none of the {len(rows)} images could be read (first error: {bad[0][1]}); "
                             "nothing to write")
        writer.finish()
    seconds = time.perf_counter() - start
    if on_bad_image == "skip" and skipped_out is not None:
        write_skipped_report(bad, manifest, skipped_out)
    return Extraction(writer.count, writer.dim, writer.metadata, bad, writer.table, out, skipped_out, seconds,
                      reused=reuse.count, reuse_note=reuse.note)


#: Metadata that must match for a previous extraction's rows to be re-used (the rest, e.g. the
#: manifest's name or the library version, does not change a row's features).
REUSE_KEYS = ("model", "weights_identity", "image_size", "preprocessing", "feature", "normalized", "dtype")


class _Reuse:
    """The rows of a previous features artifact that an incremental extraction copies, fed to the
    writer in manifest order between the newly extracted batches (both run in increasing row order)."""

    def __init__(self, mask: np.ndarray, rows: np.ndarray, table: FeatureTable | None, sources: np.ndarray,
                 note: str = ""):
        self.mask, self.rows, self.table, self.sources, self.note = mask, rows, table, sources, note
        self.next = 0

    @property
    def count(self) -> int:
        return int(self.mask.sum())

    @classmethod
    def plan(cls, previous, metadata: dict, manifest: Manifest, rows: np.ndarray, workers) -> "_Reuse":
        nothing = np.zeros(len(rows), dtype=bool)
        if previous is None:
            return cls(nothing, rows[:0], None, rows[:0])
        from ..data.artifacts import read_features

        table = read_features(previous) if isinstance(previous, str) else previous
        differing = [key for key in REUSE_KEYS if table.metadata.get(key) != metadata.get(key)]
        if differing:
            return cls(nothing, rows[:0], None, rows[:0], f"the previous features differ in {differing}: "
                       "every image extracted")
        if table.image_digests is None:
            return cls(nothing, rows[:0], None, rows[:0], "the previous features record no image digests "
                       "(written before incremental extraction): every image extracted")
        position = {sid: i for i, sid in enumerate(table.sample_ids.tolist())}
        current = _digests(manifest, rows, workers)
        sources = np.asarray([position.get(manifest.sample_ids[row], -1) for row in rows], dtype=np.int64)
        mask = np.asarray([src >= 0 and table.image_digests[src] == digest
                           for src, digest in zip(sources, current)], dtype=bool)
        return cls(mask, rows[mask], table, sources[mask])

    def interleave(self, writer, rows: np.ndarray, values: np.ndarray, digests: np.ndarray) -> None:
        """Hand the writer a batch of extracted ``rows`` (increasing) with the re-used rows that fall
        before and between them, so that the artifact keeps the manifest's order."""
        before = np.searchsorted(self.rows, rows)  # re-used rows that precede each extracted row
        cuts = [*(np.flatnonzero(np.diff(before)) + 1).tolist(), len(rows)]
        start = 0
        for cut in cuts:
            self.add_until(writer, int(before[start]))
            writer.add(rows[start:cut], values[start:cut], digests[start:cut])
            start = cut

    def add_until(self, writer, end: int) -> None:
        """Hand the writer the re-used rows up to (not including) the ``end``-th."""
        if end > self.next:
            chosen = self.sources[self.next:end]
            writer.add(self.rows[self.next:end], self.table.features[chosen], self.table.image_digests[chosen])
            self.next = end


def _digests(manifest: Manifest, rows: np.ndarray, workers) -> list[str]:
    """Digests of the encoded images of ``rows`` (read in threads: for image URIs this is I/O)."""
    from concurrent.futures import ThreadPoolExecutor

    from ..data.images import image_digest

    def digest(row) -> str:
        try:
            return image_digest(manifest.load_bytes(int(row)))
        except InputError:
            return ""  # unreadable now: extracted (and reported) like a new image

    with ThreadPoolExecutor(max_workers=max(4, 2 * (workers or 1))) as pool:
        return list(pool.map(digest, rows, chunksize=256))


class _Runner:
    """The model on its device: CUDA gets channels-last, autocast and non-blocking copies."""

    def __init__(self, network, device):
        import torch

        self.device = device
        self.cuda = device.type == "cuda"
        self.network = network.to(device)
        if self.cuda:
            self.network = self.network.to(memory_format=torch.channels_last)
            self.autocast_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    def __call__(self, inputs):
        import torch

        with torch.inference_mode():
            if self.cuda:
                inputs = inputs.to(self.device, non_blocking=True, memory_format=torch.channels_last)
                with torch.autocast("cuda", dtype=self.autocast_dtype):
                    output = pooled_pre_logits(self.network, inputs)
                return output.float().cpu().numpy()
            return pooled_pre_logits(self.network, inputs).float().numpy()


def pooled_pre_logits(network, inputs):
    if hasattr(network, "forward_head"):
        return network.forward_head(network.forward_features(inputs), pre_logits=True)
    return network(inputs)


def default_workers() -> int:
    """Decoding processes: one per CPU this process may use left after the model's, at least one, at most eight."""
    from ..resources import available_cpus

    return max(1, min(8, available_cpus() - 1))


def _loader(dataset: ManifestImages, batch_size: int, workers: int | None, device):
    import torch

    workers = default_workers() if workers is None else workers
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
        pin_memory=device.type == "cuda", prefetch_factor=4 if workers else None,
        persistent_workers=False,
    )


class _FeatureWriter:
    """Streams feature rows into a Parquet file in row groups, under an atomic output (or into memory)."""

    def __init__(self, out: str | None, manifest: Manifest, metadata: dict, dtype: str, rows_per_group: int):
        self.out, self.manifest, self.metadata = out, manifest, metadata
        self.dtype = np.float16 if dtype == "float16" else np.float32
        self.rows_per_group = rows_per_group
        self.count, self.dim = 0, 0
        self._pending_rows: list[np.ndarray] = []
        self._pending_values: list[np.ndarray] = []
        self._pending_digests: list[np.ndarray] = []
        self._pending = 0
        self._kept_rows: list[np.ndarray] = []
        self._kept_values: list[np.ndarray] = []
        self._kept_digests: list[np.ndarray] = []
        self._writer = None
        self._stack = contextlib.ExitStack()
        self._tmp = None
        self.table: FeatureTable | None = None

    def __enter__(self):
        if self.out is not None:
            self._tmp = self._stack.enter_context(storage.atomic_output(self.out))
        return self

    def __exit__(self, *exc):
        if self._writer is not None and exc[0] is not None:
            self._writer.close()
        return self._stack.__exit__(*exc)

    def add(self, rows: np.ndarray, values: np.ndarray, digests: np.ndarray) -> None:
        values = values.astype(self.dtype)
        finite = np.isfinite(values).all(axis=1)
        if not finite.all():
            sid = self.manifest.sample_ids[rows[np.flatnonzero(~finite)[0]]]
            raise InputError(f"the model produced non-finite features for sample_id {sid!r} (dtype "
                             f"{self.dtype.__name__}); try dtype float32 or check the weights")
        self.dim = values.shape[1]
        self.count += len(rows)
        if self.out is None:
            self._kept_rows.append(rows)
            self._kept_values.append(values)
            self._kept_digests.append(digests)
            return
        self._pending_rows.append(rows)
        self._pending_values.append(values)
        self._pending_digests.append(digests)
        self._pending += len(rows)
        if self._pending >= self.rows_per_group:
            self._flush()

    def _schema_metadata(self) -> dict:
        import json

        self.metadata["dim"] = self.dim
        return {METADATA_KEY: json.dumps(self.metadata, sort_keys=True, separators=(",", ":")).encode()}

    def _batch(self, rows: np.ndarray, values: np.ndarray, digests: np.ndarray) -> pa.Table:
        columns = {
            "sample_id": pa.array(self.manifest.sample_ids[rows].tolist(), type=pa.string()),
            "feature": pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), self.dim),
        }
        if self.manifest.labels is not None:
            columns["label"] = pa.array(self.manifest.labels[rows], type=pa.int64())
        columns["image_digest"] = pa.array(digests.tolist(), type=pa.string())
        return pa.table(columns)

    def _flush(self) -> None:
        if not self._pending:
            return
        table = self._batch(np.concatenate(self._pending_rows), np.concatenate(self._pending_values),
                            np.concatenate(self._pending_digests))
        if self._writer is None:
            table = table.replace_schema_metadata(self._schema_metadata())
            self._writer = pq.ParquetWriter(self._tmp, table.schema, **parquet_options(table.schema))
        self._writer.write_table(table.replace_schema_metadata(self._writer.schema.metadata),
                                 row_group_size=self.rows_per_group)
        self._pending_rows, self._pending_values, self._pending_digests, self._pending = [], [], [], 0

    def finish(self) -> None:
        if self.out is None:
            rows, values = np.concatenate(self._kept_rows), np.concatenate(self._kept_values)
            table = self._batch(rows, values, np.concatenate(self._kept_digests))
            table = table.replace_schema_metadata(self._schema_metadata())
            self.table = features_from_table(table, source="extracted features")
            return
        self._flush()
        self._writer.close()
        self._writer = None


def skipped_report_uri(out: str) -> str:
    stem = out[: -len(".parquet")] if out.endswith(".parquet") else out
    return stem + ".skipped.parquet"


def write_skipped_report(skipped: list[tuple[str, str]], manifest: Manifest, uri: str) -> None:
    """The skipped-images artifact: ``sample_id``, ``reason`` (empty when nothing was skipped)."""
    from ..data.artifacts import with_metadata, write_table

    table = pa.table({"sample_id": pa.array([s for s, _ in skipped], type=pa.string()),
                      "reason": pa.array([r for _, r in skipped], type=pa.string())})
    write_table(with_metadata(table, {"manifest": manifest.source or None, "skipped": len(skipped)}), uri)


# ----------------------------------------------------------------------------------------------
# shards


_SHARD_INDEPENDENT = ("shard", "manifest", "dim")


def merge_features(shard_uris: list[str], out_uri: str) -> dict[str, Any]:
    """Concatenate features shards (one model, one preprocessing) into one artifact, in shard order.

    Shards written by ``extract(shard=(i, n))`` are ordered by ``i`` and must be complete (all n);
    others keep the given order. Ids must be unique across shards. Returns the merged metadata.
    """
    if not shard_uris:
        raise InputError("merge_features needs at least one shard URI")
    shard_uris = list(dict.fromkeys(shard_uris))
    storage.check_output(out_uri, "out", shard_uris)
    files, metas = [], []
    for uri in shard_uris:
        try:
            file = pq.ParquetFile(storage.open_arrow_input(uri))
        except (pa.ArrowInvalid, OSError) as err:
            raise InputError(f"features shard {uri!r} is not a readable Parquet file: {err}") from None
        files.append((uri, file))
        metas.append(metadata_of(file.schema_arrow))
    order = _shard_order(shard_uris, metas)
    reference = {k: v for k, v in metas[order[0]].items() if k not in _SHARD_INDEPENDENT}
    schema = files[order[0]][1].schema_arrow
    for i in order:
        uri, file = files[i]
        differing = sorted(k for k in set(reference) | set(metas[i])
                           if k not in _SHARD_INDEPENDENT and reference.get(k) != metas[i].get(k))
        if differing:
            raise InputError(f"features shard {uri!r} differs from {files[order[0]][0]!r} in {differing}; "
                             "merge only shards of one extraction (same model, weights and preprocessing)")
        if file.schema_arrow.remove_metadata() != schema.remove_metadata():
            raise InputError(f"features shard {uri!r} has columns {file.schema_arrow.remove_metadata()}, "
                             f"the first shard {schema.remove_metadata()}")
    merged = dict(reference)
    merged["merged_shards"] = len(order)
    if "dim" in metas[order[0]]:
        merged["dim"] = metas[order[0]]["dim"]
    seen: set[str] = set()
    import json

    out_schema = schema.with_metadata({METADATA_KEY: json.dumps(merged, sort_keys=True, separators=(",", ":")).encode()})
    rows = 0
    with storage.atomic_output(out_uri) as tmp:
        with pq.ParquetWriter(tmp, out_schema, **parquet_options(out_schema)) as writer:
            for i in order:
                uri, file = files[i]
                for group in range(file.num_row_groups):
                    table = file.read_row_group(group)
                    ids = table.column("sample_id").to_pylist()
                    repeated = seen.intersection(ids)
                    if repeated or len(set(ids)) != len(ids):
                        first = next(iter(repeated)) if repeated else ids[0]
                        raise InputError(f"sample_id {first!r} appears twice across the shards (in {uri!r}); "
                                         "each sample must be in exactly one shard")
                    seen.update(ids)
                    rows += table.num_rows
                    writer.write_table(table.replace_schema_metadata(out_schema.metadata))
        if rows == 0:
            raise InputError("the shards hold no rows; nothing to merge")
    merged["rows"] = rows
    return merged


def _shard_order(uris: list[str], metas: list[dict]) -> list[int]:
    shards = [m.get("shard") for m in metas]
    if not all(isinstance(s, dict) for s in shards):
        return list(range(len(uris)))
    counts = {s["count"] for s in shards}
    if len(counts) != 1:
        raise InputError(f"the shards come from different splits (counts {sorted(counts)}); merge one extraction")
    count = counts.pop()
    by_index = {}
    for i, s in enumerate(shards):
        if s["index"] in by_index:
            raise InputError(f"shard {s['index']}/{count} is given twice ({uris[by_index[s['index']]]!r} and "
                             f"{uris[i]!r})")
        by_index[s["index"]] = i
    missing = sorted(set(range(count)) - set(by_index))
    if missing:
        raise InputError(f"shards {missing} of {count} are missing; extract them (--shard i/{count}) before merging")
    return [by_index[i] for i in range(count)]
