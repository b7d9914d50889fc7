"""The wait-policy benchmark measures the environments it names."""

from benchmarks.wait_policy import policy_environment


def test_each_policy_sets_what_libgomp_reads(monkeypatch):
    monkeypatch.setenv("GOMP_SPINCOUNT", "7")  # the caller's own value never leaks into a measured policy
    assert policy_environment("spin:3000")["OMP_WAIT_POLICY"] == "PASSIVE"
    assert policy_environment("spin:3000")["GOMP_SPINCOUNT"] == "3000"
    active = policy_environment("ACTIVE")
    assert active["OMP_WAIT_POLICY"] == "ACTIVE" and "GOMP_SPINCOUNT" not in active
    unset = policy_environment("unset")
    # present but empty: libgomp ignores it, and the CLI does not replace it with its own default
    assert unset["OMP_WAIT_POLICY"] == "" and "GOMP_SPINCOUNT" not in unset
