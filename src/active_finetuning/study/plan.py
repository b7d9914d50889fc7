"""Planning a budget study: the grid of cells (methods × budgets × seeds) and the extraction shards,
validated before any work."""

from __future__ import annotations

from typing import Any, Sequence

from ..errors import InputError
from ..seeding import check_seed

EVALUATIONS = ("probe", "finetune")


def plan_grid(methods: Sequence[str], budgets: Sequence[Any], seeds: Sequence[int],
              evaluation: str | None = None) -> list[dict[str, Any]]:
    """The study's cells in a fixed order (method, then budget, then seed), checked before any work
    (and ``evaluation`` against its choices, when given)."""
    if evaluation is not None and evaluation not in EVALUATIONS:
        raise InputError(f"evaluation must be one of {list(EVALUATIONS)}, got {evaluation!r}")
    from ..selection import Budget, list_selectors

    known = list_selectors()
    if not methods:
        raise InputError(f"methods is empty; give at least one of {known}")
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise InputError(f"methods {unknown} are not registered selectors; choose from {known}")
    if not budgets:
        raise InputError("budgets is empty; give sample counts (500) or percentages ('1%')")
    for budget in budgets:
        Budget.parse(budget)
    if not seeds:
        raise InputError("seeds is empty; give at least one seed, e.g. [0]")
    for seed in seeds:
        check_seed(seed, "seeds")
    for name, values in (("methods", methods), ("budgets", [str(b) for b in budgets]), ("seeds", seeds)):
        if len(set(values)) != len(values):
            raise InputError(f"{name} has repeated values {list(values)}; list each once")
    return [{"method": m, "budget": str(b), "seed": int(s)} for m in methods for b in budgets for s in seeds]


def plan_shards(num_shards: int) -> list[int]:
    """Shard indices ``0..num_shards-1`` for the extraction fan-out."""
    if isinstance(num_shards, bool) or int(num_shards) != num_shards or num_shards < 1:
        raise InputError(f"num_shards must be an integer >= 1, got {num_shards!r}")
    return list(range(int(num_shards)))
