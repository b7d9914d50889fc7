"""``run --in-containers`` refuses, before it writes anything, what its containers could not do: a local
input they cannot see, or no Docker-compatible API to talk to. (Running the steps in the image is the
e2e test's opt-in ``containers`` case.)"""

from __future__ import annotations

from tests.conftest import run_cli


def test_a_local_input_outside_the_work_folder_is_refused_by_name(tmp_path):
    elsewhere = tmp_path / "pool"
    elsewhere.mkdir()
    result = run_cli("run", "--in-containers", "--workdir", str(tmp_path / "work"),
                     "--set", f"manifest_uri={elsewhere}", "--set", "test_manifest_uri=gs://b/test.parquet")
    assert result.returncode != 0
    assert f"manifest_uri='{elsewhere}'" in result.stderr and "outside the work folder" in result.stderr
    assert "test_manifest_uri" not in result.stderr  # remote: visible everywhere
    assert not (tmp_path / "work").exists()


def test_no_container_engine_is_a_clear_error_before_any_work(tmp_path):
    dead = f"unix://{tmp_path / 'nobody.sock'}"
    result = run_cli("run", "--in-containers", "--workdir", str(tmp_path / "work"),
                     "--set", "manifest_uri=gs://b/pool", "--set", "test_manifest_uri=gs://b/test.parquet",
                     env={"DOCKER_HOST": dead})
    assert result.returncode != 0
    assert f"no container engine answered at {dead}" in result.stderr and "podman system service" in result.stderr
    assert not (tmp_path / "work").exists()
