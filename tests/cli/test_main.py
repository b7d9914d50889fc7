
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from active_finetuning.data.artifacts import FeatureTable, metadata_of, write_features
from tests.conftest import gaussian_mixture, run_cli, run_cli_many


def _mixture_file(path):
    features, labels = gaussian_mixture(800, 16, 8, seed=1)
    write_features(FeatureTable.from_array(features, labels=labels), str(path))
    return path


@pytest.fixture
def features_file(tmp_path):
    return _mixture_file(tmp_path / "features.parquet")


def test_select_writes_the_selection_contract_and_prints_a_summary(features_file, tmp_path):
    out = tmp_path / "sel" / "selection.parquet"
    result = run_cli("select", "--features", str(features_file), "--budget", "5%", "--method", "activeft",
                     "--iterations", "40", "--temperature", "0.1", "--seed", "2", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "method activeft: 40 of 800" in result.stdout and "classes covered" in result.stdout
    table = pq.read_table(out)
    assert table.column_names[:3] == ["sample_id", "rank", "role"]
    assert table.column("rank").to_pylist() == list(range(40))
    meta = metadata_of(table.schema)
    assert meta["params"]["iterations"] == 40 and meta["params"]["temperature"] == 0.1
    assert meta["seed"] == 2 and meta["budget"] == 40 and meta["features_identity"]


def _bad_features(tmp_path, columns):
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table(columns), path)
    return path


BAD_INPUTS = [
    ("nan", [], "NaN or infinite"),
    ("zero", [], "all-zero rows"),
    ("mixed", [], "mixes dimensions"),
    ("empty", [], "empty"),
    ("nofeature", [], "no 'feature' column"),
    ("junk", [], "is not a readable Parquet file"),  # read ahead in a thread: its error surfaces as usual
    ("missing", [], "does not exist or is not a file"),
    ("dupids", [], "duplicated ids"),
    ("ok", ["--budget", "0"], "budget must be at least 1"),
    ("ok", ["--budget", "5000"], "exceeds the pool size"),
    ("ok", ["--budget", "150%"], r"percentage must be in \(0, 100\]"),
    ("ok", ["--budget", "0%"], r"percentage must be in \(0, 100\]"),
    ("ok", ["--iterations", "-1"], "'iterations' must be an integer >= 0, got -1"),
    ("ok", ["--temperature", "hot"], "'temperature' must be a finite number > 0, got 'hot'"),
    ("ok", ["--max-iter", "5"], "unknown parameter 'max_iter' for method 'activeft'"),
    ("ok", ["--loss-form", "other"], "'loss_form' must be one of"),
]


def _bad_source(folder, case, features):
    rows = {
        "nan": {"sample_id": ["a", "b"], "feature": [[1.0, float("nan")], [1.0, 2.0]]},
        "zero": {"sample_id": ["a", "b"], "feature": [[0.0, 0.0], [1.0, 2.0]]},
        "mixed": {"sample_id": ["a", "b"], "feature": [[1.0, 2.0], [1.0, 2.0, 3.0]]},
        "empty": {"sample_id": pa.array([], pa.string()), "feature": pa.array([], pa.list_(pa.float32()))},
        "nofeature": {"sample_id": ["a", "b"], "x": [1, 2]},
        "dupids": {"sample_id": ["a", "a"], "feature": [[1.0, 2.0], [2.0, 1.0]]},
    }
    if case == "junk":
        source = folder / "junk.parquet"
        source.write_bytes(b"not a Parquet file")
        return source
    if case == "missing":
        return folder / "nowhere.parquet"
    return features if case == "ok" else _bad_features(folder, rows[case])


def _bad_select(folder, case, extra, features):
    """The ``select`` arguments of one bad input, and the output it must not write."""
    out = folder / "out" / "selection.parquet"
    args = ["select", "--features", str(_bad_source(folder, case, features)), "--out", str(out), "--no-progress"]
    if not any(a == "--budget" for a in extra):
        args += ["--budget", "1"]
    return [*args, *extra], out


def _nothing_written(out):
    return not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))


@pytest.fixture(scope="module")
def bad_input_runs(tmp_path_factory):
    """Every case of ``BAD_INPUTS`` through the CLI's ``main``, all in one subprocess (``run_cli_many``): per case,
    the exit status, the standard error and the output that must not exist."""
    root = tmp_path_factory.mktemp("bad-inputs")
    features = _mixture_file(root / "features.parquet")
    argvs, outs = [], []
    for number, (case, extra, _) in enumerate(BAD_INPUTS):
        folder = root / str(number)
        folder.mkdir()
        argv, out = _bad_select(folder, case, extra, features)
        argvs.append(argv)
        outs.append(out)
    return [(code, err, out) for (code, err), out in zip(run_cli_many(argvs), outs)]


@pytest.mark.parametrize("number", range(len(BAD_INPUTS)),
                         ids=[f"{case}{'-' + '='.join(extra) if extra else ''}" for case, extra, _ in BAD_INPUTS])
def test_bad_input_exits_non_zero_with_a_message_and_writes_nothing(bad_input_runs, number):
    code, stderr, out = bad_input_runs[number]
    assert code != 0
    assert re.search(BAD_INPUTS[number][2], stderr), stderr
    assert "Traceback" not in stderr
    assert _nothing_written(out)


@pytest.mark.parametrize("case, extra", [("nan", []), ("ok", ["--budget", "150%"])])
def test_bad_input_through_the_command_itself(tmp_path, features_file, case, extra):
    """The same, through the command's own process: its exit status is the process's."""
    argv, out = _bad_select(tmp_path, case, extra, features_file)
    result = run_cli(*argv)
    assert result.returncode == 2
    assert "error:" in result.stderr and "Traceback" not in result.stderr
    assert _nothing_written(out)


def test_select_reads_its_features_ahead_and_selects_as_the_library_does(features_file, tmp_path):
    from active_finetuning.cli import select as command
    from active_finetuning.cli.main import main

    out = tmp_path / "a.parquet"
    assert main(["select", "--features", str(features_file), "--budget", "5", "--method", "kcenter",
                 "--out", str(out), "--no-progress"]) == 0
    assert command._read_ahead.args == (str(features_file), "features")
    assert command._read_ahead.result() is None  # the table was handed over, not kept
    direct = tmp_path / "b.parquet"
    from active_finetuning.data.artifacts import read_features, write_selection
    from active_finetuning.selection import select
    write_selection(select(read_features(str(features_file)), 5, "kcenter"), str(direct))
    assert pq.read_table(out).column("sample_id").equals(pq.read_table(direct).column("sample_id"))


def test_unknown_method_is_rejected(features_file, tmp_path):
    result = run_cli("select", "--features", str(features_file), "--budget", "3", "--method", "nope",
                     "--out", str(tmp_path / "s.parquet"))
    assert result.returncode == 2 and "invalid choice: 'nope'" in result.stderr


def test_methods_lists_every_registered_selector():
    result = run_cli("methods")
    assert result.returncode == 0
    for name in ("activeft", "kcenter", "kmeans", "random"):
        assert f"{name}:" in result.stdout


def test_select_does_not_import_timm_or_mlflow(features_file, tmp_path):
    code = ("import sys; from active_finetuning.cli.main import main; "
            f"main(['select','--features',{str(features_file)!r},'--budget','5','--method','random',"
            f"'--out',{str(tmp_path / 's.parquet')!r}]); "
            "print(sorted(m for m in ('timm','mlflow','kfp','torchvision') if m in sys.modules))")
    import subprocess
    import sys
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("[]")


def test_ctrl_c_during_extract_exits_130_promptly_with_one_line_and_no_partial_output(tmp_path):
    """A real SIGINT to the real command while it extracts."""
    import signal
    import subprocess
    import sys
    import time

    from active_finetuning.data.demo import mnist_manifests
    from active_finetuning.data.manifest import write_manifest

    pool, _ = mnist_manifests(pool_size=4000, test_size=10, seed=0)
    write_manifest(pool, str(tmp_path / "m.parquet"))
    out = tmp_path / "f.parquet"
    process = subprocess.Popen([sys.executable, "-m", "active_finetuning.cli", "extract", "--manifest",
                                str(tmp_path / "m.parquet"), "--model", "test_efficientnet", "--image-size", "224",
                                "--batch-size", "4", "--workers", "0", "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               # a suite started in the background (``make test &``) ignores SIGINT, and so
                               # would the command it starts: give the command the default, as in a terminal
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = ""
    while "batch" not in seen:  # the progress bar drawn: inside the extraction loop
        seen += process.stderr.read(1)
        assert process.poll() is None, seen
    time.sleep(1)
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=60)
    err = seen + rest
    assert process.returncode == 130, err
    assert time.monotonic() - sent < 10
    import re

    lines = [line for line in re.split(r"[\r\n]", err) if line.strip() and "|" not in line]  # bars redraw with \r
    assert "Traceback" not in err and lines[-1] == (
        "active-finetuning extract: interrupted; nothing was written under the output name")
    assert not out.exists() and not list(tmp_path.glob(".f.parquet.*"))


def test_a_step_killed_mid_write_restarts_cleanly_when_retried(tmp_path):
    """Fault: `extract` killed with SIGKILL while it streams its output (what a preempted node does to
    a pipeline step), then run again as a retry would: the retry writes the whole artifact, and the
    killed attempt's temporary is gone."""
    import signal
    import subprocess
    import sys
    import time

    from active_finetuning.data.artifacts import read_features
    from active_finetuning.data.demo import mnist_manifests
    from active_finetuning.data.manifest import write_manifest

    pool, _ = mnist_manifests(pool_size=2000, test_size=10, seed=0)
    write_manifest(pool, str(tmp_path / "m.parquet"))
    out = tmp_path / "f.parquet"
    command = [sys.executable, "-m", "active_finetuning.cli", "extract", "--manifest", str(tmp_path / "m.parquet"),
               "--model", "test_efficientnet", "--image-size", "64", "--batch-size", "4", "--workers", "0",
               "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".f.parquet.*.tmp")):  # the output is open: extraction has begun
        assert process.poll() is None and time.monotonic() < deadline, "extract ended before it could be killed"
        time.sleep(0.2)
    time.sleep(1)
    assert process.poll() is None, "extract ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert not out.exists() and list(tmp_path.glob(".f.parquet.*.tmp")), "the kill left no partial output"
    retry = subprocess.run(command + ["--no-progress"], capture_output=True, text=True, timeout=300)
    assert retry.returncode == 0, retry.stderr
    assert len(read_features(str(out))) == 2000
    assert not list(tmp_path.glob(".f.parquet.*.tmp"))
