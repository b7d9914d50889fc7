from typing import List

from kfp import dsl

from ..image import COMPONENT_OPTIONS


@dsl.component(**COMPONENT_OPTIONS)
def plan_shards(num_shards: int) -> List[int]:
    """The shard indices ``0..num_shards-1`` the feature extraction fans out over.

    Args:
        num_shards: How many extraction tasks run in parallel (one GPU each on a cluster).
    """
    from active_finetuning.study.plan import plan_shards as plan

    return plan(num_shards)
