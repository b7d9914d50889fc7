"""How many BiLAF cores to use when ``num_cores`` is not given (ALGORITHMS.md §3.8, §8)."""

from __future__ import annotations


def default_num_cores(pool_size: int, budget: int) -> int:
    """The paper's CIFAR10 setting, K = 0.1% of the pool, at least 1 and at most the budget."""
    return max(1, min(budget, int(pool_size * 0.001)))
