"""How many BiLAF cores to use when ``num_cores`` is not given (ALGORITHMS.md §3.8, §3.10, §8).

The paper fixes K per data set (0.1% of the pool for CIFAR10, 0.5% for CIFAR100 and ImageNet) and
keeps it across budgets. With K below the number of classes the boundary stage has too few
pseudo-classes to be worth their boundaries: on a held-out 77-class set, BiLAF at K = 0.5% of the
pool lost 12 points to ActiveFT at a 2% budget.

Our default was chosen on validation splits carved from the CIFAR-10 training pool
(``benchmarks/core_count_validation.py``; the test set never read; results in
``benchmarks/RESULTS.md``): **K = B**, the whole budget spent on cores, so that BiLAF's default
selection is the core selector's (ActiveFT's) and the boundary stage runs when ``num_cores`` asks
for it. Up to a 2% budget no K < B ever beat K = B (K at or below the number of classes lost
8–10 points); at 5%, spending 60% of the budget on boundaries (K = 2% of the pool) moved the
validation probe accuracy by −0.1 ± 0.9 points over 9 paired runs on pools of 10,000–40,000, and
by −0.4 ± 0.3 on the 40,000 pool, the closest to the real one. So boundary picks never showed a
gain on these features; on raw MNIST pixels K = B beat every smaller K by both scores (6 probe
points over K = 2% at a 5% budget). With K = B BiLAF is never worse than ActiveFT. ``num_cores``
keeps the paper's fixed K, and any other, available.
"""

from __future__ import annotations


def default_num_cores(budget: int) -> int:
    """K = B (at least 1): every pick a core unless ``num_cores`` says otherwise."""
    return max(1, budget)
