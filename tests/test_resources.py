"""The CPUs a process may use: affinity capped by the cgroup quota (a pod's CPU limit)."""

from active_finetuning import resources
from tests.openmp_display import waiting_settings


def test_cgroup_quota_is_read_from_v2_and_v1_files(tmp_path):
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert resources.cgroup_cpu_quota(v2) == 1.5
    (v2 / "cpu.max").write_text("max 100000\n")
    assert resources.cgroup_cpu_quota(v2) is None
    v1 = tmp_path / "v1" / "cpu"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("200000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert resources.cgroup_cpu_quota(tmp_path / "v1") == 2.0
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    assert resources.cgroup_cpu_quota(tmp_path / "v1") is None
    assert resources.cgroup_cpu_quota(tmp_path / "nothing") is None


def test_a_quota_caps_the_cpus_and_the_defaults_follow(monkeypatch):
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    monkeypatch.setattr(resources, "cgroup_cpu_quota", lambda root=None: 1.5)
    assert resources.available_cpus() == 2  # a pod limited to 1.5 CPUs on a 64-core node
    assert resources.default_threads() == 2 and resources.default_loader_workers("cuda") == 1
    assert resources.default_loader_workers("cpu") == 0  # CPU training's threads use both CPUs
    monkeypatch.setattr(resources, "cgroup_cpu_quota", lambda root=None: None)
    assert resources.available_cpus() == 64 and resources.default_loader_workers("cuda") == 8
    assert resources.default_loader_workers("cpu") == 8
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    assert resources.default_loader_workers("cpu") == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert resources.available_cpus() == 1 and resources.default_loader_workers("cuda") == 0


def test_openmp_waiting_defaults_only_where_the_user_chose_nothing():
    chosen = {}
    resources.default_openmp_waiting(chosen)
    assert chosen == resources.OPENMP_WAITING and chosen["OMP_WAIT_POLICY"] == "PASSIVE"
    for user in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"OMP_WAIT_POLICY": ""}, {"GOMP_SPINCOUNT": "0"}):
        environ = dict(user)
        resources.default_openmp_waiting(environ)
        assert environ == user  # a spin count of ours would override the user's ACTIVE


def _libgomp_settings(environ) -> dict:
    """What torch's OpenMP runtime (libgomp) uses in a CLI process, as it prints it at start-up."""
    import subprocess
    import sys

    shown = subprocess.run([sys.executable, "-m", "active_finetuning.cli", "methods"], capture_output=True,
                           text=True, check=True, env={**environ, "OMP_DISPLAY_ENV": "VERBOSE"}).stderr
    return waiting_settings(shown)


def test_the_command_line_sets_openmp_waiting_before_torch_loads():
    import os

    import pytest

    environ = {k: v for k, v in os.environ.items() if k not in resources.OPENMP_WAITING}
    ours = _libgomp_settings(environ)
    if ours == dict.fromkeys(resources.OPENMP_WAITING):
        pytest.skip("torch's OpenMP runtime is not libgomp (it printed no settings)")
    assert ours == resources.OPENMP_WAITING
    # the user's ACTIVE is kept, with libgomp's own spin count for it (ours would override it)
    assert _libgomp_settings({**environ, "OMP_WAIT_POLICY": "ACTIVE"}) == {
        "OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": "30000000000"}
