"""The wait-policy benchmark measures the environments it names."""

import pytest

from benchmarks.wait_policy import main, policy_environment


def test_each_policy_sets_what_libgomp_reads(monkeypatch):
    monkeypatch.setenv("GOMP_SPINCOUNT", "7")  # the caller's own value never leaks into a measured policy
    assert policy_environment("spin:3000")["OMP_WAIT_POLICY"] == "PASSIVE"
    assert policy_environment("spin:3000")["GOMP_SPINCOUNT"] == "3000"
    active = policy_environment("ACTIVE")
    assert active["OMP_WAIT_POLICY"] == "ACTIVE" and "GOMP_SPINCOUNT" not in active
    unset = policy_environment("unset")
    # present but empty: libgomp ignores it, and the CLI does not replace it with its own default
    assert unset["OMP_WAIT_POLICY"] == "" and "GOMP_SPINCOUNT" not in unset


@pytest.mark.parametrize("bad", ["spin:", "spin:-1", "spin:3e3", "passive"])
def test_a_policy_it_cannot_measure_is_refused_before_anything_runs(bad, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--count", "10", "--policies", "ACTIVE", bad])
    assert exit_.value.code == 2 and "expected unset, ACTIVE, PASSIVE or spin:N" in capsys.readouterr().err
