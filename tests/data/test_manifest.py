"""Manifests: folder trees (local and gs://), CSV/JSONL lists, Hugging Face-style Parquet, the CLI."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from active_finetuning.data import storage
from active_finetuning.data.images import decode_image
from active_finetuning.data.manifest import (
    Manifest,
    build_manifest,
    read_manifest,
    write_manifest,
)
from active_finetuning.errors import InputError
from tests.conftest import run_cli


def png_bytes(value: int = 0, size=(12, 10)) -> bytes:
    sink = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(sink, format="PNG")
    return sink.getvalue()


def make_tree(root, classes=("cat", "dog"), per_class=3):
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            (root / name / f"{i}.png").write_bytes(png_bytes(10 * c + i))
    (root / "cat" / "notes.txt").write_text("not an image")
    return root


def test_folder_tree_gives_labels_and_classes(tmp_path):
    root = make_tree(tmp_path / "pool")
    manifest = build_manifest(str(root))
    assert manifest.classes == ["cat", "dog"]
    assert manifest.sample_ids.tolist() == [f"{c}/{i}.png" for c in ("cat", "dog") for i in range(3)]
    assert manifest.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert decode_image(manifest.load_bytes(4), manifest.sample_ids[4]).getpixel((0, 0)) == (11, 11, 11)
    write_manifest(manifest, str(tmp_path / "m.parquet"))
    back = read_manifest(str(tmp_path / "m.parquet"))
    assert back.classes == ["cat", "dog"] and back.uris.tolist() == manifest.uris.tolist()
    assert back.load_bytes(0) == (root / "cat" / "0.png").read_bytes()


def test_flat_folder_has_no_labels(tmp_path):
    for i in range(3):
        (tmp_path / f"{i}.jpg").write_bytes(png_bytes(i))
    manifest = build_manifest(str(tmp_path))
    assert manifest.labels is None and manifest.classes is None and len(manifest) == 3


def test_gcs_folder_tree(gcs_bucket):
    for name, value in (("a/x.png", 1), ("a/y.png", 2), ("b/z.png", 3)):
        storage.write_bytes(f"{gcs_bucket}/pool/{name}", png_bytes(value))
    manifest = build_manifest(f"{gcs_bucket}/pool")
    assert manifest.sample_ids.tolist() == ["a/x.png", "a/y.png", "b/z.png"]
    assert manifest.labels.tolist() == [0, 0, 1] and manifest.classes == ["a", "b"]
    assert manifest.uris[2] == f"{gcs_bucket}/pool/b/z.png"
    write_manifest(manifest, f"{gcs_bucket}/m.parquet")
    back = read_manifest(f"{gcs_bucket}/m.parquet")
    assert decode_image(back.load_bytes(2), "b/z.png").getpixel((0, 0)) == (3, 3, 3)


def test_csv_and_jsonl_lists(tmp_path):
    root = make_tree(tmp_path / "pool")
    (tmp_path / "list.csv").write_text("path,label\npool/cat/0.png,cat\npool/dog/1.png,dog\n")
    manifest = build_manifest(str(tmp_path / "list.csv"))
    assert manifest.sample_ids.tolist() == ["pool/cat/0.png", "pool/dog/1.png"]
    assert manifest.labels.tolist() == [0, 1] and manifest.classes == ["cat", "dog"]
    assert manifest.load_bytes(1) == (root / "dog" / "1.png").read_bytes()
    lines = [{"sample_id": "first", "uri": str(root / "cat" / "2.png"), "label": 7},
             {"sample_id": "second", "uri": (root / "dog" / "0.png").as_uri(), "label": 3}]
    (tmp_path / "list.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    manifest = build_manifest(str(tmp_path / "list.jsonl"))
    assert manifest.sample_ids.tolist() == ["first", "second"] and manifest.labels.tolist() == [7, 3]
    assert manifest.classes is None and manifest.load_bytes(1) == (root / "dog" / "0.png").read_bytes()
    (tmp_path / "half.csv").write_text("uri,label\na.png,1\nb.png,\n")
    with pytest.raises(InputError, match="some rows have a label"):
        build_manifest(str(tmp_path / "half.csv"))
    (tmp_path / "nouri.csv").write_text("file\na.png\n")
    with pytest.raises(InputError, match="needs a 'uri'"):
        build_manifest(str(tmp_path / "nouri.csv"))


def test_hugging_face_style_parquet(tmp_path):
    images = pa.array([{"bytes": png_bytes(1), "path": "one.png"}, {"bytes": png_bytes(2), "path": "two.png"},
                       {"bytes": None, "path": "files/three.png"}],
                      type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "three.png").write_bytes(png_bytes(3))
    hf = {"info": {"features": {"image": {"_type": "Image"},
                                "label": {"names": ["plane", "car"], "_type": "ClassLabel"}}}}
    table = pa.table({"image": images, "label": pa.array([1, 0, 1], pa.int64())})
    table = table.replace_schema_metadata({b"huggingface": json.dumps(hf).encode()})
    pq.write_table(table, tmp_path / "train.parquet")
    manifest = read_manifest(str(tmp_path / "train.parquet"))
    assert manifest.sample_ids.tolist() == ["one.png", "two.png", "files/three.png"]
    assert manifest.classes == ["plane", "car"] and manifest.labels.tolist() == [1, 0, 1]
    assert manifest.load_bytes(1) == png_bytes(2)
    assert manifest.load_bytes(2) == png_bytes(3)  # no bytes: read from the path beside the file


def test_cifar_fixture_parquet_is_a_manifest_as_it_is(cifar_dir):
    manifest = read_manifest(str(cifar_dir / "images-train.parquet"))
    assert len(manifest) == 50_000 and manifest.classes[:3] == ["airplane", "automobile", "bird"]
    assert manifest.labels.dtype == np.int64 and set(np.unique(manifest.labels)) == set(range(10))
    image = decode_image(manifest.load_bytes(12_345), manifest.sample_ids[12_345])
    assert image.size == (32, 32) and image.mode == "RGB"
    part = manifest.subset(["train/cat/0001.jpg", manifest.sample_ids[0]])
    assert part.labels.tolist() == [3, 0] and part.load_bytes(1) == manifest.load_bytes(0)


def test_subset_keeps_order_and_rejects_unknown_ids(tmp_path):
    manifest = build_manifest(str(make_tree(tmp_path / "pool")))
    part = manifest.subset(["dog/2.png", "cat/0.png"])
    assert part.sample_ids.tolist() == ["dog/2.png", "cat/0.png"] and part.labels.tolist() == [1, 0]
    assert part.classes == ["cat", "dog"] and len(part) == 2
    with pytest.raises(InputError, match="not in manifest"):
        manifest.subset(["bird/0.png"])


def test_bad_manifests_are_rejected(tmp_path):
    with pytest.raises(InputError, match="duplicated ids"):
        Manifest(np.asarray(["a", "b", "a"], object), np.asarray(["x.png"] * 3, object))
    with pytest.raises(InputError, match="unsupported URI scheme 's3'"):
        Manifest(np.asarray(["a"], object), np.asarray(["s3://bucket/a.png"], object))
    with pytest.raises(InputError, match="neither a 'uri' nor an 'image' column"):
        Manifest(np.asarray(["a"], object))
    with pytest.raises(InputError, match="is empty"):
        Manifest(np.asarray([], object), np.asarray([], object))
    pq.write_table(pa.table({"sample_id": ["a"], "label": [0]}), tmp_path / "noimage.parquet")
    with pytest.raises(InputError, match="neither a 'uri' nor an 'image'"):
        read_manifest(str(tmp_path / "noimage.parquet"))
    with pytest.raises(InputError, match="no image files"):
        build_manifest(str(tmp_path))


def test_manifest_cli(tmp_path):
    root = make_tree(tmp_path / "pool")
    done = run_cli("manifest", str(root), "--out", str(tmp_path / "m.parquet"))
    assert done.returncode == 0, done.stderr
    assert "6 images" in done.stdout and "cat, dog" in done.stdout
    assert len(read_manifest(str(tmp_path / "m.parquet"))) == 6
    failed = run_cli("manifest", "s3://bucket/pool", "--out", str(tmp_path / "bad.parquet"))
    assert failed.returncode == 2 and "unsupported URI scheme" in failed.stderr
    assert not (tmp_path / "bad.parquet").exists()
