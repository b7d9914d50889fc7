from typing import List

from kfp import dsl

from ..image import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def plan_grid(methods: List[str], budgets: List[str], seeds: List[int], evaluation: str = "probe") -> List[dict]:
    """Expand the study into its cells, one per method × budget × seed, checked before any work.

    Args:
        methods: Registered selection methods (``active-finetuning methods`` lists them).
        budgets: Sample counts (``"500"``) or percentages of the pool (``"1%"``).
        seeds: Random seeds; each cell is repeated once per seed.
        evaluation: ``probe`` or ``finetune``, checked here so that no other value reaches the branch.

    Returns:
        The cells as ``{"method", "budget", "seed"}`` records.
    """
    from active_finetuning.study.plan import plan_grid as plan

    return plan(methods, budgets, seeds, evaluation)
