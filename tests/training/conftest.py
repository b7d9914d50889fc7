"""A real tiny timm model finetuned once on tiny real images, shared by the training tests."""

import io

import numpy as np
import pyarrow as pa
import pytest

from active_finetuning.data.manifest import Manifest, write_manifest
from active_finetuning.labels import Labels, write_labels
from active_finetuning.training.finetune import finetune

CLASSES = ["red", "green", "blue"]


MODEL = "test_efficientnet"


FAST = dict(epochs=4, batch_size=8, image_size=32, lr=0.05, drop_path=0.0)


def colour_images(n: int, seed: int, prefix: str) -> Manifest:
    """PNG images whose dominant colour is the class, with strong pixel noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    colours = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]])
    images = []
    for label in labels:
        pixels = np.clip(colours[label] + rng.normal(0, 40, (20, 20, 3)), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "PNG")
        images.append(buffer.getvalue())
    ids = np.asarray([f"{prefix}/{i:03d}.png" for i in range(n)], dtype=object)
    return Manifest(ids, None, pa.array(images, pa.binary()), labels, CLASSES)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("training")
    train, test = colour_images(48, 0, "train"), colour_images(30, 1, "test")
    write_manifest(train, str(root / "train.parquet"))
    write_manifest(test, str(root / "test.parquet"))
    labels = Labels(train.sample_ids, train.labels, CLASSES, {"source": "oracle", "selection": {"method": "random"}})
    write_labels(labels, str(root / "labels.parquet"))
    reference = finetune(train, labels, model=MODEL, out=str(root / "reference"), progress=False, **FAST)
    return {"root": root, "train": train, "test": test, "labels": labels, "reference": reference}
