"""The prepared GPU check runs whole in its smoke form on the CPU (on a GPU machine it runs full size)."""

import json


def test_gpu_check_smoke_form_writes_every_figure(tmp_path):
    from benchmarks.gpu_check import main

    assert main(["--out", str(tmp_path), "--smoke"]) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["smoke"] and report["device"] in ("cpu", "cuda")
    extraction = report["extraction"]
    assert extraction["images"] == 96 and extraction["images_per_second"] > 0 and extraction["ratio"] > 0
    for method in ("activeft", "bilaf"):
        assert report["selection"][method]["picked"] == 20 and report["selection"][method]["seconds"] >= 0
    finetune = report["finetune"]
    assert 0 <= finetune["device"]["top1"] <= 1 and 0 <= finetune["cpu_float32"]["top1"] <= 1
    if report["device"] == "cpu":  # the same recipe on the same device: the same model, the same score
        assert finetune["top1_difference"] == 0
    table = (tmp_path / "gpu_check.md").read_text()
    assert "| activeft, 600 rows, budget 20 |" in table and "smoke form" in table
