"""How many BiLAF cores (K) to use (docs/selection.md, "BiLAF's number of cores").

The paper fixes K per data set and keeps it for every budget: 0.1% of the pool for CIFAR10, 0.5%
for CIFAR100 and ImageNet. For a pool of unknown kind the default is the paper's general value,
**0.5% of the pool**, at least 1 and at most half the budget (the paper never spends more than half
of a budget on cores; K = B would leave no boundary samples and BiLAF would be its core selector).
``num_cores`` takes a count (``250``) or a share of the pool (``"0.1%"``, the paper's CIFAR10 setting).

Our own validation (``experiments/core_count_validation.py``, ``benchmarks/RESULTS.md``) found that on
frozen supervised EfficientNet-Lite0 features of CIFAR-10, scored by a linear probe, spending the
whole budget on ActiveFT cores (K = B) was never beaten by boundary samples; that is evidence for
those features and that consumer, not for the papers' DINO features with full finetuning, so it is a
documented option (``num_cores`` equal to the budget), not the default.
"""

from __future__ import annotations

import warnings

from ..errors import InputError
from .budget import parse_percentage

# The paper's K for CIFAR100 and ImageNet, our rule for a pool of unknown kind.
PAPER_CORE_SHARE = "0.5%"


def parse_num_cores(value) -> int | str | None:
    """``None``, a positive count, or a percentage string such as ``"0.1%"``; strings of digits
    become counts. Raises ``InputError`` naming the parameter otherwise."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("%"):
            parse_percentage(text, "parameter 'num_cores'")
            return text
        try:
            value = int(text)
        except ValueError:
            raise InputError(f"parameter 'num_cores' must be a count or a percentage of the pool like '0.5%', "
                             f"got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"parameter 'num_cores' must be a positive count or a percentage of the pool like "
                         f"'0.5%', got {value!r}")
    return value


def resolve_num_cores(num_cores: int | str | None, pool_size: int, budget: int) -> int:
    """K for this pool and budget. An explicit K above the budget is an error; K equal to the
    budget is allowed with a warning (BiLAF then returns its core selector's picks)."""
    if num_cores is None:
        count = max(1, min(_share(PAPER_CORE_SHARE, pool_size), budget // 2))
    else:
        count = requested_count(num_cores, pool_size)
    if count > budget:
        raise InputError(f"parameter 'num_cores' ({count}) exceeds the budget ({budget}); the budget "
                         "includes the cores — lower num_cores or raise the budget")
    if count == budget and num_cores is not None:
        warnings.warn(f"BiLAF with num_cores = budget = {budget}: every pick is a core, so the selection is "
                      "the core selector's; lower num_cores for boundary samples", UserWarning, stacklevel=2)
    return count


def requested_count(num_cores: int | str, pool_size: int) -> int:
    """The count an explicit ``num_cores`` asks for on a pool of ``pool_size``."""
    return _share(num_cores, pool_size) if isinstance(num_cores, str) else int(num_cores)


def _share(percentage: str, pool_size: int) -> int:
    """``int(N · pct · 0.01)``, as budgets are rounded, at least 1."""
    return max(1, int(pool_size * float(percentage.strip()[:-1]) * 0.01))
