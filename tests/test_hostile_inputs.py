"""A battery of hostile inputs across the commands, as a new user would try them: each must end with
a non-zero exit, one line on stderr that names the field or path (and, where there is one, the fix),
no traceback, and nothing written under the output name. The commands run in this process
(``cli.main``), which is what ``active-finetuning`` runs."""

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from active_finetuning.cli.main import main
from active_finetuning.data.artifacts import FeatureTable, write_features
from active_finetuning.data.manifest import Manifest, write_manifest
from active_finetuning.labels import Labels, write_labels
from tests.conftest import gaussian_mixture


def _png(value: int, size=(12, 12)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, (value, 255 - value, 40)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    features, labels = gaussian_mixture(120, 8, 3, seed=4)
    ids = np.asarray([f"img/{i:03d}.png" for i in range(120)], dtype=object)
    write_features(FeatureTable(ids, features, labels, {}), str(root / "features.parquet"))
    images = pa.array([_png(i % 200) for i in range(120)], pa.binary())
    write_manifest(Manifest(ids, None, images, labels, ["a", "b", "c"]), str(root / "manifest.parquet"))
    assert main(["select", "--features", str(root / "features.parquet"), "--budget", "12", "--method", "random",
                 "--out", str(root / "selection.parquet"), "--no-progress"]) == 0
    write_labels(Labels(ids[:12], labels[:12], ["a", "b", "c"], {}), str(root / "labels.parquet"))
    (root / "a-file").write_text("not a folder")
    (root / "config.yaml").write_text("pipeline:\n  manifest_uri: m\n  test_manifest_uri: t\n")
    pq.write_table(pa.table({"sample_id": [None, "img/001.png"]}), root / "null-ids.parquet")
    pq.write_table(pa.table({"id": ["img/001.png"]}), root / "no-sample-id.parquet")
    (root / "not-parquet.parquet").write_text("hello")
    return root


def _config(root, name: str, text: str) -> str:
    path = root / f"{name}.yaml"
    path.write_text("pipeline:\n  manifest_uri: m\n  test_manifest_uri: t\n" + text)
    return str(path)


def _annotations(root, name: str, content) -> str:
    path = root / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def _cases(root):
    f, m, s, lab = (str(root / n) for n in ("features.parquet", "manifest.parquet", "selection.parquet",
                                            "labels.parquet"))
    out = str(root / "out.parquet")
    sel = ["select", "--features", f, "--out", out, "--no-progress"]
    cases = [
        # budgets
        (sel + ["--budget", "0"], "budget must be at least 1"),
        (sel + ["--budget", "-5"], "budget must be at least 1"),
        (sel + ["--budget", "150%"], r"budget percentage must be in \(0, 100\]"),
        (sel + ["--budget", "0%"], r"budget percentage must be in \(0, 100\]"),
        (sel + ["--budget", "ten"], "not a sample count"),
        (sel + ["--budget", "1.5"], "not a sample count"),
        (sel + ["--budget", "0.1%"], "rounds down to 0 samples"),
        (sel + ["--budget", "121"], "exceeds the pool size 120"),
        # methods and their parameters
        (sel + ["--budget", "5", "--method", "activeft", "--iterations", "-1"], r"'iterations' must be an integer >= 0"),
        (sel + ["--budget", "5", "--method", "activeft", "--iterations", "2.5"], "'iterations' must be an integer"),
        (sel + ["--budget", "5", "--method", "activeft", "--temperature", "0"], "'temperature' must be a finite number > 0"),
        (sel + ["--budget", "5", "--method", "activeft", "--temperature", "nan"], "'temperature' must be a finite"),
        (sel + ["--budget", "5", "--method", "activeft", "--lr", "inf"], "'lr' must be a finite"),
        (sel + ["--budget", "5", "--method", "activeft", "--loss-form", "papr"], "'loss_form' must be one of"),
        (sel + ["--budget", "5", "--method", "activeft", "--precision", "float16"], "'precision' must be one of"),
        (sel + ["--budget", "5", "--method", "activeft", "--delta", "0.5"], "unknown parameter 'delta' for method 'activeft'"),
        (sel + ["--budget", "5", "--method", "bilaf", "--num-cores", "0"], "num_cores"),
        (sel + ["--budget", "5", "--method", "bilaf", "--num-cores", "many"], "num_cores"),
        (sel + ["--budget", "5", "--method", "bilaf", "--core-params", "iterations"], "core_params"),
        (sel + ["--budget", "5", "--method", "bilaf", "--core-params", "no_such=1"], "core_params.*unknown parameter 'no_such'"),
        (sel + ["--budget", "5", "--method", "bilaf", "--core-selector", "bilaf"], "core_selector"),
        (sel + ["--budget", "5", "--method", "bilaf", "--ring-fraction", "1"], r"'ring_fraction' must be a finite number in \(0, 1\)"),
        (sel + ["--budget", "5", "--method", "kmeans", "--init", "kmeans++"], "'init' must be one of"),
        (sel + ["--budget", "5", "--method", "typiclust", "--neighbours", "0"], "'neighbours' must be an integer >= 1"),
        (sel + ["--budget", "5", "--method", "probcover", "--purity", "1.5"], r"'purity' must be a finite number in \(0, 1\]"),
        (sel + ["--budget", "5", "--method", "probcover", "--delta", "-1"], "'delta' must be a finite number > 0"),
        (sel + ["--budget", "5", "--seed", "-1"], "seed must be a non-negative integer"),
        (sel + ["--budget", "5", "--threads", "0"], "--threads must be at least 1"),
        # artifacts
        (["select", "--features", str(root / "missing.parquet"), "--budget", "5", "--out", out], "missing.parquet"),
        (["select", "--features", str(root / "not-parquet.parquet"), "--budget", "5", "--out", out], "not-parquet.parquet"),
        (["select", "--features", str(root / "no-sample-id.parquet"), "--budget", "5", "--out", out], "sample_id"),
        (["select", "--features", m, "--budget", "5", "--out", out], "feature"),
        (sel + ["--budget", "5", "--labeled", str(root / "null-ids.parquet")], "row 0 holds a null"),
        (sel + ["--budget", "5", "--labeled", str(root / "no-sample-id.parquet")], "has no 'sample_id' column"),
        (["select", "--features", "s3://bucket/f.parquet", "--budget", "5", "--out", out], "s3"),
        # output locations, checked before any work
        (sel[:-3] + ["--budget", "5", "--out", str(root)], "is a folder; give a file name inside it"),
        (sel[:-3] + ["--budget", "5", "--out", str(root / "a-file" / "x.parquet")], "which is a file"),
        (sel[:-3] + ["--budget", "5", "--out", f], "is the input"),
        (sel + ["--budget", "5", "--method", "probcover", "--graph-cache", str(root / "a-file")], "--graph-cache.*is a file; give a folder"),
        (["manifest", str(root / "no-such-folder"), "--out", out], "no-such-folder"),
        (["extract", "--manifest", m, "--model", "test_efficientnet", "--out", m], "is the input"),
        (["extract", "--manifest", m, "--model", "no_such_model_xyz", "--out", out], "no_such_model_xyz"),
        (["extract", "--manifest", m, "--model", "test_efficientnet", "--out", out, "--max-image-pixels", "0"],
         "--max-image-pixels must be a positive integer"),
        (["merge-features", f, "--out", f], "is the input"),
        (["diagnose", "--features", f, "--selection", s, "--out", str(root / "a-file")], "--out.*is a file; give a folder"),
        (["diagnose", "--features", f, "--selection", s, "--clusters", "0"], "--clusters must be at least 1"),
        # labels
        (["oracle-labels", "--selection", s, "--manifest", m, "--out", s], "is the input"),
        (["import-labels", _annotations(root, "null.json", [{"sample_id": "img/000.png", "annotations": None}]),
          "--manifest", m, "--out", out], "'annotations' must be a list of objects"),
        (["import-labels", _annotations(root, "dict.json", {"sample_id": "img/000.png"}), "--manifest", m, "--out", out],
         "must be a JSON list of tasks"),
        (["import-labels", _annotations(root, "result.json", [{"data": {"sample_id": "img/000.png"},
                                                               "annotations": [{"result": ["x"]}]}]),
          "--manifest", m, "--out", out], "'result' must be a list of objects"),
        (["import-labels", _annotations(root, "data.json", [{"data": "str"}]), "--manifest", m, "--out", out],
         "has 'data' of type str"),
        (["import-labels", _annotations(root, "minus.csv", "sample_id,label\nimg/000.png,-2\n"), "--manifest", m,
          "--out", out], "name unknown classes"),
        (["import-labels", _annotations(root, "unknown.csv", "sample_id,label\nimg/000.png,zebra\n"), "--manifest", m,
          "--out", out], "known classes"),
        (["import-labels", _annotations(root, "empty.csv", "sample_id,label\nimg/000.png,\n"), "--manifest", m,
          "--out", out], "have no label"),
        (["import-labels", _annotations(root, "stranger.csv", "sample_id,label\nnot/in/pool.png,a\n"), "--manifest", m,
          "--out", out], "not/in/pool.png"),
        (["import-labels", _annotations(root, "twice.csv", "sample_id,label\nimg/000.png,a\nimg/000.png,b\n"),
          "--manifest", m, "--out", out], "twice"),
        (["import-labels", _annotations(root, "header.csv", "id,class\nimg/000.png,a\n"), "--manifest", m, "--out", out],
         "'sample_id' and 'label' columns"),
        (["import-labels", _annotations(root, "bad.json", "[{"), "--manifest", m, "--out", out], "not valid JSON"),
        # models and evaluation
        (["finetune", "--manifest", m, "--labels", lab, "--model", "test_efficientnet", "--out", str(root / "a-file")],
         "--out.*is a file; give a folder"),
        (["finetune", "--manifest", m, "--labels", lab, "--model", "test_efficientnet", "--out", str(root / "mdl"),
          "--epochs", "0"], "'epochs' must be an integer >= 1"),
        (["finetune", "--manifest", m, "--labels", lab, "--model", "test_efficientnet", "--out", str(root / "mdl"),
          "--crop-scale", "0.9", "0.1"], "'crop_scale' must be"),
        (["finetune", "--manifest", m, "--labels", lab, "--model", "test_efficientnet", "--out", str(root / "mdl"),
          "--interpolation", "cubic"], "'interpolation' must be one of"),
        (["evaluate", "--model", str(root), "--manifest", m, "--out", out], "is not a model artifact"),
        (["probe", "--features-train", f, "--selection", s, "--features-test", f, "--k", "0"], "'k' must be an integer >= 1"),
        (["probe", "--features-train", f, "--selection", s, "--features-test", f, "--out", f], "is the input"),
        # study configurations (checked before the first step)
        (["run", "--config", _config(root, "evaluation", "  evaluation: finetun\n")], "evaluation must be one of"),
        (["run", "--config", _config(root, "method", "  methods: [activeftt]\n")], "activeftt"),
        (["run", "--config", _config(root, "budget", "  budgets: ['150%']\n")], r"\(0, 100\]"),
        (["run", "--config", _config(root, "shards", "  num_shards: two\n")], "num_shards must be an integer"),
        (["run", "--config", _config(root, "seeds", "  seeds: [-1]\n")], "seeds must be a non-negative integer"),
        (["run", "--config", _config(root, "params", "  method_params: {activeft: {iterations: -3}}\n")],
         "method_params.activeft.*'iterations'"),
        (["run", "--config", _config(root, "probe", "  probe_params: {C: 0}\n")], "probe_params.*'C'"),
        (["run", "--config", _config(root, "recipe", "  recipe: {epochs: many}\n")], "recipe.*'epochs'"),
        (["run", "--config", _config(root, "unknown", "  budget: 5\n")], "unknown parameter"),
        (["run", "--config", str(root / "no-config.yaml")], "no-config.yaml"),
        (["run", "--config", str(root / "config.yaml"), "--set", "evaluation=finetun"], "evaluation must be one of"),
    ]
    return cases


def _ids():
    import pathlib
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:  # the cases write small input files; only names count here
        return [f"{i:02d}-{argv[0]}" for i, (argv, _) in enumerate(_cases(pathlib.Path(scratch)))]


@pytest.mark.parametrize("index", range(len(_ids())), ids=_ids())
def test_a_hostile_input_ends_in_one_clear_line(files, index, capsys):
    import re

    argv, message = _cases(files)[index]
    out = files / "out.parquet"
    assert not out.exists()
    code = main(list(argv))
    captured = capsys.readouterr()
    assert code != 0, f"{argv} succeeded"
    lines = [line for line in captured.err.strip().splitlines() if line.strip()]
    assert lines and "Traceback" not in captured.err, captured.err
    assert re.search(message, lines[-1]), lines[-1]
    assert lines[-1].startswith(f"active-finetuning {argv[0]}: error: "), lines[-1]
    assert not out.exists(), "a failed command wrote its output"


def test_the_battery_is_at_least_sixty_cases():
    assert len(_ids()) >= 60
