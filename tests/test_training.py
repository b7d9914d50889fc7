"""Finetuning and evaluation with a real tiny timm model (``test_efficientnet``) on tiny real images."""

import io
import json

import numpy as np
import pyarrow as pa
import pytest

from active_finetuning.cli import main
from active_finetuning.errors import InputError
from active_finetuning.labels import Labels, write_labels
from active_finetuning.manifest import Manifest, write_manifest
from active_finetuning.training import CHECKPOINT_FILE, MODEL_FILE, Recipe, finetune, learning_rate
from tests.conftest import run_cli

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


def test_finetune_writes_safetensors_and_a_config_that_records_the_run(data):
    from safetensors.torch import load_file

    config, out = data["reference"], data["root"] / "reference"
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]  # checkpoint removed
    assert json.loads((out / "config.json").read_text()) == config
    assert config["model"] == MODEL and config["classes"] == CLASSES and config["num_classes"] == 3
    assert config["image_size"] == 32 and config["recipe"]["lr"] == 0.05 and config["recipe"]["momentum"] == 0.9
    assert config["selection"] == {"method": "random"} and config["labeled"] == 48
    assert config["epochs"] == 4 and config["steps"] == 24  # 48 // 8 steps per epoch
    assert config["history"][-1]["train_loss"] < config["history"][0]["train_loss"]
    assert load_file(out / MODEL_FILE)["classifier.weight"].shape[0] == 3


def test_evaluate_scores_the_model_well_above_chance(data, tmp_path):
    out = tmp_path / "metrics.json"
    result = run_cli("evaluate", "--model", str(data["root"] / "reference"), "--manifest",
                     str(data["root"] / "test.parquet"), "--out", str(out), "--no-tracking")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(out.read_text())
    assert metrics["samples"] == 30 and metrics["top1"] > 0.6  # chance is 1/3
    assert metrics["top5"] == 1.0  # 3 classes: top-3
    assert metrics["confusion_matrix"]["categories"] == CLASSES
    assert np.asarray(metrics["confusion_matrix"]["matrix"]).sum() == 30


def test_an_interrupted_run_resumes_from_its_checkpoint_to_the_same_weights(data, tmp_path):
    out = tmp_path / "model"

    def preempt(epoch, metrics):
        if epoch == 2:
            raise KeyboardInterrupt  # the node goes away after epoch 2's checkpoint

    with pytest.raises(KeyboardInterrupt):
        finetune(data["train"], data["labels"], model=MODEL, out=str(out), on_epoch_end=preempt, progress=False,
                 **FAST)
    assert (out / CHECKPOINT_FILE).exists() and not (out / MODEL_FILE).exists()
    epochs_run = []
    config = finetune(data["train"], data["labels"], model=MODEL, out=str(out), progress=False,
                      on_epoch_end=lambda epoch, m: epochs_run.append(epoch), **FAST)
    assert epochs_run == [3, 4]
    assert (out / MODEL_FILE).read_bytes() == (data["root"] / "reference" / MODEL_FILE).read_bytes()
    assert [h["train_loss"] for h in config["history"]] == [h["train_loss"] for h in data["reference"]["history"]]
    again = []
    finetune(data["train"], data["labels"], model=MODEL, out=str(out), progress=False,
             on_epoch_end=lambda epoch, m: again.append(epoch), **FAST)
    assert again == []  # a retry of a finished step does no work


def test_a_corrupt_or_foreign_checkpoint_is_an_error_and_nothing_is_written(data, tmp_path, capsys):
    out = tmp_path / "model"
    out.mkdir()
    (out / CHECKPOINT_FILE).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    code = main(["finetune", "--manifest", str(data["root"] / "train.parquet"), "--labels",
                 str(data["root"] / "labels.parquet"), "--model", MODEL, "--out", str(out), "--no-tracking",
                 "--epochs", "1", "--image-size", "32", "--drop-path", "0"])
    stderr = capsys.readouterr().err
    assert code == 2 and "is corrupt" in stderr and "delete it" in stderr
    assert sorted(p.name for p in out.iterdir()) == [CHECKPOINT_FILE]
    from active_finetuning.training import _checkpoint_bytes  # a checkpoint of another recipe
    import torch

    net = torch.nn.Linear(2, 2)
    (out / CHECKPOINT_FILE).write_bytes(_checkpoint_bytes(net, torch.optim.SGD(net.parameters(), lr=1), 1, 1,
                                                          "another-run", []))
    with pytest.raises(InputError, match="belongs to another run"):
        finetune(data["train"], data["labels"], model=MODEL, out=str(out), progress=False, **FAST)


def _damaged_model(data, tmp_path, damage):
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    (model / MODEL_FILE).write_bytes((data["root"] / "reference" / MODEL_FILE).read_bytes())
    (model / "config.json").write_text(json.dumps(damage(data["reference"])))
    return model


def test_evaluate_cli_rejects_a_model_whose_config_and_weights_disagree(data, tmp_path, capsys):
    model = _damaged_model(data, tmp_path, lambda c: {**c, "num_classes": 4, "classes": c["classes"] + ["pink"]})
    code = main(["evaluate", "--model", str(model), "--manifest", str(data["root"] / "test.parquet"),
                 "--out", str(tmp_path / "metrics.json"), "--no-tracking"])
    stderr = capsys.readouterr().err
    assert code == 2 and "do not match its config" in stderr, stderr
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.parametrize("damage, message", [
    (lambda c: {**c, "model": "test_resnet"}, "do not match its config"),
    (lambda c: {**c, "num_classes": 5}, "inconsistent"),
    (lambda c: {k: v for k, v in c.items() if k != "data_config"}, "has no 'data_config'"),
])
def test_evaluate_rejects_other_config_damage(data, tmp_path, damage, message):
    from active_finetuning.evaluation import evaluate

    with pytest.raises(InputError, match=message):
        evaluate(str(_damaged_model(data, tmp_path, damage)), data["test"], progress=False)


def test_evaluate_rejects_corrupt_weights_and_foreign_class_lists(data, tmp_path):
    from active_finetuning.evaluation import evaluate

    model = tmp_path / "model"
    model.mkdir()
    (model / MODEL_FILE).write_bytes((data["root"] / "reference" / MODEL_FILE).read_bytes()[:5000])
    (model / "config.json").write_text(json.dumps(data["reference"]))
    with pytest.raises(InputError, match="is corrupt"):
        evaluate(str(model), data["test"], progress=False)
    other = Manifest(data["test"].sample_ids, None, data["test"].images, data["test"].labels, ["a", "b", "c"])
    with pytest.raises(InputError, match="differ from the model's"):
        evaluate(str(data["root"] / "reference"), other, progress=False)
    with pytest.raises(InputError, match="not a model artifact"):
        evaluate(str(tmp_path), data["test"], progress=False)


def test_empty_single_class_and_unknown_labels_are_refused(data, tmp_path):
    train = data["train"]
    single = Labels(train.sample_ids[train.labels == 1], np.ones(16, dtype=np.int64), CLASSES)
    with pytest.raises(InputError, match="single class"):
        finetune(train, single, model=MODEL, out=str(tmp_path / "m"), **FAST)
    stranger = Labels(np.asarray(["elsewhere/1.png", "train/000.png"], dtype=object), [0, 1], CLASSES)
    with pytest.raises(InputError, match="not in the manifest"):
        finetune(train, stranger, model=MODEL, out=str(tmp_path / "m"), **FAST)
    with pytest.raises(InputError, match="empty"):
        Labels(np.asarray([], dtype=object), np.asarray([], dtype=np.int64))
    other_names = Labels(train.sample_ids, train.labels, ["r", "g", "b"])
    with pytest.raises(InputError, match="import the labels against this manifest"):
        finetune(train, other_names, model=MODEL, out=str(tmp_path / "m"), **FAST)
    assert not (tmp_path / "m").exists()


def test_recipe_is_validated_and_its_length_scales_with_the_labeled_set():
    assert Recipe(epochs=10, batch_size=64).plan(500) == (10, 70)
    assert Recipe(epochs=10, batch_size=64).plan(5000) == (10, 780)
    assert Recipe(steps=100, batch_size=64).plan(500) == (15, 105)  # whole epochs covering the budget
    assert Recipe(batch_size=64).plan(20) == (100, 100)  # one batch of the whole set per epoch
    for bad, message in [({"lr": -1}, "lr must be >= 0"), ({"epochs": 0}, "epochs must be an integer >= 1"),
                         ({"crop_scale": (0.9, 0.1)}, "crop_scale"), ({"warmup": 3}, "unknown recipe parameters")]:
        with pytest.raises(InputError, match=message):
            Recipe.from_dict(bad)


def test_learning_rate_warms_up_linearly_then_follows_a_cosine():
    recipe = Recipe(lr=0.1, warmup_lr=0.0, min_lr=0.0, warmup_fraction=0.1)
    rates = [learning_rate(recipe, step, 100) for step in range(100)]
    assert rates[0] == 0.0 and rates[5] == pytest.approx(0.05) and rates[10] == pytest.approx(0.1)
    assert rates[55] == pytest.approx(0.05) and rates[99] < 1e-4
    assert all(a >= b for a, b in zip(rates[10:], rates[11:]))
