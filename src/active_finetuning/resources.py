"""How many CPUs this process may really use, for thread and worker defaults that do not oversubscribe.

``os.cpu_count()`` (and so torch's default thread count) is the host's count: a Kubernetes pod limited
to 2 CPUs on a 64-core node still sees 64, and 64 busy-waiting OpenMP threads sharing 2 CPUs' worth
of quota run many times slower than 2. The limit is the smaller of the CPU affinity mask and the
cgroup's CPU quota (v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``), rounded up.

How idle OpenMP threads wait is set by environment variables read once, when torch's OpenMP runtime
loads: the command line and the image set ``OPENMP_WAITING`` (``default_openmp_waiting``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")

# Idle OpenMP threads spin about 30 µs (libgomp counts some 100 spins per µs), then sleep: most gaps
# between torch's parallel regions are shorter, so the threads are awake when the next region starts
# (no wake-up per region, as with PASSIVE alone), and on a node shared with other work they give their
# CPUs back in any longer serial stretch (benchmarks/RESULTS.md, "Thread defaults under load").
# torch's Linux wheels use libgomp; another OpenMP runtime ignores GOMP_SPINCOUNT and sleeps at once.
OPENMP_WAITING = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "3000"}


def cgroup_cpu_quota(root: Path = CGROUP_ROOT) -> float | None:
    """The CPUs the cgroup's quota allows (e.g. 1.5), or None when unlimited or unknown."""
    try:
        text = (root / "cpu.max").read_text().split()  # cgroup v2: "<quota|max> <period>"
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
        return None
    except (OSError, ValueError, IndexError):
        pass
    try:  # cgroup v1
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def available_cpus() -> int:
    """CPUs this process may use: the affinity mask, capped by the cgroup quota (at least 1)."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        count = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        count = min(count, math.ceil(quota))
    return max(1, count)


def default_openmp_waiting(environ=os.environ) -> None:
    """Set ``OPENMP_WAITING`` in ``environ``, unless the user chose how OpenMP threads wait (either
    variable set, even empty); to take effect it must run before torch is imported."""
    if not any(name in environ for name in OPENMP_WAITING):
        environ.update(OPENMP_WAITING)


def default_threads() -> int:
    """torch's intra-op threads when the user sets none: the CPUs this process may use."""
    return available_cpus()


def default_loader_workers(device: str = "cuda") -> int:
    """Image-decoding worker processes beside a training or inference loop. Beside a GPU: one per CPU
    left after the loop's own, at most eight. Beside CPU training, whose threads already use every
    CPU: one per 8 CPUs (none below 8), since a worker competes with those threads (measured on 2
    CPUs: 0.89 of a bare training loop's images/s with none, 0.81 with one; benchmarks/RESULTS.md)."""
    cpus = available_cpus()
    if device == "cpu":
        return min(8, cpus // 8)
    return max(0, min(8, cpus - 1))
