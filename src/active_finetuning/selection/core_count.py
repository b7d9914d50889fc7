"""How many BiLAF cores to use when ``num_cores`` is not given (ALGORITHMS.md §3.8, §3.10, §8).

The paper fixes K per data set (0.1% of the pool for CIFAR10, 0.5% for CIFAR100 and ImageNet) and
keeps it across budgets. With K below the number of classes the boundary stage has too few
pseudo-classes to be worth their boundaries: on a held-out 77-class set, BiLAF at K = 0.5% of the
pool lost 12 points to ActiveFT at a 2% budget. §3.10 (Table 7) reads the switch from core to
boundary selection off the point where more cores stop improving the pool's coverage.

Our default follows that reading with a threshold chosen on a validation split carved from the
CIFAR-10 training pool (``benchmarks/core_count_validation.py``; test set never read; results in
``benchmarks/RESULTS.md``): every budget up to ``CORE_SHARE`` of the pool is spent on cores (BiLAF
then equals ActiveFT, which was the best there), and only the budget beyond it goes to boundaries.
On the validation pools this never fell below ActiveFT, while the paper's fixed 0.1% lost up to
10 points at 0.5–2% budgets. The paper's fixed-K setting stays available as ``num_cores``.
"""

from __future__ import annotations

import math

# Share of the pool that the cores may take before BiLAF starts spending on boundaries.
CORE_SHARE = 0.02


def default_num_cores(pool_size: int, budget: int) -> int:
    """K = min(budget, ⌈CORE_SHARE · pool_size⌉), at least 1."""
    return max(1, min(budget, math.ceil(pool_size * CORE_SHARE)))
