"""The model artifact: evaluating a finetuned model, and refusing damaged ones."""

import json

import numpy as np
import pytest

from active_finetuning.cli.main import main
from active_finetuning.data.manifest import Manifest
from active_finetuning.errors import InputError
from active_finetuning.training.model import MODEL_FILE
from tests.conftest import run_cli
from tests.training.conftest import CLASSES


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
    from active_finetuning.training.evaluate import evaluate

    with pytest.raises(InputError, match=message):
        evaluate(str(_damaged_model(data, tmp_path, damage)), data["test"], progress=False)


def test_evaluate_rejects_corrupt_weights_and_foreign_class_lists(data, tmp_path):
    from active_finetuning.training.evaluate import evaluate

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
